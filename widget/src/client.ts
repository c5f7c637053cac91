// The widget's protocol client: one conversation over widget protocol v1 (docs/protocol.md),
// with no DOM. It owns the socket, the reconnect schedule, the resume state kept in storage,
// the de-duplication of stored messages by seq and the outbox of unsent messages. The UI
// (app.ts) only listens to it and calls send/typing/read.
import type { ClientFrame, FormSubmission, MessageFrame, ServerFrame, Sender, BotInfo } from './protocol.gen';

export type Status = 'connecting' | 'connected' | 'offline' | 'unavailable';

/** A message the visitor wrote that the server has not confirmed yet. */
export interface OutboxItem {
  client_msg_id: string;
  text: string;
  postback?: string;
  form?: FormSubmission;
}

/** What the client tells its UI. Every callback is optional. */
export interface Listener {
  status?(status: Status, retryInMs?: number): void;
  welcome?(bot: BotInfo, fresh: boolean): void;
  /** A stored message, each seq once, in seq order. */
  message?(m: MessageFrame): void;
  /** The outbox changed (added, confirmed, dropped). */
  outbox?(items: readonly OutboxItem[]): void;
  streamStart?(streamId: string, sender: Sender): void;
  token?(streamId: string, delta: string): void;
  /** The stream is gone: stored (its message follows or came already), cancelled or dropped. */
  streamGone?(streamId: string): void;
  typing?(sender: Sender, on: boolean): void;
  read?(sender: Sender, seq: number): void;
  handoff?(to: Sender, agent: string | null): void;
  /** An error worth telling the visitor about (a code from docs/protocol.md section 5). */
  error?(code: string, message: string): void;
  /** The stored conversation was forgotten (deleted, or its token refused): clear the view. */
  reset?(): void;
}

/** The minimum of the browser's WebSocket the client uses (tests pass a fake). */
export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface ClientOptions {
  url: string;
  botId: string;
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  socket?: (url: string) => SocketLike;
  random?: () => number;
  /** Stored messages kept for the next page load. */
  cacheSize?: number;
  /** A socket the loader already opened (and maybe sent `hello` on): used for the first connect. */
  early?: EarlySocketLike | null;
}

/** What the client needs of the loader's early socket (src/early.ts). */
export interface EarlySocketLike {
  ws: SocketLike;
  frames: string[];
  closed: boolean;
  helloSent: boolean;
}

/** Saved per bot, so a reload resumes the same conversation and shows it at once. */
interface Saved {
  conversation_id?: string;
  resume_token?: string;
  last_seq?: number;
  messages?: MessageFrame[];
  outbox?: OutboxItem[];
  /** Highest seq the visitor has seen, in any tab: what is above it (not theirs) is unread. */
  read_seq?: number;
}

const OPEN = 1;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
export const PING_MS = 20_000;
/** No frame at all for this long (pings answered by pongs included): the link is dead. */
export const DEAD_MS = 50_000;

/** Exponential backoff with full ±50 % jitter: attempt 0 → 250–750 ms, capped at 30 s. */
export function backoff(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.5 + random()));
}

export function uuid(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') {
    try { return c.randomUUID(); } catch { /* insecure context */ }
  }
  const b = new Uint8Array(16);
  if (c && c.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class ChatClient {
  private readonly opts: Required<Omit<ClientOptions, 'storage' | 'early'>> & { storage: ClientOptions['storage'] };
  private early: EarlySocketLike | null;
  private readonly key: string;
  private listeners: Listener[] = [];
  private ws: SocketLike | null = null;
  private welcomed = false;
  private stopped = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastRx = 0;
  private conv: { conversation_id: string; resume_token: string } | null = null;
  private seqs = new Set<number>();
  private cache: MessageFrame[] = [];
  private streams = new Map<string, Sender>();
  private queue: OutboxItem[] = [];
  private readSent = 0;
  private readSeqLocal = 0;
  /** Highest seq held, i.e. what a resume asks to continue after. */
  lastSeq = 0;
  status: Status = 'offline';
  bot: BotInfo | null = null;

  constructor(options: ClientOptions) {
    this.opts = {
      socket: (url) => new WebSocket(url) as unknown as SocketLike,
      random: Math.random,
      cacheSize: 200,
      storage: safeStorage(),
      ...options,
    };
    this.key = `parla.widget.v1.${options.botId}`;
    this.early = options.early ?? null;
    const saved = this.load();
    if (saved.conversation_id && saved.resume_token) {
      this.conv = { conversation_id: saved.conversation_id, resume_token: saved.resume_token };
      for (const m of saved.messages ?? []) this.remember(m);
    }
    this.queue = (saved.outbox ?? []).filter((m) => m && typeof m.client_msg_id === 'string' && typeof m.text === 'string');
  }

  /** Adds a listener; it first hears the stored transcript and outbox, so a reload shows them. */
  listen(l: Listener): void {
    this.listeners.push(l);
    for (const m of this.cache) l.message?.(m);
    l.outbox?.(this.queue);
  }

  get conversationId(): string | null { return this.conv?.conversation_id ?? null; }
  get outbox(): readonly OutboxItem[] { return this.queue; }
  get connected(): boolean { return this.welcomed; }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Stops for good (no reconnect) and closes the socket. */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.persist();
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) { ws.onclose = null; try { ws.close(1000); } catch { /* closed */ } }
  }

  /** Reconnects now if waiting for a retry (the browser came back online, the tab woke up). */
  wake(): void {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  /** Queues a visitor message; it goes out now if connected, else after the next welcome. */
  send(text: string, extra: { postback?: string; form?: FormSubmission } = {}): OutboxItem {
    const item: OutboxItem = { client_msg_id: uuid(), text, ...extra };
    this.queue.push(item);
    this.persist();
    this.emit((l) => l.outbox?.(this.queue));
    if (this.welcomed) this.transmit(item);
    return item;
  }

  typing(on: boolean): boolean { return this.frame({ type: 'typing', on }); }

  /** The visitor has seen everything held: tells the server (once per seq) and the other tabs. */
  markRead(): void {
    if (this.lastSeq > this.readSeq()) { this.readSeqLocal = this.lastSeq; this.persist(); }
    if (this.lastSeq > this.readSent && this.frame({ type: 'read', seq: this.lastSeq })) this.readSent = this.lastSeq;
  }

  /** Highest seq the visitor has seen here or in another tab (read fresh from storage). */
  readSeq(): number {
    const stored = this.load().read_seq;
    return Math.max(this.readSeqLocal, typeof stored === 'number' ? stored : 0);
  }

  // ---- connection -----------------------------------------------------------------------------
  private connect(): void {
    this.clear('reconnectTimer');
    if (this.stopped || this.ws) return;
    this.setStatus('connecting');
    const early = this.early;
    this.early = null;
    let sock: SocketLike;
    if (early && !early.closed) sock = early.ws;
    else {
      if (early) try { early.ws.close(); } catch { /* closed */ }
      try { sock = this.opts.socket(this.opts.url); } catch { this.scheduleReconnect(); return; }
    }
    this.ws = sock;
    this.welcomed = false;
    sock.onopen = () => {
      if (this.ws !== sock) return;
      this.lastRx = Date.now();
      this.hello();
      this.startPing();
    };
    sock.onmessage = (ev) => {
      if (this.ws !== sock) return;
      this.lastRx = Date.now();
      if (typeof ev.data !== 'string') return;
      let f: ServerFrame;
      try { f = JSON.parse(ev.data) as ServerFrame; } catch { return; }
      if (f && typeof f.type === 'string') this.handle(f);
    };
    sock.onerror = () => { /* onclose follows */ };
    sock.onclose = () => { if (this.ws === sock) this.lost(); };
    if (early && sock === early.ws) {
      if (early.helloSent) { this.lastRx = Date.now(); this.startPing(); }
      // What arrived before the client took over, in order (a frame may replace the socket).
      for (const data of early.frames.splice(0)) if (this.ws === sock) sock.onmessage?.({ data });
    }
  }

  private lost(minDelay = 0): void {
    const sock = this.ws;
    this.ws = null;
    this.welcomed = false;
    this.clear('pingTimer');
    if (sock) { sock.onclose = null; try { sock.close(); } catch { /* closed */ } }
    this.dropStreams();
    if (!this.stopped) this.scheduleReconnect(minDelay);
  }

  private scheduleReconnect(minDelay = 0): void {
    const delay = Math.max(minDelay, backoff(this.attempt++, this.opts.random));
    this.setStatus('offline', delay);
    this.clear('reconnectTimer');
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private startPing(): void {
    this.clear('pingTimer');
    this.pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== OPEN) return;
      if (Date.now() - this.lastRx > DEAD_MS) { this.lost(); return; }
      this.raw({ type: 'ping' });
    }, PING_MS);
  }

  private hello(): void {
    const f: ClientFrame = { type: 'hello', bot_id: this.opts.botId };
    if (this.conv) Object.assign(f, this.conv, { last_seq: this.lastSeq });
    this.raw(f);
  }

  private raw(f: ClientFrame): boolean {
    if (this.ws && this.ws.readyState === OPEN) {
      this.ws.send(JSON.stringify(f));
      return true;
    }
    return false;
  }

  private frame(f: ClientFrame): boolean { return this.welcomed && this.raw(f); }

  private transmit(m: OutboxItem): void {
    const f: ClientFrame = { type: 'message', client_msg_id: m.client_msg_id, text: m.text };
    if (m.postback !== undefined) f.postback = m.postback;
    if (m.form !== undefined) f.form = m.form;
    this.frame(f);
  }

  /** Every unconfirmed message, oldest first, with its original client_msg_id. */
  private flushOutbox(): void { for (const m of this.queue) this.transmit(m); }

  // ---- frames ---------------------------------------------------------------------------------
  private handle(f: ServerFrame): void {
    switch (f.type) {
      case 'welcome': {
        const fresh = !this.conv || this.conv.conversation_id !== f.conversation_id;
        if (fresh && (this.conv || this.cache.length)) this.forget();
        this.conv = { conversation_id: f.conversation_id, resume_token: f.resume_token };
        this.bot = f.bot;
        this.welcomed = true;
        this.attempt = 0;
        this.persist();
        this.setStatus('connected');
        this.emit((l) => l.welcome?.(f.bot, fresh));
        this.flushOutbox();
        break;
      }
      case 'message': this.stored(f); break;
      case 'stream_start':
        if (!this.streams.has(f.stream_id)) {
          this.streams.set(f.stream_id, f.sender);
          this.emit((l) => l.streamStart?.(f.stream_id, f.sender));
        }
        break;
      case 'token':
        if (this.streams.has(f.stream_id)) this.emit((l) => l.token?.(f.stream_id, f.delta));
        break;
      case 'stream_end': {
        const sender = this.streams.get(f.stream_id) ?? 'bot';
        this.endStream(f.stream_id);
        const m: MessageFrame = { seq: f.seq, id: f.id, sender, text: f.text, created_at: f.created_at };
        if (f.kind) m.kind = f.kind;
        if (f.content) m.content = f.content;
        this.stored(m);
        break;
      }
      case 'stream_cancelled': this.endStream(f.stream_id); break;
      case 'typing': this.emit((l) => l.typing?.(f.sender, f.on)); break;
      case 'read': this.emit((l) => l.read?.(f.sender, f.seq)); break;
      case 'handoff': this.emit((l) => l.handoff?.(f.to, f.agent ?? null)); break;
      case 'error': this.onError(f.code, f.message, f.client_msg_id ?? null, f.retry_after_ms ?? null); break;
      default: break; // pong, and frame types a later server adds
    }
  }

  /** A stored message: confirms the outbox entry it echoes; shown once per seq, in order. */
  private stored(m: MessageFrame): void {
    if (m.client_msg_id) this.confirm(m.client_msg_id);
    if (!Number.isInteger(m.seq) || m.seq < 1 || this.seqs.has(m.seq) || m.seq <= this.lastSeq) return;
    if (m.seq > this.lastSeq + 1 && this.welcomed) {
      // Seqs have no gaps: something was missed. Resume from what we hold; the replay fills it.
      this.lost(0);
      return;
    }
    if (m.sender !== 'user') this.dropOrphanStream(m);
    this.remember(m);
    this.persistSoon();
    this.emit((l) => l.message?.(m));
  }

  private remember(m: MessageFrame): void {
    if (!Number.isInteger(m.seq) || this.seqs.has(m.seq)) return;
    this.seqs.add(m.seq);
    this.cache.push(m);
    if (this.cache.length > this.opts.cacheSize) this.cache.splice(0, this.cache.length - this.opts.cacheSize);
    if (m.seq > this.lastSeq) this.lastSeq = m.seq;
  }

  private confirm(id: string): void {
    const before = this.queue.length;
    this.queue = this.queue.filter((m) => m.client_msg_id !== id);
    if (this.queue.length !== before) {
      this.persistSoon();
      this.emit((l) => l.outbox?.(this.queue));
    }
  }

  private endStream(id: string): void {
    if (this.streams.delete(id)) this.emit((l) => l.streamGone?.(id));
  }

  /** A lagging socket gets a stream's result as a plain message without stream_end. */
  private dropOrphanStream(m: MessageFrame): void {
    for (const [id, sender] of this.streams) if (sender === m.sender) { this.endStream(id); return; }
  }

  private dropStreams(): void { for (const id of [...this.streams.keys()]) this.endStream(id); }

  private onError(code: string, message: string, clientMsgId: string | null, retryAfter: number | null): void {
    if (!this.welcomed && (code === 'invalid_resume_token' || code === 'conversation_not_found')) {
      this.forget();
      this.hello(); // a new conversation on the same socket
      return;
    }
    if (code === 'bot_not_found' || code === 'origin_not_allowed') {
      this.stop();
      this.setStatus('unavailable');
      this.emit((l) => l.error?.(code, message));
      return;
    }
    this.emit((l) => l.error?.(code, message));
    if (code === 'conversation_deleted') { this.forget(); this.lost(1000); return; }
    if (code === 'internal' && this.welcomed && !clientMsgId) { this.lost(2000); return; }
    // Too many hellos from this address: come back when the server says (never sooner than a second).
    if (!this.welcomed && code === 'rate_limited') { this.lost(Math.max(1000, retryAfter ?? 2000)); return; }
    if (code === 'shutting_down' || (!this.welcomed && ['bot_unavailable', 'tenant_at_capacity', 'internal', 'hello_timeout'].includes(code))) {
      this.lost(code === 'bot_unavailable' ? 30_000 : 2000);
      return;
    }
    const item = clientMsgId ? this.queue.find((m) => m.client_msg_id === clientMsgId) : undefined;
    const never = ['invalid_text', 'invalid_client_msg_id', 'invalid_form', 'invalid_postback'];
    if (item && never.includes(code)) this.confirm(item.client_msg_id); // never succeeds
    else if (code === 'rate_limited') this.retryLater(retryAfter ?? 1000);
    else if (item && ['internal', 'tenant_at_capacity', 'conversation_busy'].includes(code)) this.retryLater(3000);
  }

  private retryLater(ms: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => { this.retryTimer = null; this.flushOutbox(); }, Math.max(250, ms));
  }

  /** Forgets the stored conversation (not the outbox: those messages go to the next one). */
  private forget(): void {
    this.conv = null;
    this.seqs.clear();
    this.cache = [];
    this.lastSeq = 0;
    this.readSent = 0;
    this.readSeqLocal = 0;
    this.dropStreams();
    this.persist();
    this.emit((l) => l.reset?.());
  }

  // ---- storage --------------------------------------------------------------------------------
  private load(): Saved {
    try {
      const raw = this.opts.storage?.getItem(this.key);
      const v: unknown = raw ? JSON.parse(raw) : null;
      return v && typeof v === 'object' ? (v as Saved) : {};
    } catch { return {}; }
  }

  persist(): void {
    this.clear('saveTimer');
    // The server stores a new conversation only once the visitor writes in it (a hello stores
    // nothing): one that holds only the greeting is not kept, so a reload opens a fresh one at
    // once instead of resuming one the server never stored (a refused resume, then a hello).
    const written = this.lastSeq > 1 || this.cache.some((m) => m.sender === 'user');
    const state: Saved = this.conv && written
      ? { ...this.conv, last_seq: this.lastSeq, messages: this.cache, outbox: this.queue, read_seq: this.readSeq() }
      : { outbox: this.queue };
    try { this.opts.storage?.setItem(this.key, JSON.stringify(state)); } catch { /* full or disabled */ }
  }

  private persistSoon(): void {
    if (!this.saveTimer) this.saveTimer = setTimeout(() => this.persist(), 250);
  }

  // ---- plumbing -------------------------------------------------------------------------------
  private setStatus(s: Status, retryInMs?: number): void {
    this.status = s;
    this.emit((l) => l.status?.(s, retryInMs));
  }

  private emit(f: (l: Listener) => void): void {
    for (const l of this.listeners) {
      try { f(l); } catch (e) { console.warn('parla widget listener failed', e); }
    }
  }

  private clear(name: 'reconnectTimer' | 'retryTimer' | 'saveTimer' | 'pingTimer'): void {
    const t = this[name];
    if (t !== null) { clearTimeout(t); clearInterval(t); }
    this[name] = null;
  }

  private clearTimers(): void {
    this.clear('reconnectTimer'); this.clear('retryTimer'); this.clear('saveTimer'); this.clear('pingTimer');
  }
}

function safeStorage(): Storage | null {
  try { return typeof localStorage !== 'undefined' ? localStorage : null; } catch { return null; }
}
