// A view loaded on first use: its chunk is fetched once, "Loading…" shows meanwhile. `preload`
// starts the fetch early (the shell does, for the route it opens on, while it asks who is
// signed in).
import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { t } from './i18n';

export type LazyView<P> = ComponentType<P> & { preload: () => void };

export function lazy<P extends object>(load: () => Promise<ComponentType<P>>): LazyView<P> {
  let loaded: ComponentType<P> | null = null;
  let loading: Promise<void> | null = null;
  let failed = false;
  const start = () => {
    loading ??= load().then((c) => { loaded = c; failed = false; }, () => { failed = true; loading = null; });
    return loading;
  };
  function Lazy(props: P) {
    const [, rerender] = useState(0);
    useEffect(() => {
      // Loaded between this render and now (a preload finished): draw it.
      if (loaded) { rerender((n) => n + 1); return; }
      let live = true;
      void start().then(() => { if (live) rerender((n) => n + 1); });
      return () => { live = false; };
    }, []);
    if (loaded) {
      const View = loaded;
      return <View {...props} />;
    }
    if (failed) {
      // A chunk that cannot be had: the network, or a new release replaced it (a reload fetches
      // the page that names the new ones).
      return (
        <main class="auth">
          <p class="boot" role="alert">{t('network')}</p>
          <p><button type="button" onClick={() => location.reload()}>{t('reload')}</button></p>
        </main>
      );
    }
    return <main class="auth"><p class="boot" role="status">{t('loading')}</p></main>;
  }
  return Object.assign(Lazy, { preload: () => { void start(); } });
}
