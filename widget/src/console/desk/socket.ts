// The agent socket (`/v1/agent/ws`, docs/protocol.md part 2): its frames, and one connection
// kept open — `hello` with the session's access token on every (re)connection, reconnection
// after a drop with exponential backoff (0.5 s doubling to 30 s, jittered ±50 %, reset by a
// `welcome`), and a refreshed token handed to the open socket (`auth`) so it never has to
// reconnect for one.
import type { AgentRef, Handling, InboxEntry, Message, Note, PresenceStatus, Resolution, Sender } from '../api.gen';

/** A frame from the server (the ones the desk reads; others are ignored). */
export type ServerFrame =
  | { type: 'welcome'; agent: AgentRef; role: string; expires_at: number; protocol: number }
  | { type: 'authenticated'; expires_at: number }
  | { type: 'inbox'; conversations: InboxEntry[] }
  | ({ type: 'inbox_update'; conversation_id: string; bot_id: string; last_message?: Message } & Handling)
  | { type: 'subscribed'; conversation_id: string; conversation: InboxEntry; notes: Note[] }
  | { type: 'message'; conversation_id: string; message: Message }
  | { type: 'stream_start'; conversation_id: string; stream_id: string; sender: Sender }
  | { type: 'token'; conversation_id: string; stream_id: string; delta: string }
  | { type: 'stream_end'; conversation_id: string; stream_id: string; message: Message }
  | { type: 'stream_cancelled'; conversation_id: string; stream_id: string }
  | { type: 'handoff'; conversation_id: string; to: Sender; agent?: AgentRef }
  | { type: 'handling'; conversation_id: string; handling: Handling }
  | { type: 'note'; conversation_id: string; note: Note }
  | { type: 'typing'; conversation_id: string; sender: Sender; on: boolean }
  | { type: 'read'; conversation_id: string; sender: Sender; seq: number }
  | { type: 'presence'; agent: AgentRef; status: PresenceStatus }
  | { type: 'ack'; ref?: string; conversation_id: string }
  | { type: 'error'; code: string; message?: string; ref?: string; conversation_id?: string }
  | { type: 'pong' };

/** A frame to the server. */
export type ClientFrame =
  | { type: 'hello'; token: string }
  | { type: 'auth'; token: string }
  | { type: 'subscribe'; conversation_id: string; last_seq: number }
  | { type: 'unsubscribe'; conversation_id: string }
  | { type: 'claim'; conversation_id: string; ref: string }
  | { type: 'release'; conversation_id: string; ref: string }
  | { type: 'resolve'; conversation_id: string; resolution: Resolution; csat: boolean; ref: string }
  | { type: 'message'; conversation_id: string; client_msg_id: string; text: string; ref: string }
  | { type: 'note'; conversation_id: string; text: string; ref: string }
  | { type: 'read'; conversation_id: string; seq: number }
  | { type: 'typing'; conversation_id: string; on: boolean }
  | { type: 'presence'; status: 'online' | 'away' }
  | { type: 'ping' };

/** The codes that say the token given was not taken. */
export const TOKEN_ERRORS = ['token_expired', 'token_invalid', 'token_revoked'];

/** What the socket needs of a WebSocket (a fake one in the tests). */
export interface SocketLike {
  readyState: number;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: never) => void) | null;
  send(data: string): void;
  close(): void;
}

export interface AgentSocketOptions {
  url: string;
  /** The current access token. */
  token: () => string | null;
  onFrame: (frame: ServerFrame) => void;
  /** Connecting (the first time or again after a drop); `retrying` once a connection was lost. */
  onConnecting: (retrying: boolean) => void;
  open?: (url: string) => SocketLike;
  random?: () => number;
}

export class AgentSocket {
  private ws: SocketLike | null = null;
  private attempt = 0;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether this connection was welcomed (`auth` is for a signed-in socket only). */
  private welcomed = false;
  /** The last `hello` was refused for its token: a fresh one is sent as a new `hello`. */
  private helloRefused = false;

  constructor(private readonly opts: AgentSocketOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.opts.onConnecting(this.attempt > 0);
    const ws = (this.opts.open ?? ((url) => new WebSocket(url) as unknown as SocketLike))(this.opts.url);
    this.ws = ws;
    this.welcomed = false;
    this.helloRefused = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: this.opts.token() }));
    ws.onmessage = (ev) => {
      if (this.stopped || ws !== this.ws) return;
      let frame: ServerFrame;
      try { frame = JSON.parse(String(ev.data)) as ServerFrame; } catch { return; }
      if (!frame || typeof frame !== 'object') return;
      if (frame.type === 'welcome') { this.attempt = 0; this.welcomed = true; }
      if (frame.type === 'error' && !this.welcomed && TOKEN_ERRORS.includes(frame.code)) this.helloRefused = true;
      this.opts.onFrame(frame);
    };
    ws.onclose = () => {
      if (this.stopped || ws !== this.ws) return;
      this.ws = null;
      const delay = Math.min(30000, 500 * 2 ** this.attempt++) * (0.5 + (this.opts.random ?? Math.random)());
      this.opts.onConnecting(true);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Sends a frame if the socket is open (dropped otherwise, as a closed socket would). */
  send(frame: ClientFrame): void {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  /** A refreshed access token: `auth` on a signed-in socket, a new `hello` after a refused one. */
  reauth(token: string): void {
    if (!this.ws || this.ws.readyState !== 1) return;
    if (this.welcomed) this.ws.send(JSON.stringify({ type: 'auth', token }));
    else if (this.helloRefused) {
      this.helloRefused = false;
      this.ws.send(JSON.stringify({ type: 'hello', token }));
    }
  }

  /** Whether a reconnection is waiting for its timer. */
  get waiting(): boolean { return this.retryTimer !== undefined; }

  /**
   * Reconnects now instead of when the backoff says (the desk's "Reconnect now"). The backoff
   * starts again from its shortest wait: if an attempt is already under way and fails, the
   * next one comes within a second, not after the long wait the earlier failures had earned.
   */
  reconnectNow(): void {
    if (this.stopped) return;
    this.attempt = 0;
    if (this.retryTimer !== undefined) this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }
}
