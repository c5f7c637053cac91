// The conversation's socket, opened by the loader while the app is still downloading: the
// server opens or resumes the conversation (a durable write) in parallel with the download, and
// the app adopts the socket with whatever frames arrived meanwhile. Saves the app's download
// and start from the critical path to a usable chat.
import type { ClientFrame } from './protocol.gen';

export interface EarlySocket {
  ws: WebSocket;
  /** Text frames received before the app took the socket over, in order. */
  frames: string[];
  closed: boolean;
  /** The loader sent `hello` (on open); the app must not send a second one. */
  helloSent: boolean;
}

export const storageKey = (botId: string) => `parla.widget.v1.${botId}`;
export const socketUrl = (base: string) => `${base.replace(/^http/, 'ws')}/v1/widget/ws`;

/** The hello the client would send: resume what storage holds, after the last seq shown. */
export function helloFromStorage(botId: string): ClientFrame {
  const f: ClientFrame = { type: 'hello', bot_id: botId };
  try {
    const s = JSON.parse(localStorage.getItem(storageKey(botId)) || '{}') as
      { conversation_id?: string; resume_token?: string; messages?: { seq?: unknown }[] };
    if (s.conversation_id && s.resume_token) {
      let last = 0;
      for (const m of s.messages ?? []) if (typeof m?.seq === 'number' && m.seq > last) last = m.seq;
      Object.assign(f, { conversation_id: s.conversation_id, resume_token: s.resume_token, last_seq: last });
    }
  } catch { /* storage disabled: a new conversation */ }
  return f;
}

export function openEarly(base: string, botId: string): EarlySocket | null {
  let ws: WebSocket;
  try { ws = new WebSocket(socketUrl(base)); } catch { return null; }
  const early: EarlySocket = { ws, frames: [], closed: false, helloSent: false };
  ws.onopen = () => { ws.send(JSON.stringify(helloFromStorage(botId))); early.helloSent = true; };
  ws.onmessage = (ev) => { if (typeof ev.data === 'string') early.frames.push(ev.data); };
  ws.onclose = () => { early.closed = true; };
  return early;
}
