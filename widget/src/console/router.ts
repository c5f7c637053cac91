// Hash routes without a leading slash (`#bots/ID`, `#verify-email?token=…`): the page is one
// document served at /console, and a fragment never reaches the server's logs or a Referer.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  /** The path's segments: `#bots/b1/intents` → `['bots', 'b1', 'intents']`; `[]` for none. */
  path: string[];
  query: URLSearchParams;
}

/** Parses a location hash. */
export function parse(hash: string): Route {
  const raw = hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = (q < 0 ? raw : raw.slice(0, q)).split('/').filter(Boolean).map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
  return { path, query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

/** Goes to `hash` (`'bots'`, `'sign-in?next=inbox'`); `replace` keeps it out of history. */
export function go(hash: string, replace = false): void {
  const url = `${location.pathname}${location.search}#${hash}`;
  if (replace) {
    history.replaceState(history.state, '', url);
    dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

/** The current route, re-rendering on every change. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}
