// @vitest-environment happy-dom
// The desk without a server: the agent socket's protocol as the model speaks it (hello, welcome,
// the inbox and its updates, one conversation's replay, streams, notes and read marks, commands,
// reconnection with backoff, a refreshed token), the canned responses a `/shortcut` offers, and
// how the dashboard writes numbers in English and Italian.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CannedResponse } from '../src/console/api.gen';
import { cannedMatches } from '../src/console/desk/Conversation';
import { ago, count, duration, num, pct, scale, sentiment, utc } from '../src/console/desk/format';
import { DeskModel, sortInbox, type Entry } from '../src/console/desk/model';
import { setLang } from '../src/console/i18n';
import { FakeSocket } from './fakes';

let sockets: FakeSocket[];
const latest = () => sockets[sockets.length - 1];
let refreshes: number;
let token: string;

function desk(agent = true) {
  const model = new DeskModel({
    agent,
    token: () => token,
    refresh: async () => { refreshes++; },
    loadCanned: async () => [],
    url: 'ws://parla/v1/agent/ws',
    random: () => 0.5,
    open: (u) => { const s = new FakeSocket(u); sockets.push(s); return s; },
  });
  model.start();
  return model;
}

const ann = { id: 'a1', name: 'Ann' };
const entry = (id: string, extra: Partial<Entry> = {}): Entry =>
  ({ conversation_id: id, bot_id: 'b1', source: 'web', started_at: 1000, status: 'OPEN', unread: 0, last_seq: 0, ...extra } as Entry);
const message = (seq: number, sender: 'user' | 'bot' | 'human', text: string) =>
  ({ id: `m${seq}`, seq, sender, text, created_at: 5000 + seq, kind: 'text', conversation_id: 'c1', tenant_id: 't1' });
const texts = (m: DeskModel) => m.open!.items.map((i) => (i.kind === 'event' ? `event:${i.word}` : `${i.kind}:${i.text}`));

/** A desk signed in as Ann, with `entries` in its inbox. */
function signedIn(entries: Entry[] = []) {
  const model = desk();
  latest().open();
  latest().push({ type: 'welcome', agent: ann, role: 'agent', expires_at: 0, protocol: 1, agents: [] }, { type: 'inbox', conversations: entries });
  return model;
}

beforeEach(() => { vi.useFakeTimers(); sockets = []; refreshes = 0; token = 'tok1'; });
afterEach(() => { vi.useRealTimers(); });

describe('the agent socket', () => {
  it('says hello with the access token; welcome makes the desk online', () => {
    const model = desk();
    const statuses: string[] = [];
    model.on('status', () => statuses.push(model.status));
    expect(model.status).toBe('connecting');
    latest().open();
    expect(latest().sent).toEqual([{ type: 'hello', token: 'tok1' }]);
    latest().push({ type: 'welcome', agent: ann, role: 'agent', expires_at: 0, protocol: 1, agents: [] });
    expect(model.status).toBe('connected');
    expect(model.me).toEqual(ann);
    expect(statuses).toEqual(['connected']);
    expect(model.inboxLoaded).toBe(false);
  });

  it('a viewer opens no socket', () => {
    const model = desk(false);
    expect(model.status).toBe('viewer');
    expect(sockets).toHaveLength(0);
  });

  it('reconnects after a drop, backing off, and watches the open conversation again from the start', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    latest().push({ type: 'message', conversation_id: 'c1', message: message(1, 'user', 'hi') });
    latest().drop();
    expect(model.status).toBe('connecting');
    expect(model.offline).toBe(true);
    // 500 ms × 2^0 × (0.5 + 0.5), then 1 s, 2 s… until a welcome resets it.
    vi.advanceTimersByTime(499);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    latest().drop();
    vi.advanceTimersByTime(999);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(3);
    latest().open();
    expect(latest().sent).toEqual([{ type: 'hello', token: 'tok1' }]);
    latest().push({ type: 'welcome', agent: ann, role: 'agent', expires_at: 0, protocol: 1, agents: [] });
    expect(latest().ofType('subscribe')).toEqual([{ type: 'subscribe', conversation_id: 'c1', last_seq: 0 }]);
    expect(model.open!.items).toEqual([]);
    latest().push({ type: 'message', conversation_id: 'c1', message: message(1, 'user', 'hi') });
    expect(texts(model)).toEqual(['msg:hi']);
    latest().drop();
    vi.advanceTimersByTime(500);
    expect(sockets).toHaveLength(4);
  });

  it('"Reconnect now" skips the wait', () => {
    const model = desk();
    latest().drop();
    expect(sockets).toHaveLength(1);
    model.reconnectNow();
    expect(sockets).toHaveLength(2);
    model.reconnectNow(); // connecting already: nothing more
    expect(sockets).toHaveLength(2);
  });

  it('"Reconnect now" during an attempt that then fails retries at the shortest wait', () => {
    const model = desk();
    for (let i = 0; i < 5; i++) { latest().drop(); vi.advanceTimersByTime(60_000); }
    expect(sockets).toHaveLength(6);
    model.reconnectNow(); // the sixth attempt is under way
    expect(sockets).toHaveLength(6);
    latest().drop();
    vi.advanceTimersByTime(500);
    expect(sockets).toHaveLength(7);
  });

  it('a refreshed token goes to the open socket (auth), or as a new hello after a refused one', () => {
    const model = desk();
    latest().open();
    latest().push({ type: 'error', code: 'token_expired', message: 'expired' });
    expect(refreshes).toBe(1);
    expect(model.notice).toBeNull();
    model.reauth('tok2');
    expect(latest().sent.at(-1)).toEqual({ type: 'hello', token: 'tok2' });
    latest().push({ type: 'welcome', agent: ann, role: 'agent', expires_at: 0, protocol: 1, agents: [] });
    model.reauth('tok3');
    expect(latest().sent.at(-1)).toEqual({ type: 'auth', token: 'tok3' });
    expect(sockets).toHaveLength(1);
  });

  it('other errors are said on the notice line', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    latest().push({ type: 'error', code: 'already_claimed', message: 'another agent holds it', ref: 'claim' });
    expect(model.notice).toEqual({ text: 'another agent holds it' });
    latest().push({ type: 'error', code: 'not_assigned' });
    expect(model.notice).toEqual({ text: 'not_assigned' });
  });

  it('pings every 20 s', () => {
    signedIn();
    vi.advanceTimersByTime(20_000);
    expect(latest().ofType('ping')).toHaveLength(1);
  });

  it('stops: the socket closes and is not reopened', () => {
    const model = signedIn();
    model.stop();
    expect(latest().closed).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
  });
});

describe('the inbox', () => {
  it('is in triage order: escalated (longest waiting first), assigned, open (newest activity first)', () => {
    const sorted = sortInbox([
      entry('open-old', { started_at: 1 }),
      entry('assigned', { status: 'ASSIGNED' }),
      entry('esc-late', { status: 'ESCALATED', waiting_since: 20 }),
      entry('open-new', { started_at: 2, last_message: { seq: 1, sender: 'user', text: 'x', created_at: 9 } }),
      entry('esc-early', { status: 'ESCALATED', waiting_since: 10 }),
    ]);
    expect(sorted.map((e) => e.conversation_id)).toEqual(['esc-early', 'esc-late', 'assigned', 'open-new', 'open-old']);
  });

  it('merges updates: a new message counts as unread until read, a resolved conversation leaves', () => {
    const model = signedIn([entry('c1', { last_seq: 2, agent_read_seq: 2 })]);
    expect(model.inboxLoaded).toBe(true);
    const long = 'x'.repeat(200);
    latest().push({ type: 'inbox_update', conversation_id: 'c1', bot_id: 'b1', status: 'ESCALATED', waiting_since: 7, agent_read_seq: 2, last_message: message(3, 'user', long) });
    const e = model.inbox.get('c1')!;
    expect(e).toMatchObject({ status: 'ESCALATED', waiting_since: 7, last_seq: 3, unread: 1, source: 'web' });
    expect(e.last_message).toEqual({ seq: 3, sender: 'user', text: 'x'.repeat(140), created_at: 5003 });
    latest().push({ type: 'inbox_update', conversation_id: 'c2', bot_id: 'b1', status: 'OPEN' });
    expect(model.inbox.get('c2')).toMatchObject({ conversation_id: 'c2', unread: 0, last_seq: 0 });
    latest().push({ type: 'inbox_update', conversation_id: 'c1', bot_id: 'b1', status: 'RESOLVED' });
    expect([...model.inbox.keys()]).toEqual(['c2']);
  });
});

describe('one conversation', () => {
  it('subscribes from the start; notes first, then each message once, in order', () => {
    const model = signedIn([entry('c1'), entry('c2')]);
    model.select('c1');
    expect(latest().ofType('subscribe')).toEqual([{ type: 'subscribe', conversation_id: 'c1', last_seq: 0 }]);
    expect(model.focusTick).toBe(1);
    latest().push({ type: 'subscribed', conversation_id: 'c1', conversation: entry('c1', { status: 'ESCALATED' }), notes: [{ id: 'n1', author: ann, text: 'VIP', conversation_id: 'c1', created_at: 1, tenant_id: 't1' }] });
    latest().push(
      { type: 'message', conversation_id: 'c1', message: message(1, 'user', 'hi') },
      { type: 'message', conversation_id: 'c1', message: message(1, 'user', 'hi') },
      { type: 'message', conversation_id: 'c2', message: message(2, 'user', 'elsewhere') },
      { type: 'message', conversation_id: 'c1', message: message(2, 'bot', 'hello') },
    );
    expect(texts(model)).toEqual(['note:VIP', 'msg:hi', 'msg:hello']);
    expect(model.open!.entry.status).toBe('ESCALATED');
    // Another: the first is unsubscribed.
    model.select('c2');
    expect(latest().ofType('unsubscribe')).toEqual([{ type: 'unsubscribe', conversation_id: 'c1' }]);
    expect(model.open!.items).toEqual([]);
  });

  it('shows a streamed answer as it comes, then the stored message in its place', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    latest().push({ type: 'stream_start', conversation_id: 'c1', stream_id: 's1', sender: 'bot' }, { type: 'token', conversation_id: 'c1', stream_id: 's1', delta: 'Hel' }, { type: 'token', conversation_id: 'c1', stream_id: 's1', delta: 'lo' });
    expect(texts(model)).toEqual(['stream:Hello']);
    latest().push({ type: 'stream_end', conversation_id: 'c1', stream_id: 's1', message: message(1, 'bot', 'Hello!') });
    expect(texts(model)).toEqual(['msg:Hello!']);
    latest().push({ type: 'stream_start', conversation_id: 'c1', stream_id: 's2', sender: 'bot' }, { type: 'stream_cancelled', conversation_id: 'c1', stream_id: 's2' });
    expect(texts(model)).toEqual(['msg:Hello!', 'event:answerWithdrawn']);
  });

  it('says handoffs, follows handling and typing', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    latest().push({ type: 'handoff', conversation_id: 'c1', to: 'human', agent: ann }, { type: 'handoff', conversation_id: 'c1', to: 'human' }, { type: 'handoff', conversation_id: 'c1', to: 'bot' });
    expect(model.open!.items.map((i) => (i.kind === 'event' ? [i.word, i.name] : null))).toEqual([['tookOver', 'Ann'], ['agentTookOver', undefined], ['backToBot', undefined]]);
    expect(model.mine).toBe(false);
    latest().push({ type: 'handling', conversation_id: 'c1', handling: { status: 'ASSIGNED', assignee: ann } });
    expect(model.mine).toBe(true);
    latest().push({ type: 'typing', conversation_id: 'c1', sender: 'user', on: true });
    expect(model.notice).toEqual({ word: 'visitorTyping' });
    latest().push({ type: 'typing', conversation_id: 'c1', sender: 'user', on: false });
    expect(model.notice).toBeNull();
  });

  it('marks read once for a burst of messages', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    for (let seq = 1; seq <= 5; seq++) latest().push({ type: 'message', conversation_id: 'c1', message: message(seq, 'user', `m${seq}`) });
    vi.advanceTimersByTime(399);
    expect(latest().ofType('read')).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(latest().ofType('read')).toEqual([{ type: 'read', conversation_id: 'c1', seq: 5 }]);
  });

  it('sends the commands with their refs', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    model.claim();
    model.release();
    model.resolve('UNRESOLVED', true);
    expect(model.reply('  ')).toBe(false);
    expect(model.reply(' Hello ')).toBe(true);
    expect(model.note('VIP')).toBe(true);
    const sent = latest().sent.filter((f) => !['hello', 'subscribe', 'typing'].includes(f.type));
    expect(sent.map(({ client_msg_id: _, ...f }) => f)).toEqual([
      { type: 'claim', conversation_id: 'c1', ref: 'claim' },
      { type: 'release', conversation_id: 'c1', ref: 'release' },
      { type: 'resolve', conversation_id: 'c1', resolution: 'UNRESOLVED', csat: true, ref: 'resolve' },
      { type: 'message', conversation_id: 'c1', text: 'Hello', ref: 'reply' },
      { type: 'note', conversation_id: 'c1', text: 'VIP', ref: 'note' },
    ]);
    expect(typeof latest().ofType('message')[0].client_msg_id).toBe('string');
  });

  it('tells the visitor the agent types, and stops after 3 s without a keystroke', () => {
    const model = signedIn([entry('c1')]);
    model.select('c1');
    model.typed();
    model.typed();
    expect(latest().ofType('typing')).toEqual([{ type: 'typing', conversation_id: 'c1', on: true }]);
    vi.advanceTimersByTime(3000);
    expect(latest().ofType('typing').at(-1)).toEqual({ type: 'typing', conversation_id: 'c1', on: false });
  });
});

describe('canned responses', () => {
  const canned = [
    { id: '1', shortcut: 'thanks', text: 'Thank you!' },
    { id: '2', shortcut: 'thx', text: 'Thx' },
    { id: '3', shortcut: 'hours', text: '9 to 5' },
  ] as CannedResponse[];
  it('are offered for a /shortcut being typed, none once a space is typed', () => {
    expect(cannedMatches(canned, '/th').map((c) => c.shortcut)).toEqual(['thanks', 'thx']);
    expect(cannedMatches(canned, '/').length).toBe(3);
    expect(cannedMatches(canned, '/thanks ')).toEqual([]);
    expect(cannedMatches(canned, 'th')).toEqual([]);
  });
});

describe('numbers and times', () => {
  afterEach(async () => { await setLang('en', false); });
  it('are written as the console always wrote them in English', () => {
    expect([num(1234567), pct(1 / 3), pct(null), pct(1), duration(999.6), duration(1500), duration(61_000), duration(3_725_000), sentiment(0.25), sentiment(-0.5)])
      .toEqual(['1,234,567', '33.3%', '\u2014', '100%', '1000 ms', '1.5 s', '1 min 1 s', '1 h 2 min', '+0.25', '-0.50']);
    expect(count(1, 'messages1', 'messagesN')).toBe('1 message');
    expect(count(0, 'messages1', 'messagesN')).toBe('0 messages');
    expect(utc('when', Date.UTC(2026, 11, 7, 14, 5))).toBe('7 Dec, 14:05');
    expect(ago(Date.now() - 12_000)).toBe('12s');
    expect(ago(Date.now() - 150_000)).toBe('3m');
  });
  it('in Italian, with a decimal comma and Italian dates', async () => {
    await setLang('it', false);
    expect([num(1234567), pct(1 / 3), duration(1500), sentiment(0.25)]).toEqual(['1.234.567', '33,3%', '1,5 s', '+0,25']);
    expect(count(2, 'messages1', 'messagesN')).toBe('2 messaggi');
    expect(utc('day', Date.UTC(2026, 11, 7))).toBe('7 dic');
    expect(ago(Date.now() - 150_000)).toBe('3 min');
  });
  it('axes go up in 1-2-5 steps', () => {
    expect(scale(0)).toEqual({ step: 1, top: 4 });
    expect(scale(7)).toEqual({ step: 2, top: 8 });
    expect(scale(130)).toEqual({ step: 50, top: 150 });
  });
});
