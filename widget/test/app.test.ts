// @vitest-environment happy-dom
// The panel's rendering of frames the server may send, including the rich message types
// (which today's server does not produce yet: see docs/protocol.md, "Rich messages").
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ChatClient } from '../src/client';
import { mount } from '../src/app';
import { FakeSocket, MemoryStorage, msg, welcome } from './fakes';

let socket: FakeSocket;
let unread: number[];
let closes: number;

function setup(settings: any = null, lang: string | null = null) {
  document.body.innerHTML = '';
  const host = document.createElement('div');
  document.body.append(host);
  const shadow = host.attachShadow({ mode: 'open' });
  const root = document.createElement('div');
  shadow.append(root);
  const client = new ChatClient({ url: 'ws://x', botId: 'demo', storage: new MemoryStorage(), socket: (u) => (socket = new FakeSocket(u)) });
  unread = [];
  closes = 0;
  const app = mount({ shadow, root, base: 'https://parla.example', botId: 'demo', settings, lang, client,
    onUnread: (n) => unread.push(n), onClose: () => { closes++; } });
  socket.open();
  socket.push(welcome());
  const $ = (sel: string) => shadow.querySelector(sel) as HTMLElement;
  return { app, client, shadow, $ };
}

beforeEach(() => { vi.useRealTimers(); });

describe('the panel', () => {
  it('renders text as text, never as HTML', () => {
    const { $ } = setup();
    socket.push(msg(1, 'bot', '<img src=x onerror=alert(1)>'));
    expect($('#messages [data-seq="1"] .text').textContent).toBe('<img src=x onerror=alert(1)>');
    expect($('#messages img')).toBeNull();
  });

  it('counts unread replies while closed and clears them on open; sends read only while open', () => {
    const { app } = setup();
    socket.push(msg(1, 'bot', 'hi'), msg(2, 'bot', 'there'));
    expect(unread).toEqual([1, 2]);
    expect(socket.ofType('read')).toEqual([]);
    app.open();
    expect(unread.at(-1)).toBe(0);
    expect(socket.ofType('read')).toEqual([{ type: 'read', seq: 2 }]);
  });

  it('shows the handoff banner and the typing indicator', () => {
    const { $ } = setup();
    socket.push({ type: 'typing', sender: 'bot', on: true });
    expect($('#typing').textContent).toContain('is typing');
    socket.push({ type: 'handoff', to: 'human', agent: 'Ann' });
    expect($('#handoff').hidden).toBe(false);
    expect($('#handoff').textContent).toBe('Ann joined the conversation.');
    socket.push({ type: 'handoff', to: 'bot' });
    expect($('#handoff').textContent).toContain('again');
  });

  it('marks the visitor message the agent has read', () => {
    const { $ } = setup();
    socket.push(msg(1, 'user', 'a'), msg(2, 'user', 'b'), { type: 'read', sender: 'human', seq: 1 });
    expect($('#messages [data-seq="1"] .seen')).not.toBeNull();
    expect($('#messages [data-seq="2"] .seen')).toBeNull();
  });

  it('speaks Italian when asked', () => {
    const { $ } = setup(null, 'it');
    expect(($('#input') as HTMLTextAreaElement).placeholder).toBe('Scrivi un messaggio…');
    expect($('#send').textContent).toBe('Invia');
  });

  it('Escape asks to close', () => {
    const { app, $ } = setup();
    app.open();
    $('#input').dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
    expect(closes).toBe(1);
  });
});

describe('rich messages', () => {
  it('IMAGE and FILE, with https URLs only', () => {
    const { $ } = setup();
    socket.push(msg(1, 'bot', 'a photo', { kind: 'image', content: { type: 'image', url: 'https://cdn.example/p.png', alt: 'A photo' } }),
      msg(2, 'bot', 'the manual', { kind: 'file', content: { type: 'file', url: 'https://cdn.example/m.pdf', name: 'manual.pdf', size_bytes: 20480 } }),
      msg(3, 'bot', 'fallback text', { kind: 'image', content: { type: 'image', url: 'javascript:alert(1)' } }));
    const img = $('#messages [data-seq="1"] img') as HTMLImageElement;
    expect(img.getAttribute('src')).toBe('https://cdn.example/p.png');
    expect(img.getAttribute('alt')).toBe('A photo');
    const a = $('#messages [data-seq="2"] a') as HTMLAnchorElement;
    expect(a.getAttribute('href')).toBe('https://cdn.example/m.pdf');
    expect(a.textContent).toContain('manual.pdf');
    expect($('#messages [data-seq="3"] img')).toBeNull();
    expect($('#messages [data-seq="3"] .text').textContent).toBe('fallback text');
  });

  it('CARD and CAROUSEL buttons send a postback with the label as text', () => {
    const { client, $ } = setup();
    const card = (title: string) => ({ title, subtitle: 'sub', buttons: [{ label: `Buy ${title}`, payload: `BUY_${title}` }, { label: 'Site', url: 'https://shop.example' }] });
    socket.push(msg(1, 'bot', 'one card', { kind: 'card', content: { type: 'card', ...card('A') } }),
      msg(2, 'bot', 'two cards', { kind: 'carousel', content: { type: 'carousel', cards: [card('B'), card('C')] } }));
    expect($('#messages [data-seq="2"]').querySelectorAll('[role="listitem"]').length).toBe(2);
    ($('#messages [data-seq="2"]').querySelectorAll('button.btn')[1] as HTMLButtonElement).click();
    expect(client.outbox.map((m) => [m.text, m.postback])).toEqual([['Buy C', 'BUY_C']]);
    expect(socket.ofType('message')[0]).toMatchObject({ text: 'Buy C', postback: 'BUY_C' });
    expect($('#messages [data-seq="1"] a.btn').getAttribute('href')).toBe('https://shop.example/');
  });

  it('a link button whose URL the page may not open is shown disabled, never sent', () => {
    const { client, $ } = setup();
    socket.push(msg(1, 'bot', 'a card', { kind: 'card', content: { type: 'card', title: 'T', buttons: [{ label: 'Compare', url: 'javascript:alert(1)' }] } }));
    const btn = $('#messages [data-seq="1"] button.btn') as HTMLButtonElement;
    expect(btn.disabled).toBe(true);
    btn.click();
    expect(client.outbox).toEqual([]);
    expect($('#messages [data-seq="1"] a.btn')).toBeNull();
  });

  it('FORM fields are collected and sent with the message', () => {
    const { $ } = setup();
    socket.push(msg(1, 'bot', 'Leave your details', { kind: 'form', content: { type: 'form', form_id: 'lead', fields: [
      { name: 'name', label: 'Name', input: 'text', required: true }, { name: 'email', label: 'Email', input: 'email' }] } }));
    const form = $('#messages [data-seq="1"] form') as HTMLFormElement;
    (form.querySelector('[name="name"]') as HTMLInputElement).value = 'Ada';
    (form.querySelector('[name="email"]') as HTMLInputElement).value = 'ada@example.com';
    form.dispatchEvent(new Event('submit', { cancelable: true }));
    expect(socket.ofType('message')[0]).toMatchObject({ text: 'Name: Ada\nEmail: ada@example.com',
      form: { form_id: 'lead', values: { name: 'Ada', email: 'ada@example.com' } } });
  });

  it('a FORM the server refuses (invalid_form) opens again and leaves the outbox', () => {
    const { client, $ } = setup();
    socket.push(msg(1, 'bot', 'Leave your details', { kind: 'form', content: { type: 'form', form_id: 'lead', submit_label: 'Send',
      fields: [{ name: 'email', label: 'Email', input: 'email', required: true }] } }));
    const form = $('#messages [data-seq="1"] form') as HTMLFormElement;
    (form.querySelector('[name="email"]') as HTMLInputElement).value = 'ada@example.com';
    form.dispatchEvent(new Event('submit', { cancelable: true }));
    const sent = socket.ofType('message')[0] as { client_msg_id: string };
    expect((form.querySelector('button') as HTMLButtonElement).disabled).toBe(true);
    socket.push({ type: 'error', code: 'invalid_form', message: 'invalid form: form.values: email: required', client_msg_id: sent.client_msg_id });
    expect((form.querySelector('button') as HTMLButtonElement).disabled).toBe(false);
    expect(form.querySelector('button')?.textContent).toBe('Send');
    expect(client.outbox.length).toBe(0);
  });
});
