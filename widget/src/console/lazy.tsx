// A view loaded on first use: its chunk is fetched once, "Loading…" shows meanwhile.
import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { t } from './i18n';

export function lazy<P extends object>(load: () => Promise<ComponentType<P>>): ComponentType<P> {
  let loaded: ComponentType<P> | null = null;
  let loading: Promise<void> | null = null;
  let failed = false;
  return function Lazy(props: P) {
    const [, rerender] = useState(0);
    useEffect(() => {
      if (loaded) return;
      let live = true;
      loading ??= load().then((c) => { loaded = c; }, () => { failed = true; loading = null; });
      void loading.then(() => { if (live) rerender((n) => n + 1); });
      return () => { live = false; };
    }, []);
    if (loaded) {
      const View = loaded;
      return <View {...props} />;
    }
    return <main class="auth"><p class="boot" role={failed ? 'alert' : 'status'}>{failed ? t('network') : t('loading')}</p></main>;
  };
}
