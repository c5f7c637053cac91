import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, backoff, BACKOFF_CAP_MS } from '../src/client';
import { FakeSocket, MemoryStorage, msg, welcome } from './fakes';

let sockets: FakeSocket[];
let storage: MemoryStorage;
const latest = () => sockets[sockets.length - 1];

function client(random = () => 0.5) {
  const c = new ChatClient({ url: 'ws://parla/v1/widget/ws', botId: 'demo', storage, random, socket: (u) => { const s = new FakeSocket(u); sockets.push(s); return s; } });
  const seen: any[] = [];
  const gone: string[] = [];
  const tokens: string[] = [];
  c.listen({ message: (m) => seen.push(m), streamGone: (id) => gone.push(id), token: (_, d) => tokens.push(d) });
  return { c, seen, gone, tokens, seqs: () => seen.map((m) => m.seq) };
}

beforeEach(() => { vi.useFakeTimers(); sockets = []; storage = new MemoryStorage(); });
afterEach(() => { vi.useRealTimers(); });

describe('resume', () => {
  it('opens a new conversation, then resumes it after a drop with the last seq it holds', () => {
    const { c, seqs } = client();
    c.start();
    latest().open();
    expect(latest().sent).toEqual([{ type: 'hello', bot_id: 'demo' }]);
    latest().push(welcome('c1'), msg(1, 'bot', 'hi'), msg(2, 'user', 'q', { client_msg_id: 'x' }), msg(3, 'bot', 'a'));
    latest().drop();
    expect(c.status).toBe('offline');
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    expect(sockets).toHaveLength(2);
    latest().open();
    expect(latest().sent[0]).toEqual({ type: 'hello', bot_id: 'demo', conversation_id: 'c1', resume_token: 'tok-c1', last_seq: 3 });
    latest().push(welcome('c1', 4), msg(4, 'bot', 'missed while away'));
    expect(seqs()).toEqual([1, 2, 3, 4]);
  });

  it('a page reload (a new client on the same storage) shows the transcript and resumes the conversation', () => {
    const first = client();
    first.c.start();
    latest().open();
    latest().push(welcome('c1'), msg(1, 'bot', 'hi'), msg(2, 'user', 'q'));
    first.c.persist();
    first.c.stop();

    const second = client();
    expect(second.seqs()).toEqual([1, 2]); // from storage, before any socket
    second.c.start();
    latest().open();
    expect(latest().sent[0]).toMatchObject({ type: 'hello', conversation_id: 'c1', resume_token: 'tok-c1', last_seq: 2 });
  });

  it('keeps a conversation across a reload only once the visitor wrote in it (the server stores none before)', () => {
    const first = client();
    first.c.start();
    latest().open();
    latest().push(welcome('c1'), msg(1, 'bot', 'hi'));
    first.c.persist();
    first.c.stop();
    const second = client();
    expect(second.seqs()).toEqual([]);
    second.c.start();
    latest().open();
    expect(latest().sent[0]).toEqual({ type: 'hello', bot_id: 'demo' }); // one hello, no refused resume
    latest().push(welcome('c2'), msg(1, 'bot', 'hi'), msg(2, 'user', 'q', { client_msg_id: 'x' }));
    second.c.persist();
    second.c.stop();
    const third = client();
    third.c.start();
    latest().open();
    expect(latest().sent[0]).toMatchObject({ type: 'hello', conversation_id: 'c2', last_seq: 2 });
  });

  it('forgets a conversation whose token is refused and opens a new one on the same socket, keeping the outbox', () => {
    storage.setItem('parla.widget.v1.demo', JSON.stringify({ conversation_id: 'old', resume_token: 'bad', last_seq: 5, messages: [msg(5, 'bot', 'x')], outbox: [{ client_msg_id: 'k1', text: 'still here' }] }));
    let resets = 0;
    const { c, seqs } = client();
    c.listen({ reset: () => resets++ });
    c.start();
    latest().open();
    latest().push({ type: 'error', code: 'invalid_resume_token', message: 'no' });
    expect(resets).toBe(1);
    expect(seqs()).toEqual([5]); // the listener saw the cached one before the reset
    expect(latest().sent[1]).toEqual({ type: 'hello', bot_id: 'demo' });
    latest().push(welcome('new'));
    expect(latest().ofType('message')).toEqual([{ type: 'message', client_msg_id: 'k1', text: 'still here' }]);
    expect(c.conversationId).toBe('new');
  });
});

describe('de-duplication', () => {
  it('shows each seq once, whatever the server repeats', () => {
    const { c, seqs } = client();
    c.start();
    latest().open();
    latest().push(welcome(), msg(1, 'bot', 'hi'), msg(1, 'bot', 'hi'), msg(2, 'user', 'q', { client_msg_id: 'a' }));
    // an idempotent re-ack of the same client_msg_id, then a stream_end whose seq came by replay
    latest().push(msg(2, 'user', 'q', { client_msg_id: 'a' }), { type: 'stream_end', stream_id: 's', seq: 2, id: 'm2', text: 'q', created_at: 1 });
    expect(seqs()).toEqual([1, 2]);
  });

  it('streams: tokens flow, the stored message comes once at stream_end, and a drop discards the open stream', () => {
    const { c, seqs, gone, tokens } = client();
    c.start();
    latest().open();
    latest().push(welcome(), msg(1, 'bot', 'hi'), { type: 'stream_start', stream_id: 's1', sender: 'bot' },
      { type: 'token', stream_id: 's1', delta: 'Hel' }, { type: 'token', stream_id: 's1', delta: 'lo' });
    expect(tokens).toEqual(['Hel', 'lo']);
    latest().push({ type: 'stream_end', stream_id: 's1', seq: 2, id: 'm2', text: 'Hello', created_at: 1 });
    expect(gone).toEqual(['s1']);
    expect(seqs()).toEqual([1, 2]);

    latest().push({ type: 'stream_start', stream_id: 's2', sender: 'bot' }, { type: 'token', stream_id: 's2', delta: 'cut' });
    latest().drop();
    expect(gone).toEqual(['s1', 's2']);
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    latest().open();
    expect(latest().sent[0].last_seq).toBe(2);
    latest().push(welcome('c1', 3), msg(3, 'bot', 'cut short? no: stored whole'));
    latest().push({ type: 'token', stream_id: 's2', delta: 'late' }); // a stale stream's token is ignored
    expect(tokens).toEqual(['Hel', 'lo', 'cut']);
    expect(seqs()).toEqual([1, 2, 3]);
  });

  it('a gap in seqs makes it resume from what it has instead of showing messages out of order', () => {
    const { c, seqs } = client();
    c.start();
    latest().open();
    latest().push(welcome(), msg(1, 'bot', 'hi'), msg(3, 'bot', 'after a gap'));
    expect(seqs()).toEqual([1]);
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    latest().open();
    expect(latest().sent[0].last_seq).toBe(1);
    latest().push(welcome('c1', 3), msg(2, 'user', 'q'), msg(3, 'bot', 'after a gap'));
    expect(seqs()).toEqual([1, 2, 3]);
  });
});

describe('the loader\'s early socket', () => {
  function adopt(early: any) {
    const c = new ChatClient({ url: 'ws://x', botId: 'demo', storage, early, socket: (u) => { const s = new FakeSocket(u); sockets.push(s); return s; } });
    const seen: any[] = [];
    c.listen({ message: (m) => seen.push(m.seq) });
    return { c, seen };
  }

  it('is adopted with the frames that arrived before the app, and no second hello', () => {
    const ws = new FakeSocket('ws://x');
    ws.open();
    ws.send(JSON.stringify({ type: 'hello', bot_id: 'demo' })); // what the loader sent
    const early = { ws, frames: [JSON.stringify(welcome('c1')), JSON.stringify(msg(1, 'bot', 'hi'))], closed: false, helloSent: true };
    const { c, seen } = adopt(early);
    c.send('queued');
    c.start();
    expect(sockets).toEqual([]); // no new socket
    expect(c.connected).toBe(true);
    expect(seen).toEqual([1]);
    expect(ws.ofType('hello')).toHaveLength(1);
    expect(ws.ofType('message').map((m) => m.text)).toEqual(['queued']);
    ws.push(msg(2, 'user', 'queued', { client_msg_id: c.outbox[0].client_msg_id }));
    expect(seen).toEqual([1, 2]);
  });

  it('still connecting: the client says hello itself when it opens', () => {
    const ws = new FakeSocket('ws://x');
    const { c } = adopt({ ws, frames: [], closed: false, helloSent: false });
    c.start();
    ws.open();
    expect(ws.ofType('hello')).toEqual([{ type: 'hello', bot_id: 'demo' }]);
  });

  it('already closed: a fresh socket instead', () => {
    const ws = new FakeSocket('ws://x');
    const { c } = adopt({ ws, frames: [], closed: true, helloSent: true });
    c.start();
    expect(sockets).toHaveLength(1);
    latest().open();
    expect(latest().ofType('hello')).toHaveLength(1);
  });
});

describe('read position', () => {
  it('is shared between tabs through storage, and forgotten with the conversation', () => {
    const a = client();
    a.c.start();
    latest().open();
    latest().push(welcome('c1'), msg(1, 'bot', 'hi'), msg(2, 'bot', 'there'));
    const b = client(); // another tab, same storage
    expect(b.c.readSeq()).toBe(0);
    a.c.markRead();
    expect(latest().ofType('read')).toEqual([{ type: 'read', seq: 2 }]);
    expect(b.c.readSeq()).toBe(2);
    a.c.markRead();
    expect(latest().ofType('read')).toHaveLength(1); // once per seq
    latest().push({ type: 'error', code: 'conversation_deleted', message: 'gone' });
    expect(b.c.readSeq()).toBe(0);
  });
});

describe('outbox', () => {
  it('keeps messages typed offline and sends them in order after welcome, with their ids', () => {
    const { c } = client();
    const a = c.send('one');
    const b = c.send('two');
    c.start();
    latest().open();
    expect(latest().ofType('message')).toEqual([]); // not before welcome
    latest().push(welcome());
    const out = latest().ofType('message');
    expect(out.map((m) => m.text)).toEqual(['one', 'two']);
    expect(out.map((m) => m.client_msg_id)).toEqual([a.client_msg_id, b.client_msg_id]);
  });

  it('resends every unconfirmed message after a reconnect, in order, with the same client_msg_id', () => {
    const { c, seqs } = client();
    c.start();
    latest().open();
    latest().push(welcome(), msg(1, 'bot', 'hi'));
    const a = c.send('one');
    const b = c.send('two');
    const d = c.send('three');
    latest().push(msg(2, 'user', 'one', { client_msg_id: a.client_msg_id })); // only the first was stored
    expect(c.outbox.map((m) => m.text)).toEqual(['two', 'three']);
    latest().drop();
    vi.advanceTimersByTime(BACKOFF_CAP_MS);
    latest().open();
    latest().push(welcome('c1', 2));
    expect(latest().ofType('message').map((m) => m.client_msg_id)).toEqual([b.client_msg_id, d.client_msg_id]);
    // The server had stored "two" just before the drop: its re-ack confirms without a duplicate.
    latest().push(msg(3, 'user', 'two', { client_msg_id: b.client_msg_id }), msg(3, 'user', 'two', { client_msg_id: b.client_msg_id }),
      msg(4, 'user', 'three', { client_msg_id: d.client_msg_id }));
    expect(c.outbox).toEqual([]);
    expect(seqs()).toEqual([1, 2, 3, 4]);
  });

  it('survives a reload: the outbox is in storage', () => {
    const first = client();
    first.c.send('typed offline');
    first.c.stop();
    const second = client();
    expect(second.c.outbox.map((m) => m.text)).toEqual(['typed offline']);
  });

  it('after rate_limited, retries the outbox once retry_after_ms has passed', () => {
    const { c } = client();
    c.start();
    latest().open();
    latest().push(welcome());
    c.send('fast');
    latest().push({ type: 'error', code: 'rate_limited', message: 'slow down', retry_after_ms: 700 });
    expect(latest().ofType('message')).toHaveLength(1);
    vi.advanceTimersByTime(699);
    expect(latest().ofType('message')).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(latest().ofType('message').map((m) => m.text)).toEqual(['fast', 'fast']);
  });

  it('drops a message the server can never accept', () => {
    const { c } = client();
    c.start();
    latest().open();
    latest().push(welcome());
    const a = c.send('x'.repeat(5000));
    latest().push({ type: 'error', code: 'invalid_text', message: 'too long', client_msg_id: a.client_msg_id });
    expect(c.outbox).toEqual([]);
  });
});

describe('reconnect schedule', () => {
  it('backs off exponentially with ±50 % jitter up to a cap', () => {
    expect(backoff(0, () => 0)).toBe(250);
    expect(backoff(0, () => 0.999)).toBe(750);
    expect(backoff(3, () => 0.5)).toBe(4000);
    expect(backoff(50, () => 0.5)).toBe(BACKOFF_CAP_MS);
  });

  it('waits longer after each failed attempt and starts over after a welcome', () => {
    const waits: number[] = [];
    const { c } = client(() => 0.5);
    c.listen({ status: (s, ms) => { if (s === 'offline' && ms !== undefined) waits.push(ms); } });
    c.start();
    for (let i = 0; i < 4; i++) { latest().drop(); vi.advanceTimersByTime(BACKOFF_CAP_MS); }
    latest().open();
    latest().push(welcome());
    latest().drop();
    expect(waits).toEqual([500, 1000, 2000, 4000, 500]);
  });

  it('a hello refused as rate_limited comes back on a new socket once retry_after_ms has passed, not sooner', () => {
    const { c } = client(() => 0.5);
    c.start();
    latest().open();
    latest().push({ type: 'error', code: 'rate_limited', message: 'too many conversations', retry_after_ms: 9000 });
    expect(c.status).toBe('offline');
    vi.advanceTimersByTime(8999);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    latest().open();
    expect(latest().sent[0]).toEqual({ type: 'hello', bot_id: 'demo' });
  });

  it('stops for good when the bot does not exist', () => {
    const { c } = client();
    c.start();
    latest().open();
    latest().push({ type: 'error', code: 'bot_not_found', message: 'no' });
    expect(c.status).toBe('unavailable');
    vi.advanceTimersByTime(10 * BACKOFF_CAP_MS);
    expect(sockets).toHaveLength(1);
  });
});
