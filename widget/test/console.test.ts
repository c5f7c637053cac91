// @vitest-environment happy-dom
// The console's plumbing without a server: routes, which field an API refusal belongs to, the
// two word tables, and the session's refresh (one at a time, retried once, ended when refused).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse } from '../src/console/router';
import { ApiError } from '../src/console/http';
import { fieldOf } from '../src/console/ui/form';
import { en } from '../src/console/words/en';
import { it as itWords } from '../src/console/words/it';

describe('routes', () => {
  it('are hash paths without a leading slash, with a query', () => {
    expect(parse('#inbox').path).toEqual(['inbox']);
    expect(parse('#bots/b1/intents').path).toEqual(['bots', 'b1', 'intents']);
    expect(parse('#/bots').path).toEqual(['bots']);
    expect(parse('').path).toEqual([]);
    const r = parse('#verify-email?token=ott_abc%2Bd');
    expect(r.path).toEqual(['verify-email']);
    expect(r.query.get('token')).toBe('ott_abc+d');
    expect(parse('#bots/%E2%9C%93').path).toEqual(['bots', '✓']);
    // A broken escape is kept as it is, not thrown.
    expect(parse('#bots/%E2%9C').path).toEqual(['bots', '%E2%9C']);
  });
});

describe('an API refusal goes to its field', () => {
  const refusal = (field: string | null, code = 'validation_failed') => new ApiError(422, code, 'bad', field);
  it('by the field it names, or the longest dotted prefix the form has', () => {
    expect(fieldOf(refusal('name'), ['name', 'email'])).toBe('name');
    expect(fieldOf(refusal('appearance.color'), ['appearance', 'appearance.color', 'name'])).toBe('appearance.color');
    expect(fieldOf(refusal('response.content.items.0.url'), ['response', 'response.content'])).toBe('response.content');
    expect(fieldOf(refusal('other'), ['name'])).toBeNull();
  });
  it('by the codes whose field the API does not name', () => {
    expect(fieldOf(new ApiError(409, 'email_taken', 'taken'), ['email'])).toBe('email');
    expect(fieldOf(new ApiError(401, 'totp_required', 'code'), ['email', 'totp'])).toBe('totp');
    expect(fieldOf(new ApiError(401, 'invalid_credentials', 'no'), ['email', 'password'])).toBeNull();
    expect(fieldOf(new Error('boom'), ['name'])).toBeNull();
  });
});

describe('the word tables', () => {
  it('have the same keys and the same placeholders', () => {
    expect(Object.keys(itWords).sort()).toEqual(Object.keys(en).sort());
    const holes = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
    for (const k of Object.keys(en) as (keyof typeof en)[]) expect(holes(itWords[k]), k).toEqual(holes(en[k]));
  });
});

describe('the session', () => {
  type Reply = { status: number; body?: unknown };
  let replies: Record<string, Reply[]>;
  let calls: { path: string; auth: string | null; body: any }[];
  const issued = (n: number) => ({ access_token: `a${n}`, refresh_token: `r${n}`, expires_in: 900 });
  const error = (status: number, code: string) => ({ status, body: { error: { code, message: code, details: {} } } });

  beforeEach(() => {
    vi.resetModules();
    localStorage.clear();
    replies = {};
    calls = [];
    vi.stubGlobal('fetch', async (path: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      calls.push({ path, auth: headers.get('authorization'), body: init.body ? JSON.parse(String(init.body)) : null });
      const r = replies[path]?.shift() ?? { status: 404, body: { error: { code: 'not_found', message: 'no' } } };
      return new Response(r.status === 204 ? null : JSON.stringify(r.body ?? {}), { status: r.status, headers: { 'content-type': 'application/json' } });
    });
  });
  afterEach(() => vi.unstubAllGlobals());

  it('refreshes once for many callers, and keeps the new tokens for every tab', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    replies['/api/auth/refresh'] = [{ status: 200, body: issued(2) }];
    await Promise.all([s.refresh(), s.refresh(), s.refresh()]);
    expect(calls.filter((c) => c.path === '/api/auth/refresh')).toEqual([{ path: '/api/auth/refresh', auth: null, body: { refresh_token: 'r1' } }]);
    expect(s.accessToken()).toBe('a2');
    expect(JSON.parse(localStorage.getItem('parla.console.session.v1')!).refresh_token).toBe('r2');
  });

  it('takes the tokens another tab already rotated instead of spending its own again', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    localStorage.setItem('parla.console.session.v1', JSON.stringify({ access_token: 'a9', refresh_token: 'r9', expires_at: Date.now() + 900_000 }));
    await s.refresh();
    expect(calls).toEqual([]);
    expect(s.accessToken()).toBe('a9');
  });

  it('retries a request once after refreshing an expired token', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    replies['/api/bots'] = [error(401, 'token_expired'), { status: 200, body: { data: [] } }];
    replies['/api/auth/refresh'] = [{ status: 200, body: issued(2) }];
    expect(await s.api('GET', '/api/bots')).toEqual({ data: [] });
    expect(calls.map((c) => `${c.path} ${c.auth}`)).toEqual(['/api/bots Bearer a1', '/api/auth/refresh null', '/api/bots Bearer a2']);
  });

  it('ends, saying why, when the server will not refresh (a reused token ends the family)', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    const ended: (string | null)[] = [];
    s.onSession((signedIn, why) => { if (!signedIn) ended.push(why); });
    replies['/api/bots'] = [error(401, 'token_expired')];
    replies['/api/auth/refresh'] = [error(401, 'refresh_token_reused')];
    await expect(s.api('GET', '/api/bots')).rejects.toMatchObject({ status: 401, code: 'token_expired' });
    expect(s.signedIn()).toBe(false);
    expect(ended).toEqual(['Your session ended; sign in again.']);
    expect(localStorage.getItem('parla.console.session.v1')).toBeNull();
  });

  it('a network failure while refreshing keeps the session (the next try may work)', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    vi.stubGlobal('fetch', async () => { throw new TypeError('Failed to fetch'); });
    await expect(s.refresh()).rejects.toMatchObject({ status: 0, code: 'network' });
    expect(s.signedIn()).toBe(true);
  });

  it('a refresh answered after signing out does not sign back in', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    let answer: (r: Response) => void = () => {};
    vi.stubGlobal('fetch', (path: string) => (path === '/api/auth/refresh'
      ? new Promise<Response>((r) => { answer = r; })
      : Promise.resolve(new Response(null, { status: 204 }))));
    const refreshing = s.refresh();
    await new Promise((r) => setTimeout(r, 0));
    await s.signOut();
    answer(new Response(JSON.stringify(issued(2)), { status: 200, headers: { 'content-type': 'application/json' } }));
    await refreshing;
    expect(s.signedIn()).toBe(false);
    expect(localStorage.getItem('parla.console.session.v1')).toBeNull();
  });

  it('a failing refresh is tried again later, not in a loop', async () => {
    vi.useFakeTimers();
    try {
      const s = await import('../src/console/session');
      s.begin({ ...issued(1), expires_in: 0 });
      let tries = 0;
      vi.stubGlobal('fetch', async () => { tries += 1; throw new TypeError('Failed to fetch'); });
      await vi.advanceTimersByTimeAsync(10_000);
      // 1 s, then 2, 4 (and 8 s later the next): three tries in ten seconds, not ten.
      expect(tries).toBeGreaterThan(0);
      expect(tries).toBeLessThanOrEqual(4);
      expect(s.signedIn()).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('signs out on the server and in every tab', async () => {
    const s = await import('../src/console/session');
    s.begin(issued(1));
    replies['/api/auth/logout'] = [{ status: 204 }];
    await s.signOut();
    expect(calls.map((c) => [c.path, c.body])).toEqual([['/api/auth/logout', { refresh_token: 'r1' }]]);
    expect(localStorage.getItem('parla.console.session.v1')).toBeNull();
  });
});
