// The widget proper, pulled by the loader on first open: the chat panel inside the loader's
// shadow root, driven by a ChatClient. Stable hooks for tests and for people reading the DOM:
// #panel, #status[data-state], #messages > .msg[data-seq][data-sender] .text, #live (pending and
// streaming bubbles), #handoff, #typing, #notice, #input, #send, #close.
import { ChatClient, type EarlySocketLike, type OutboxItem, type Status } from './client';
import { socketUrl, type EarlySocket } from './early';
import { fmt, pickLang, words, type Words } from './i18n';
import type { BotInfo, Card, FormField, MessageFrame, RichContent, Sender } from './protocol.gen';
import { accent, adoptCss, safeUrl, type PublicSettings } from './settings';
import { PANEL_CSS } from './styles';

export interface AppOptions {
  shadow: ShadowRoot;
  /** The loader's root element (the launcher lives there). */
  root: HTMLElement;
  /** Parla's origin. */
  base: string;
  botId: string;
  settings: PublicSettings | null;
  /** The embedder's data-lang, if any. */
  lang: string | null;
  onUnread(n: number): void;
  /** The visitor closed the panel from inside (close button, Escape). */
  onClose(): void;
  /** The loader's socket, opened while app.js downloaded. */
  early?: EarlySocket | null;
  /** For tests: a client with another socket factory. */
  client?: ChatClient;
}

export interface AppHandle {
  open(): void;
  close(): void;
  /** Stops the client, removes the panel and the page-wide listeners (the console's previews). */
  destroy(): void;
  client: ChatClient;
}

const MAX_CHARS = 4000;
const CLOSE_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7 2.9 18.3 9.2 12 2.9 5.7 4.3 4.3l6.3 6.3 6.3-6.3z"/></svg>';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function mount(o: AppOptions): AppHandle {
  const s = o.settings;
  let t: Words = words(pickLang(o.lang, s?.language, navigator.language));
  let botName = s?.appearance.title || s?.name || t.chat;
  let agentName: string | null = null;

  // ---- DOM ----
  const panel = el('section', { id: 'panel', class: 'panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'title' });
  panel.hidden = true;
  const head = el('header', { class: 'head' });
  const avatar = el('img', { class: 'avatar', alt: '' });
  avatar.hidden = true;
  const who = el('div', { class: 'who' });
  const title = el('h2', { id: 'title', class: 'title' }, botName);
  const status = el('p', { id: 'status', class: 'status', role: 'status', 'data-state': 'connecting' }, t.connecting);
  who.append(title, status);
  const closeBtn = el('button', { id: 'close', class: 'icon-btn', type: 'button', 'aria-label': t.close });
  closeBtn.innerHTML = CLOSE_ICON;
  head.append(avatar, who, closeBtn);
  const log = el('div', { id: 'log', class: 'log', role: 'region', tabindex: '0', 'aria-label': t.messages });
  const messages = el('div', { id: 'messages', class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': t.messages });
  const live = el('div', { id: 'live', class: 'live' });
  log.append(messages, live);
  const handoff = el('p', { id: 'handoff', class: 'banner', role: 'status' });
  handoff.hidden = true;
  const typing = el('p', { id: 'typing', class: 'line', 'aria-live': 'polite' });
  const notice = el('p', { id: 'notice', class: 'line notice', role: 'status' });
  const composer = el('form', { id: 'composer', class: 'composer', autocomplete: 'off' });
  const label = el('label', { for: 'input', class: 'sr-only' }, t.placeholder);
  const input = el('textarea', { id: 'input', rows: '1', maxlength: String(MAX_CHARS), placeholder: t.placeholder, 'aria-describedby': 'hint' });
  const hint = el('span', { id: 'hint', class: 'sr-only' }, t.hint);
  const send = el('button', { id: 'send', class: 'send', type: 'submit' }, t.send);
  composer.append(label, input, hint, send);
  panel.append(head, log, handoff, typing, notice, composer);
  adoptCss(o.shadow, PANEL_CSS);
  o.root.append(panel);

  const applyLook = (appearance: PublicSettings['appearance'] | undefined) => {
    if (!appearance) return;
    const { bg, fg } = accent(appearance.color);
    o.root.style.setProperty('--parla-accent', bg);
    o.root.style.setProperty('--parla-on-accent', fg);
    const src = safeUrl(appearance.avatar_url, o.base);
    if (src) { avatar.src = src; avatar.hidden = false; }
  };
  applyLook(s?.appearance);


  // ---- state ----
  const client = o.client ?? new ChatClient({
    url: socketUrl(o.base),
    botId: o.botId,
    // A browser WebSocket is a SocketLike; TypeScript's DOM event types are just narrower.
    early: (o.early ?? null) as unknown as EarlySocketLike | null,
  });
  const seen = new Map<number, HTMLElement>();
  const pending = new Map<string, HTMLElement>();
  const streams = new Map<string, { el: HTMLElement; text: HTMLElement }>();
  let isOpen = false;
  let unread = 0;
  let mounted = false; // messages from the stored transcript are not "unread"
  let theirRead = 0;

  const senderName = (x: Sender) => (x === 'user' ? t.you : x === 'human' ? agentName || t.agent : botName);
  function bubble(sender: Sender, text: string): HTMLElement {
    const b = el('div', { class: 'msg', 'data-sender': sender });
    // A person's messages carry their name; the bot's and the visitor's are told apart by side.
    b.append(sender === 'human'
      ? el('span', { class: 'from' }, senderName(sender))
      : el('span', { class: 'sr-only' }, `${senderName(sender)}: `), el('span', { class: 'text' }, text));
    return b;
  }
  // The bot's welcome message, shown before the socket is even open; the stored one replaces it.
  let greeting: HTMLElement | null = null;
  if (s?.welcome_message && client.lastSeq === 0) {
    greeting = bubble('bot', s.welcome_message);
    greeting.classList.add('greeting');
    greeting.setAttribute('aria-hidden', 'true');
    live.append(greeting);
  }
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  const keepScrolled = <T>(f: () => T): T => {
    const stick = atBottom();
    const r = f();
    if (stick) log.scrollTop = log.scrollHeight;
    return r;
  };

  function render(m: MessageFrame): HTMLElement {
    const b = bubble(m.sender, m.text);
    b.dataset.seq = String(m.seq);
    b.dataset.id = m.id;
    if (m.kind && m.kind !== 'text') b.dataset.kind = m.kind;
    if (m.created_at) b.title = new Date(m.created_at).toLocaleString();
    if (m.content) {
      const rich = richContent(m.content, m.text);
      if (rich) {
        // What the bot says stays above its cards or form; an image's or a file's text is only
        // their fallback.
        const said = ['card', 'carousel', 'form'].includes(m.content.type) && m.text.trim();
        if (said) rich.prepend(el('p', { class: 'said' }, m.text));
        b.querySelector('.text')?.replaceWith(rich);
        b.classList.add('rich');
        if (m.content.type === 'carousel') b.classList.add('wide');
      }
    }
    return b;
  }

  function richContent(c: RichContent, fallback: string): HTMLElement | null {
    const wrap = el('div', { class: 'text' });
    switch (c.type) {
      case 'image': {
        const src = safeUrl(c.url, o.base);
        if (!src) return null;
        wrap.append(el('img', { class: 'image', src, alt: c.alt ?? fallback, loading: 'lazy' }));
        return wrap;
      }
      case 'file': {
        const href = safeUrl(c.url, o.base);
        if (!href) return null;
        const a = el('a', { class: 'file', href, target: '_blank', rel: 'noopener noreferrer', download: c.name, 'aria-label': fmt(t.download, { name: c.name }) });
        a.append(el('span', {}, '📄'), el('span', {}, c.name));
        if (c.size_bytes) a.append(el('small', {}, humanSize(c.size_bytes)));
        wrap.append(a);
        return wrap;
      }
      case 'card': wrap.append(card(c)); return wrap;
      case 'carousel': {
        const list = el('div', { class: 'cards', role: 'list' });
        for (const k of c.cards) { const item = card(k); item.setAttribute('role', 'listitem'); list.append(item); }
        wrap.append(list);
        return wrap;
      }
      case 'form': wrap.append(form(c.form_id, c.fields, c.submit_label ?? t.submit)); return wrap;
      default: return null;
    }
  }

  function card(c: Card): HTMLElement {
    const box = el('div', { class: 'card' });
    const img = safeUrl(c.image_url, o.base);
    if (img) box.append(el('img', { src: img, alt: '', loading: 'lazy' }));
    const body = el('div', { class: 'body' });
    body.append(el('h3', {}, c.title));
    if (c.subtitle) body.append(el('p', {}, c.subtitle));
    for (const b of c.buttons) {
      const href = safeUrl(b.url, o.base);
      if (href) {
        body.append(el('a', { class: 'btn', href, target: '_blank', rel: 'noopener noreferrer' }, b.label));
      } else if (b.url) {
        // A link this page may not open (http on an https page): shown, never sent as a postback.
        body.append(el('button', { class: 'btn', type: 'button', disabled: '' }, b.label));
      } else {
        const btn = el('button', { class: 'btn', type: 'button' }, b.label);
        btn.addEventListener('click', () => { client.send(b.label, { postback: b.payload ?? b.label }); input.focus(); });
        body.append(btn);
      }
    }
    box.append(body);
    return box;
  }

  let reopenForm: (() => void) | null = null;
  function form(formId: string, fields: FormField[], submitLabel: string): HTMLElement {
    const f = el('form', { class: 'form' });
    const prefix = `f-${formId}-`;
    for (const field of fields) {
      const id = prefix + field.name;
      f.append(el('label', { for: id }, field.label + (field.required ? ` (${t.required})` : '')));
      const type = field.input === 'email' ? 'email' : field.input === 'phone' ? 'tel' : field.input === 'number' ? 'number' : 'text';
      const inp = field.input === 'textarea' ? el('textarea', { id, name: field.name, rows: '3' }) : el('input', { id, name: field.name, type });
      if (field.required) inp.required = true;
      f.append(inp);
    }
    const submit = el('button', { class: 'btn', type: 'submit' }, submitLabel);
    f.append(submit);
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!f.reportValidity()) return;
      const values: Record<string, string> = {};
      for (const field of fields) {
        const v = (f.elements.namedItem(field.name) as HTMLInputElement | null)?.value.trim() ?? '';
        if (v) values[field.name] = v;
      }
      const summary = fields.filter((x) => values[x.name]).map((x) => `${x.label}: ${values[x.name]}`).join('\n');
      client.send(summary || submitLabel, { form: { form_id: formId, values } });
      for (const c of Array.from(f.elements)) (c as HTMLInputElement).disabled = true;
      submit.textContent = t.submitted;
      // Refused by the server (`invalid_form`): the visitor may correct it and send it again.
      reopenForm = () => {
        for (const c of Array.from(f.elements)) (c as HTMLInputElement).disabled = false;
        submit.textContent = submitLabel;
      };
    });
    return f;
  }

  function addMessage(m: MessageFrame) {
    if (seen.has(m.seq)) return;
    if (greeting) { greeting.remove(); greeting = null; }
    const b = render(m);
    let ref = messages.lastElementChild as HTMLElement | null;
    while (ref && Number(ref.dataset.seq) > m.seq) ref = ref.previousElementSibling as HTMLElement | null;
    keepScrolled(() => messages.insertBefore(b, ref ? ref.nextSibling : messages.firstChild));
    seen.set(m.seq, b);
    // Unread: not the visitor's own, arrived while the panel is closed (or the tab hidden), and
    // not seen in another tab of this visitor either.
    if (m.sender !== 'user' && mounted && !(isOpen && document.visibilityState === 'visible') && m.seq > client.readSeq()) o.onUnread(++unread);
    if (m.sender === 'user') showRead();
    markRead();
  }

  function markRead() {
    if (isOpen && document.visibilityState === 'visible') client.markRead();
  }

  /** "Seen" under the newest of the visitor's messages the other side has read. */
  function showRead() {
    for (const old of Array.from(messages.querySelectorAll('.meta.seen'))) old.remove();
    let best: HTMLElement | null = null;
    for (const [seq, b] of seen) if (seq <= theirRead && b.dataset.sender === 'user' && (!best || seq > Number(best.dataset.seq))) best = b;
    if (best) best.append(el('span', { class: 'meta seen' }, t.seen));
  }

  function showOutbox(items: readonly OutboxItem[]) {
    const ids = new Set(items.map((i) => i.client_msg_id));
    for (const [id, b] of pending) if (!ids.has(id)) { b.remove(); pending.delete(id); }
    for (const item of items) {
      if (pending.has(item.client_msg_id)) continue;
      const b = bubble('user', item.text);
      b.classList.add('pending');
      b.dataset.clientMsgId = item.client_msg_id;
      b.append(el('span', { class: 'meta' }, t.sending));
      keepScrolled(() => live.append(b));
      pending.set(item.client_msg_id, b);
    }
  }

  let noticeTimer: ReturnType<typeof setTimeout> | undefined;
  function say(text: string) {
    notice.textContent = text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.textContent = ''; }, 8000);
  }

  let typingTimer: ReturnType<typeof setTimeout> | undefined;
  function showTyping(sender: Sender | null, on: boolean) {
    clearTimeout(typingTimer);
    typing.textContent = '';
    if (!on || !sender) return;
    const dots = el('span', { class: 'dots', 'aria-hidden': 'true' });
    dots.append(el('i'), el('i'), el('i'));
    typing.append(dots, fmt(t.typing, { name: senderName(sender) }));
    typingTimer = setTimeout(() => { typing.textContent = ''; }, 15_000);
  }

  function setStatus(st: Status, retryIn?: number) {
    status.dataset.state = st;
    status.textContent = st === 'connected' ? t.connected
      : st === 'offline' ? fmt(t.offline, { s: Math.ceil((retryIn ?? 0) / 1000) })
      : st === 'unavailable' ? t.unavailable : t.connecting;
    const off = st === 'unavailable';
    input.disabled = off;
    send.disabled = off;
  }

  function onWelcome(bot: BotInfo) {
    t = words(pickLang(o.lang, bot.language, s?.language, navigator.language));
    botName = bot.appearance.title || bot.name || botName;
    title.textContent = botName;
    applyLook(bot.appearance);
  }

  client.listen({
    status: setStatus,
    welcome: onWelcome,
    message: addMessage,
    outbox: showOutbox,
    reset: () => { messages.textContent = ''; seen.clear(); theirRead = 0; },
    streamStart: (id, sender) => {
      showTyping(null, false);
      const b = bubble(sender, '');
      b.classList.add('streaming');
      b.dataset.streamId = id;
      b.setAttribute('aria-busy', 'true');
      keepScrolled(() => live.prepend(b));
      streams.set(id, { el: b, text: b.querySelector('.text') as HTMLElement });
    },
    token: (id, delta) => {
      const st = streams.get(id);
      if (st) keepScrolled(() => st.text.append(delta));
    },
    streamGone: (id) => { streams.get(id)?.el.remove(); streams.delete(id); },
    typing: (sender, on) => { if (sender !== 'user') showTyping(sender, on); },
    read: (sender, seq) => { if (sender !== 'user') { theirRead = Math.max(theirRead, seq); showRead(); } },
    handoff: (to, agent) => {
      if (to === 'human') {
        agentName = agent;
        handoff.textContent = fmt(t.joined, { name: agent || t.teamMember });
      } else {
        agentName = null;
        handoff.textContent = fmt(t.back, { name: botName });
      }
      handoff.hidden = false;
    },
    error: (code, message) => {
      if (code === 'invalid_form') { reopenForm?.(); reopenForm = null; }
      const key = `err_${code}` as keyof Words;
      say(key in t ? t[key] : message || code);
      if (code === 'bot_not_found' || code === 'origin_not_allowed') input.placeholder = t[key as keyof Words] ?? '';
    },
  });
  mounted = true;
  client.start();

  // ---- input ----
  let typingOn = false;
  let typingOff: ReturnType<typeof setTimeout> | undefined;
  const stopTyping = () => {
    clearTimeout(typingOff);
    if (typingOn) client.typing(false);
    typingOn = false;
  };
  input.addEventListener('input', () => {
    input.style.height = 'auto';
    input.style.height = `${Math.min(120, input.scrollHeight + 2)}px`;
    if (!input.value.trim()) { stopTyping(); return; }
    if (!typingOn && client.typing(true)) typingOn = true;
    clearTimeout(typingOff);
    typingOff = setTimeout(stopTyping, 3000);
  });
  input.addEventListener('blur', stopTyping);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if ([...text].length > MAX_CHARS) { say(fmt(t.tooLong, { n: MAX_CHARS })); return; }
    client.send(text);
    input.value = '';
    input.style.height = '';
    stopTyping();
    log.scrollTop = log.scrollHeight;
    input.focus();
  });
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); o.onClose(); }
  });
  closeBtn.addEventListener('click', () => o.onClose());
  const onVisible = () => {
    if (document.visibilityState === 'visible') { client.wake(); if (isOpen) { unread = 0; o.onUnread(0); markRead(); } }
  };
  const onOnline = () => client.wake();
  const onPageHide = () => client.persist();
  document.addEventListener('visibilitychange', onVisible);
  window.addEventListener('online', onOnline);
  window.addEventListener('pagehide', onPageHide);

  const reduced = () => typeof matchMedia === 'function' && matchMedia('(prefers-reduced-motion: reduce)').matches;
  return {
    client,
    open() {
      if (isOpen) return;
      isOpen = true;
      panel.hidden = false;
      if (!reduced()) {
        panel.classList.add('entering');
        requestAnimationFrame(() => requestAnimationFrame(() => panel.classList.remove('entering')));
      }
      unread = 0;
      o.onUnread(0);
      log.scrollTop = log.scrollHeight;
      input.focus();
      markRead();
    },
    close() {
      if (!isOpen) return;
      isOpen = false;
      panel.hidden = true;
      stopTyping();
    },
    destroy() {
      document.removeEventListener('visibilitychange', onVisible);
      window.removeEventListener('online', onOnline);
      window.removeEventListener('pagehide', onPageHide);
      client.stop();
      panel.remove();
    },
  };
}

function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
