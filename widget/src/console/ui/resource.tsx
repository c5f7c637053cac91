// Data a view loads: loading, ready or failed (with Retry), and the empty case — each said on
// the container (`data-state`, `aria-busy`), which is also what the tests wait on.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../i18n';
import { describe } from './form';

export interface Resource<T> {
  state: 'loading' | 'ready' | 'error';
  data: T | null;
  error: string;
  reload: () => Promise<void>;
  /** Replaces the data (after a write answered the new value). */
  set: (data: T) => void;
}

export function useResource<T>(load: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [state, setState] = useState<Resource<T>['state']>('loading');
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState('');
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setState((s) => (s === 'ready' ? s : 'loading'));
    try {
      const value = await load();
      if (mine !== generation.current) return;
      setData(value);
      setError('');
      setState('ready');
    } catch (e) {
      if (mine !== generation.current) return;
      setError(describe(e));
      setState('error');
    }
  }, deps);
  useEffect(() => {
    setData(null);
    setState('loading');
    void reload();
    return () => { generation.current++; };
  }, [reload]);
  return { state, data, error, reload, set: setData };
}

interface StateProps<T> {
  res: Resource<T>;
  id?: string;
  /** Shown when the data is there but holds nothing. */
  empty?: ComponentChildren;
  isEmpty?: (data: T) => boolean;
  children: (data: T) => ComponentChildren;
}

/** A resource's container: loading, the error with Retry, the empty message, or the content. */
export function ResourceView<T>({ res, id, empty, isEmpty, children }: StateProps<T>) {
  let body: ComponentChildren;
  if (res.state === 'error' && res.data === null) {
    body = (
      <div class="load-error" role="alert">
        <p>{res.error}</p>
        <button type="button" class="secondary" onClick={() => void res.reload()}>{t('retry')}</button>
      </div>
    );
  } else if (res.data === null) {
    body = <p class="muted" role="status">{t('loading')}</p>;
  } else if (empty !== undefined && isEmpty?.(res.data)) {
    body = <div class="empty-state">{empty}</div>;
  } else {
    body = children(res.data);
  }
  const state = res.data !== null && empty !== undefined && isEmpty?.(res.data) ? 'empty' : res.state;
  return <div id={id} class="resource" data-state={state} aria-busy={res.state === 'loading' ? 'true' : undefined}>{body}</div>;
}
