// A scripted WebSocket and storage for the client's tests: the test plays the server.
import type { SocketLike } from '../src/client';

export class FakeSocket implements SocketLike {
  readyState = 0;
  sent: any[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(public url: string) {}
  send(data: string) { if (this.readyState !== 1) throw new Error('send on a closed socket'); this.sent.push(JSON.parse(data)); }
  close() { this.readyState = 3; this.closed = true; }
  /** The server accepts the connection. */
  open() { this.readyState = 1; this.onopen?.({}); }
  /** The server sends frames. */
  push(...frames: object[]) { for (const f of frames) this.onmessage?.({ data: JSON.stringify(f) }); }
  /** The network drops the connection. */
  drop() { this.readyState = 3; this.onclose?.({}); }
  ofType(type: string) { return this.sent.filter((f) => f.type === type); }
}

export class MemoryStorage {
  data = new Map<string, string>();
  getItem(k: string) { return this.data.get(k) ?? null; }
  setItem(k: string, v: string) { this.data.set(k, v); }
  removeItem(k: string) { this.data.delete(k); }
}

export const msg = (seq: number, sender: 'user' | 'bot' | 'human', text: string, extra: object = {}) =>
  ({ type: 'message', seq, id: `m${seq}`, sender, text, created_at: 1_700_000_000_000 + seq, ...extra });

export const welcome = (conversation_id = 'c1', last_seq = 0) =>
  ({ type: 'welcome', conversation_id, resume_token: `tok-${conversation_id}`, last_seq, protocol: 1,
     bot: { id: 'demo', name: 'Demo', language: 'en', appearance: {} } });
