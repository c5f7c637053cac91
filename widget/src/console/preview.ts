// The widget itself, inside the console: its own panel (`../app.ts`) and protocol client
// (`../client.ts`) in a shadow root, fed by a scripted socket instead of the server, so an
// intent's answer or a bot's look is shown exactly as visitors will see it. A chunk of its
// own, loaded with the first preview.
import { mount } from '../app';
import { ChatClient, type SocketLike } from '../client';
import type { MessageFrame } from '../protocol.gen';
import { adoptCss, type PublicSettings } from '../settings';

/** The panel sits in the page, not pinned to the window's corner. */
const IN_PAGE = '.panel{position:relative!important;inset:auto!important;width:100%!important;height:100%!important;max-height:none!important;box-shadow:none!important;border:1px solid #c9d0da;z-index:auto!important}';

/** Plays the server: welcomes the client, then sends `frames`; a postback is echoed back. */
class ScriptedSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  private seq = 0;
  constructor(private readonly settings: PublicSettings, private readonly frames: Omit<MessageFrame, 'seq' | 'id' | 'created_at'>[]) {
    setTimeout(() => { this.readyState = 1; this.onopen?.({}); }, 0);
  }
  send(data: string): void {
    const f = JSON.parse(data) as { type: string; client_msg_id?: string; text?: string };
    if (f.type === 'hello') {
      const { id, name, language, appearance } = this.settings;
      this.push({ type: 'welcome', conversation_id: 'preview', resume_token: 'preview', last_seq: 0, protocol: 1, bot: { id, name, language, appearance } });
      for (const frame of this.frames) this.message(frame);
    } else if (f.type === 'message') {
      this.message({ sender: 'user', text: f.text ?? '', client_msg_id: f.client_msg_id });
    }
  }
  close(): void { this.readyState = 3; }
  private message(frame: Omit<MessageFrame, 'seq' | 'id' | 'created_at'>): void {
    this.seq += 1;
    this.push({ type: 'message', seq: this.seq, id: `preview-${this.seq}`, created_at: Date.now(), ...frame });
  }
  private push(frame: object): void { this.onmessage?.({ data: JSON.stringify(frame) }); }
}

class Memory {
  private data = new Map<string, string>();
  getItem(k: string) { return this.data.get(k) ?? null; }
  setItem(k: string, v: string) { this.data.set(k, v); }
  removeItem(k: string) { this.data.delete(k); }
}

export type PreviewFrame = Omit<MessageFrame, 'seq' | 'id' | 'created_at'>;

/**
 * Shows the widget's panel in `host` for a bot with `settings`, the conversation `frames`.
 * Returns what stops it. Focus stays where it was (the editor being typed in).
 */
export function showPreview(host: HTMLElement, settings: PublicSettings, frames: PreviewFrame[]): () => void {
  const holder = document.createElement('div');
  holder.className = 'preview-host';
  holder.dataset.parlaPreview = '';
  host.replaceChildren(holder);
  const shadow = holder.attachShadow({ mode: 'open' });
  const root = document.createElement('div');
  root.style.height = '100%';
  shadow.append(root);
  const client = new ChatClient({ url: 'ws://preview.invalid/', botId: settings.id, storage: new Memory(), socket: () => new ScriptedSocket(settings, frames) });
  const focused = document.activeElement as HTMLElement | null;
  const app = mount({ shadow, root, base: location.origin, botId: settings.id, settings, lang: settings.language, client, onUnread() {}, onClose() {} });
  adoptCss(shadow, IN_PAGE);
  app.open();
  // A preview is redrawn on each edit: no opening animation each time.
  shadow.querySelector('.panel')?.classList.remove('entering');
  // Opening focuses the panel's input: give focus back to what had it (the editor).
  if (focused && focused !== document.body) focused.focus();
  else (shadow.activeElement as HTMLElement | null)?.blur();
  return () => { app.destroy(); holder.remove(); };
}

export interface LiveChat {
  conversation_id: string;
  resume_token: string;
}

/**
 * The real widget in `host`, connected to Parla's socket and resuming `chat` (a preview
 * conversation the console opened, so a draft bot answers and any origin may). `onMessage`
 * hears every stored message. Returns what stops it.
 */
export function showLive(host: HTMLElement, settings: PublicSettings, chat: LiveChat, onMessage: (m: MessageFrame) => void): () => void {
  const holder = document.createElement('div');
  holder.className = 'preview-host';
  holder.dataset.parlaPreview = 'live';
  host.replaceChildren(holder);
  const shadow = holder.attachShadow({ mode: 'open' });
  const root = document.createElement('div');
  root.style.height = '100%';
  shadow.append(root);
  const storage = new Memory();
  storage.setItem(`parla.widget.v1.${settings.id}`, JSON.stringify(chat));
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/widget/ws`;
  const client = new ChatClient({ url, botId: settings.id, storage });
  client.listen({ message: onMessage });
  const app = mount({ shadow, root, base: location.origin, botId: settings.id, settings, lang: settings.language, client, onUnread() {}, onClose() {} });
  adoptCss(shadow, IN_PAGE);
  app.open();
  shadow.querySelector('.panel')?.classList.remove('entering');
  return () => { app.destroy(); holder.remove(); };
}
