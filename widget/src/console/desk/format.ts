// How the desk and the dashboard write numbers, durations and times, in the console's language.
// English is written exactly as the hand-written console wrote it (the browser tests compare
// with it): en-US numbers, en-GB dates; Italian with a decimal comma and Italian dates. Times
// are UTC, the analytics counters' grain.
import { currentLang, t } from '../i18n';
import type { Words } from '../words/en';

export const NONE = '\u2014';
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

const italian = () => currentLang() === 'it';

const numbers = { en: new Intl.NumberFormat('en-US'), it: new Intl.NumberFormat('it-IT') };
/** A whole number with the language's grouping. */
export const num = (n: number): string => (italian() ? numbers.it : numbers.en).format(n);

/** `x.toFixed(digits)`, with a decimal comma in Italian. */
const fixed = (x: number, digits: number): string => {
  const s = x.toFixed(digits);
  return italian() ? s.replace('.', ',') : s;
};

/** A share as a percentage with at most one decimal; a dash for none. */
export const pct = (r: number | null | undefined): string => {
  if (r == null) return NONE;
  const s = String(Math.round(r * 1000) / 10);
  return `${italian() ? s.replace('.', ',') : s}%`;
};

/** `n` with its noun: `one` for 1 (`1 message`), `many` otherwise (`{n} messages`). */
export const count = (n: number, one: keyof Words, many: keyof Words): string =>
  n === 1 ? t(one) : t(many, { n: num(n) });

export function duration(ms: number | null | undefined): string {
  if (ms == null) return NONE;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${fixed(ms / 1000, 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Mean sentiment, −1 to 1, signed. */
export const sentiment = (v: number | null | undefined): string =>
  v == null ? NONE : `${v > 0 ? '+' : ''}${fixed(v, 2)}`;

/** A 1–5 average. */
export const score = (v: number): string => `${fixed(v, 1)} / 5`;

type DateKind = 'day' | 'hour' | 'when';
const DATE_OPTIONS: Record<DateKind, Intl.DateTimeFormatOptions> = {
  day: { day: 'numeric', month: 'short' },
  hour: { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
  when: { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
};
const dates = new Map<string, Intl.DateTimeFormat>();
/** A UTC time: `day` (7 Dec), `hour` (14:00) or `when` (7 Dec, 14:00). */
export function utc(kind: DateKind, ms: number): string {
  const locale = italian() ? 'it-IT' : 'en-GB';
  let f = dates.get(`${locale}|${kind}`);
  if (!f) dates.set(`${locale}|${kind}`, f = new Intl.DateTimeFormat(locale, { timeZone: 'UTC', ...DATE_OPTIONS[kind] }));
  return f.format(ms);
}

/** A slot of a series: its hour (with the day) or its day. */
export const slotName = (start: number, interval: string): string => utc(interval === 'hour' ? 'when' : 'day', start);

/** How long ago `ms` was, in seconds below a minute, else minutes. */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? t('agoSeconds', { n: s }) : t('agoMinutes', { n: Math.round(s / 60) });
}

/** An axis from 0 in 1-2-5 steps, about `ticks` of them; at least 0..ticks for all zeros. */
export function scale(max: number, ticks = 4): { step: number; top: number } {
  if (!(max > 0)) return { step: 1, top: ticks };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw)!);
  return { step, top: Math.ceil(max / step) * step };
}
