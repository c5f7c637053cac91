// The console's language: English built in, Italian loaded when chosen. Picked in the header
// (kept in localStorage), else the browser's.
import { en, type Words } from './words/en';

export type Lang = 'en' | 'it';
const KEY = 'parla.console.lang';

let words: Words = en;
let lang: Lang = 'en';
const listeners = new Set<() => void>();

/** The word for `key`, its `{placeholders}` filled. */
export function t(key: keyof Words, vars: Record<string, string | number> = {}): string {
  return words[key].replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}

export const currentLang = (): Lang => lang;

/** Hears language changes. Returns the unsubscribe. */
export function onLang(l: () => void): () => void { listeners.add(l); return () => listeners.delete(l); }

/** Switches the language (loading its table first) and remembers the choice. */
export async function setLang(next: Lang, remember = true): Promise<void> {
  words = next === 'it' ? (await import('./words/it')).it : en;
  lang = next;
  document.documentElement.lang = next;
  if (remember) { try { localStorage.setItem(KEY, next); } catch { /* not kept */ } }
  for (const l of listeners) l();
}

/** The language to start in. */
export function initialLang(): Lang {
  let saved: string | null = null;
  try { saved = localStorage.getItem(KEY); } catch { /* none */ }
  const pick = saved ?? navigator.language ?? 'en';
  return pick.toLowerCase().startsWith('it') ? 'it' : 'en';
}
