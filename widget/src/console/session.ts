// The signed-in session: tokens kept in localStorage (one session for every tab of this origin),
// refreshed before they expire and again when the API says one has, one refresh at a time (per
// tab by a shared promise, across tabs by a Web Lock — or, where there is none, a lease in
// localStorage — so two tabs never spend one refresh token: the server would take that for a
// stolen token and end the session), and ended — saying why — when the server will not refresh
// it. A refresh that fails for another reason (the network, a 5xx, a 429) is tried again later,
// backing off.
import { ApiError, call, read } from './http';
import { t } from './i18n';

export type Role = 'owner' | 'admin' | 'agent' | 'viewer';

/** `GET /api/auth/me`. */
export interface Me {
  id: string;
  email: string;
  name: string;
  role: Role;
  tenant_id: string;
  email_verified: boolean;
  totp_enabled: boolean;
}

interface Tokens { access_token: string; refresh_token: string; expires_at: number }
interface Issued { access_token: string; refresh_token: string; expires_in: number }

const KEY = 'parla.console.session.v1';
/** Codes that mean the session is over: refreshing will not help. */
const ENDED = ['invalid_refresh_token', 'refresh_token_reused', 'refresh_token_expired', 'token_revoked', 'token_invalid'];

const LEASE = 'parla.console.refresh-lease';
/** Whether localStorage works here (not in some private modes): without it, this tab alone. */
const storageWorks = (() => {
  try { localStorage.setItem('parla.console.probe', '1'); localStorage.removeItem('parla.console.probe'); return true; } catch { return false; }
})();
const tabId = Math.random().toString(36).slice(2);

let tokens: Tokens | null = load();
let flight: Promise<void> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
/** Refreshes that failed in a row (not refused: the network, the server); backs off the next. */
let failures = 0;
type Listener = (signedIn: boolean, why: string | null) => void;
const listeners = new Set<Listener>();
const refreshed = new Set<(token: string) => void>();

function load(): Tokens | null {
  try {
    const t = JSON.parse(localStorage.getItem(KEY) ?? 'null');
    return t && typeof t.access_token === 'string' && typeof t.refresh_token === 'string' ? t : null;
  } catch {
    return null;
  }
}

function store(next: Tokens | null): void {
  try {
    if (next) localStorage.setItem(KEY, JSON.stringify(next));
    else localStorage.removeItem(KEY);
  } catch { /* private mode: this tab keeps it in memory */ }
}

function adopt(next: Tokens): void {
  const was = tokens !== null;
  tokens = next;
  failures = 0;
  schedule();
  if (!was) emit(true, null);
  for (const l of refreshed) l(next.access_token);
}

function emit(signedIn: boolean, why: string | null): void { for (const l of listeners) l(signedIn, why); }

/**
 * Refresh a minute before expiry (sooner for short-lived tokens: at 80 % of their life, less a
 * second — the server counts expiry in whole seconds, so a token may live up to a second less
 * than its `expires_in`); after failures, 2, 4, 8… seconds later (at most a minute, or what the
 * server's Retry-After says).
 */
function schedule(retryAfter: number | null = null): void {
  clearTimeout(timer);
  if (!tokens) return;
  const left = tokens.expires_at - Date.now();
  const margin = Math.min(60_000, left * 0.2 + 1000);
  const backoff = failures ? Math.max((retryAfter ?? 0) * 1000, Math.min(60_000, 1000 * 2 ** failures)) : 0;
  timer = setTimeout(() => { refresh().catch(() => {}); }, Math.max(1_000, left - margin, backoff));
}

/** Whether a session is held. */
export const signedIn = (): boolean => tokens !== null;

/** Hears sign-ins and sign-outs (with why, when the server ended it). Returns the unsubscribe. */
export function onSession(l: Listener): () => void { listeners.add(l); return () => listeners.delete(l); }

/** Hears each new access token (the agent socket re-authenticates with it). */
export function onRefreshed(l: (token: string) => void): () => void { refreshed.add(l); return () => refreshed.delete(l); }

/** The current access token. */
export const accessToken = (): string | null => tokens?.access_token ?? null;

/** Keeps a session the API issued (sign-in). */
export function begin(issued: Issued): void {
  const t = { access_token: issued.access_token, refresh_token: issued.refresh_token, expires_at: Date.now() + issued.expires_in * 1000 };
  store(t);
  adopt(t);
}

/** Ends the session here and in every tab; `why` is shown on the sign-in form. */
export function end(why: string | null = null): void {
  clearTimeout(timer);
  const had = tokens;
  tokens = null;
  store(null);
  if (had) emit(false, why);
}

/** Signs out: the server forgets the refresh token, then every tab is signed out. */
export async function signOut(): Promise<void> {
  const t = tokens;
  end();
  if (t) await call('POST', '/api/auth/logout', { refresh_token: t.refresh_token }).catch(() => {});
}

/** Swaps the refresh token for new tokens, once at a time; ends the session if it cannot. */
export function refresh(): Promise<void> {
  flight ??= (async () => {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    try {
      if (locks) await locks.request('parla.console.refresh', rotate);
      else if (storageWorks) await leased(rotate);
      else await rotate();
    } finally {
      flight = null;
    }
  })();
  return flight;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `work` holding a lease in localStorage (where Web Locks are missing: plain http, older
 * browsers): another tab's live lease is waited out — its refresh then shows in storage, and
 * `rotate` takes it instead of spending the old token. A lease lasts 20 s at most.
 */
async function leased(work: () => Promise<void>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const held = (() => { try { return JSON.parse(localStorage.getItem(LEASE) ?? 'null'); } catch { return null; } })();
    if (!held || held.until < Date.now() || held.tab === tabId) {
      localStorage.setItem(LEASE, JSON.stringify({ tab: tabId, until: Date.now() + 20_000 }));
      await pause(30 + Math.random() * 40); // Two tabs writing at once: the last write wins.
      if (JSON.parse(localStorage.getItem(LEASE) ?? 'null')?.tab === tabId) {
        try { return await work(); } finally { localStorage.removeItem(LEASE); }
      }
    }
    await pause(200);
  }
  return work();
}

async function rotate(): Promise<void> {
  const mine = tokens;
  if (!mine) return;
  if (storageWorks) {
    // Another tab may have rotated while this one waited for the lock: take its tokens.
    const stored = load();
    if (stored && stored.refresh_token !== mine.refresh_token) return adopt(stored);
    if (!stored) return end(t('signedOutElsewhere'));
  }
  let issued: Issued;
  try {
    issued = await call<Issued>('POST', '/api/auth/refresh', { refresh_token: mine.refresh_token }, null, 15_000);
  } catch (e) {
    if (tokens !== mine) return; // Signed out (or rotated elsewhere) meanwhile.
    if (e instanceof ApiError && (ENDED.includes(e.code) || e.status === 401)) { end(t('sessionEnded')); return; }
    failures += 1;
    schedule(e instanceof ApiError ? e.retryAfter : null);
    throw e;
  }
  // Signed out while the refresh was in flight: the new tokens belong to a session that ended.
  if (tokens !== mine || (storageWorks && load()?.refresh_token !== mine.refresh_token)) return;
  begin(issued);
}

/** A request with the session's token; on an expired token, one refresh and one retry. */
export async function authed(path: string, init: RequestInit = {}): Promise<Response> {
  const go = () => {
    const headers = new Headers(init.headers);
    const token = accessToken();
    if (token) headers.set('authorization', `Bearer ${token}`);
    return fetch(path, { ...init, headers });
  };
  let res: Response;
  try { res = await go(); } catch { throw new ApiError(0, 'network', 'The server could not be reached.'); }
  if (res.status !== 401 || !tokens) return res;
  const code = await res.clone().json().then((j) => j?.error?.code).catch(() => null);
  if (code === 'token_expired') {
    await refresh();
    if (tokens) res = await go();
  } else if (code === 'token_revoked' || code === 'token_invalid') {
    end(t('sessionEnded'));
  }
  return res;
}

/** An API call with the session: JSON in, JSON out, refusals as `ApiError`. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  return read<T>(await authed(path, init));
}

/** Who is signed in. */
export const fetchMe = (): Promise<Me> => api<Me>('GET', '/api/auth/me');

// Another tab signed in, rotated the tokens, or signed out.
addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  const t = load();
  if (t) adopt(t);
  else end(null);
});

schedule();
