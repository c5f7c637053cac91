// The desk's state, fed by the agent socket: the live inbox, the conversation open in the pane
// (its messages, streams, notes and events), the canned responses, what the notice line says
// and the connection. The views (`Inbox.tsx`, `Conversation.tsx`) draw it and call its commands;
// it tells them what changed by topic, so a token of a streamed answer redraws the thread and
// not the inbox.
import type { AgentRef, CannedResponse, Handling, InboxEntry, Resolution, Sender } from '../api.gen';
import type { Words } from '../words/en';
import { AgentSocket, TOKEN_ERRORS, type ClientFrame, type ServerFrame, type SocketLike } from './socket';

/** One line of the inbox as the desk keeps it (entries merged with their updates). */
export type Entry = Partial<InboxEntry> & { conversation_id: string; unread: number; last_seq: number };

/** What the thread shows, in order. */
export type ThreadItem =
  | { kind: 'msg'; key: string; seq: number; sender: Sender; text: string }
  | { kind: 'stream'; key: string; sender: Sender; text: string }
  | { kind: 'note'; key: string; author: string; text: string }
  | { kind: 'event'; key: string; word: keyof Words; name?: string };

export interface OpenConversation {
  id: string;
  lastSeq: number;
  /** Its inbox entry, kept up to date by updates and `handling`. */
  entry: Handling & Partial<InboxEntry>;
  items: ThreadItem[];
  /** Streams in progress, by stream id (their items are in `items`). */
  streams: Map<string, ThreadItem & { kind: 'stream' }>;
}

/** The notice line: a word of the console's, or the server's own message. */
export type Notice = { word: keyof Words } | { text: string } | null;

/** What the header shows for the socket (`#status[data-state]`). */
export type DeskStatus = 'connecting' | 'connected' | 'viewer';

export type Topic = 'status' | 'inbox' | 'open' | 'canned';

export interface DeskDeps {
  /** Whether this member may take conversations (agents and up): only they open the socket. */
  agent: boolean;
  token: () => string | null;
  /** Refreshes the session; the shell's listener then hands the socket the new token. */
  refresh: () => Promise<void>;
  /** Reads the workspace's canned responses. */
  loadCanned: () => Promise<CannedResponse[]>;
  url?: string;
  open?: (url: string) => SocketLike;
  random?: () => number;
}

/** Where the inbox stands: triage order is ESCALATED, ASSIGNED, OPEN. */
const RANK: Record<string, number> = { ESCALATED: 0, ASSIGNED: 1, OPEN: 2 };
/** How long a burst of messages is gathered into one `read`. */
const READ_DELAY = 400;
/** The visitor is told the agent stopped typing after this long without a keystroke. */
const TYPING_IDLE = 3000;
/** A `ping` keeps the socket warm; the inbox's waiting times are redrawn with it. */
const PING_EVERY = 20000;

export function uuid(): string {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** The inbox in triage order: waiting longest first, then newest activity first. */
export function sortInbox(entries: Iterable<Entry>): Entry[] {
  const rank = (e: Entry) => RANK[e.status ?? ''] ?? 3;
  const activity = (e: Entry) => e.last_message?.created_at || e.started_at || 0;
  return [...entries].sort((a, b) => rank(a) - rank(b)
    || (a.status === 'ESCALATED' ? (a.waiting_since || 0) - (b.waiting_since || 0) : activity(b) - activity(a)));
}

export class DeskModel {
  status: DeskStatus = 'connecting';
  me: AgentRef | null = null;
  readonly inbox = new Map<string, Entry>();
  /** Whether an `inbox` frame arrived (before it, the list is loading). */
  inboxLoaded = false;
  /** The socket is down and waits to reconnect. */
  offline = false;
  open: OpenConversation | null = null;
  notice: Notice = null;
  canned: CannedResponse[] = [];
  /** Bumped when the thread grew (it scrolls to its end). */
  scrollTick = 0;
  /** Bumped when the agent picked a conversation (the reply box takes the focus). */
  focusTick = 0;

  private readonly socket: AgentSocket;
  private readonly listeners = new Map<Topic, Set<() => void>>();
  private readTimer: ReturnType<typeof setTimeout> | undefined;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private pinger: ReturnType<typeof setInterval> | undefined;
  private stopped = true;
  private itemKey = 0;

  constructor(private readonly deps: DeskDeps) {
    const url = deps.url ?? `${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/v1/agent/ws`;
    this.socket = new AgentSocket({
      url,
      token: deps.token,
      open: deps.open,
      random: deps.random,
      onFrame: (f) => this.handle(f),
      onConnecting: (retrying) => {
        this.offline = retrying;
        this.setStatus('connecting');
        this.emit('inbox');
      },
    });
  }

  // ---- listening ------------------------------------------------------------------------------
  on(topic: Topic, listener: () => void): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, set = new Set());
    set.add(listener);
    return () => { set!.delete(listener); };
  }

  private emit(...topics: Topic[]): void {
    for (const topic of topics) for (const l of this.listeners.get(topic) ?? []) l();
  }

  private setStatus(status: DeskStatus): void {
    this.status = status;
    this.emit('status');
  }

  // ---- life ---------------------------------------------------------------------------------
  start(): void {
    this.stopped = false;
    // Viewers have no desk: the agent socket is for agents and up.
    if (!this.deps.agent) { this.setStatus('viewer'); return; }
    this.socket.start();
    this.deps.loadCanned().then((list) => {
      if (this.stopped) return;
      this.canned = list;
      this.emit('canned');
    }, () => {});
    this.pinger = setInterval(() => {
      this.send({ type: 'ping' });
      if (this.inbox.size) this.emit('inbox');
    }, PING_EVERY);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.pinger);
    clearTimeout(this.readTimer);
    clearTimeout(this.typingTimer);
    this.socket.stop();
  }

  /** A refreshed access token for the open socket. */
  reauth(token: string): void { this.socket.reauth(token); }

  reconnectNow(): void { this.socket.reconnectNow(); }

  presence(status: 'online' | 'away'): void { this.send({ type: 'presence', status }); }

  private send(frame: ClientFrame): void { this.socket.send(frame); }

  // ---- frames -------------------------------------------------------------------------------
  private handle(f: ServerFrame): void {
    if (this.stopped) return;
    switch (f.type) {
      case 'welcome': {
        this.me = f.agent;
        this.offline = false;
        this.setStatus('connected');
        // Reconnected with a conversation open: watch it again, from the start.
        if (this.open) {
          const id = this.open.id;
          this.open = null;
          this.select(id, false);
        }
        this.emit('inbox');
        break;
      }
      case 'inbox':
        this.inbox.clear();
        for (const e of f.conversations) this.inbox.set(e.conversation_id, { ...e });
        this.inboxLoaded = true;
        this.emit('inbox');
        break;
      case 'inbox_update': {
        const { type: _type, last_message, ...rest } = f;
        const prev = this.inbox.get(f.conversation_id) ?? { conversation_id: f.conversation_id, unread: 0, last_seq: 0 };
        const next: Entry = { ...prev, ...rest };
        if (last_message) {
          next.last_message = { seq: last_message.seq, sender: last_message.sender, text: last_message.text.slice(0, 140), created_at: last_message.created_at };
          next.last_seq = last_message.seq;
        }
        next.unread = Math.max(0, (next.last_seq || 0) - (next.agent_read_seq || 0));
        if (next.status === 'RESOLVED') this.inbox.delete(f.conversation_id);
        else this.inbox.set(f.conversation_id, next);
        this.emit('inbox');
        if (this.open && this.open.id === f.conversation_id) {
          Object.assign(this.open.entry, next);
          this.emit('open');
        }
        break;
      }
      case 'subscribed':
        if (!this.open || this.open.id !== f.conversation_id) break;
        this.open.entry = f.conversation;
        for (const n of f.notes) this.push({ kind: 'note', key: this.key(), author: n.author.name, text: n.text });
        this.emit('open');
        break;
      case 'message':
        if (this.isOpen(f)) this.addMessage(f.message.seq, f.message.sender, f.message.text);
        break;
      case 'stream_start':
        if (this.isOpen(f)) {
          const item = { kind: 'stream' as const, key: this.key(), sender: f.sender, text: '' };
          this.open!.streams.set(f.stream_id, item);
          this.push(item);
        }
        break;
      case 'token':
        if (this.isOpen(f)) {
          const item = this.open!.streams.get(f.stream_id);
          if (item) { item.text += f.delta; this.scrolled(); }
        }
        break;
      case 'stream_end':
        if (this.isOpen(f)) {
          this.dropStream(f.stream_id);
          this.addMessage(f.message.seq, f.message.sender, f.message.text);
          this.emit('open');
        }
        break;
      case 'stream_cancelled':
        if (this.isOpen(f)) {
          this.dropStream(f.stream_id);
          this.push({ kind: 'event', key: this.key(), word: 'answerWithdrawn' });
        }
        break;
      case 'handoff':
        if (this.isOpen(f)) {
          const word = f.to === 'human' ? (f.agent?.name ? 'tookOver' : 'agentTookOver') : 'backToBot';
          this.push({ kind: 'event', key: this.key(), word, name: f.agent?.name });
        }
        break;
      case 'handling':
        if (this.isOpen(f)) { Object.assign(this.open!.entry, f.handling); this.emit('open'); }
        break;
      case 'note':
        if (this.isOpen(f)) this.push({ kind: 'note', key: this.key(), author: f.note.author.name, text: f.note.text });
        break;
      case 'typing':
        if (this.isOpen(f) && f.sender === 'user') this.say(f.on ? { word: 'visitorTyping' } : null);
        break;
      case 'error':
        // The token was not taken: refreshing gives the socket a new one (`reauth`).
        if (TOKEN_ERRORS.includes(f.code)) { this.deps.refresh().catch(() => {}); break; }
        this.say({ text: f.message || f.code });
        break;
      default:
        break;
    }
  }

  private isOpen(f: { conversation_id: string }): boolean {
    return this.open !== null && f.conversation_id === this.open.id;
  }

  private key(): string { return `i${++this.itemKey}`; }

  private push(item: ThreadItem): void {
    this.open!.items.push(item);
    this.scrolled();
  }

  private scrolled(): void {
    this.scrollTick++;
    this.emit('open');
  }

  private dropStream(streamId: string): void {
    const open = this.open!;
    const item = open.streams.get(streamId);
    open.streams.delete(streamId);
    if (item) open.items = open.items.filter((i) => i !== item);
  }

  private say(notice: Notice): void {
    this.notice = notice;
    this.emit('open');
  }

  /** A stored message, once (a replay after a reconnect repeats what is shown). */
  private addMessage(seq: number, sender: Sender, text: string): void {
    const open = this.open!;
    if (seq <= open.lastSeq) return;
    open.lastSeq = seq;
    this.push({ kind: 'msg', key: `m${seq}`, seq, sender, text });
    this.markReadSoon();
  }

  /** One `read` for a burst of messages (a replay, a stream of answers): each is a write on the server. */
  private markReadSoon(): void {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      if (this.open && document.visibilityState === 'visible') this.send({ type: 'read', conversation_id: this.open.id, seq: this.open.lastSeq });
    }, READ_DELAY);
  }

  // ---- commands -----------------------------------------------------------------------------
  /** Opens a conversation in the pane (`focus`: the agent picked it, the reply box takes the focus). */
  select(id: string, focus = true): void {
    if (this.open && this.open.id === id) return;
    if (this.open) this.send({ type: 'unsubscribe', conversation_id: this.open.id });
    this.open = { id, lastSeq: 0, streams: new Map(), items: [], entry: { ...(this.inbox.get(id) ?? { status: 'OPEN' }) } };
    this.notice = null;
    this.send({ type: 'subscribe', conversation_id: id, last_seq: 0 });
    if (focus) this.focusTick++;
    this.emit('inbox', 'open');
  }

  /** Whether the open conversation is held by this agent. */
  get mine(): boolean {
    const e = this.open?.entry;
    return e?.status === 'ASSIGNED' && e.assignee?.id === this.me?.id;
  }

  claim(): void { if (this.open) this.send({ type: 'claim', conversation_id: this.open.id, ref: 'claim' }); }

  release(): void { if (this.open) this.send({ type: 'release', conversation_id: this.open.id, ref: 'release' }); }

  resolve(resolution: Resolution, csat: boolean): void {
    if (this.open) this.send({ type: 'resolve', conversation_id: this.open.id, resolution, csat, ref: 'resolve' });
  }

  /** Sends a reply; false when there is nothing to send. */
  reply(raw: string): boolean {
    const text = raw.trim();
    if (!text || !this.open) return false;
    this.send({ type: 'message', conversation_id: this.open.id, client_msg_id: uuid(), text, ref: 'reply' });
    this.send({ type: 'typing', conversation_id: this.open.id, on: false });
    return true;
  }

  /** Adds an internal note; false when there is nothing to add. */
  note(raw: string): boolean {
    const text = raw.trim();
    if (!text || !this.open) return false;
    this.send({ type: 'note', conversation_id: this.open.id, text, ref: 'note' });
    return true;
  }

  /** The agent typed in the reply box: typing on, and off after a pause. */
  typed(): void {
    const open = this.open;
    if (!open) return;
    if (!this.typingTimer) this.send({ type: 'typing', conversation_id: open.id, on: true });
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => {
      this.typingTimer = undefined;
      if (this.open) this.send({ type: 'typing', conversation_id: this.open.id, on: false });
    }, TYPING_IDLE);
  }
}
