// The embeddable widget end to end: a third-party page embeds it with one script tag (another
// origin than Parla's), in Debian's Chromium, against the real `parla serve`. Network drops are
// real (a TCP proxy cuts the connections); nothing in the widget is stubbed. Run with:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Screenshots land in /tmp/parla-widget-*.png, for a person to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  GUARD, apiCall, cleanup, embed, message, openBrowser, recordPartials, shownSeqs, startHost, startParla, startProxy,
  waitConnected, watch,
} from './harness.mjs';

let parla, proxy, host;
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const HOSTILE_CSS = `
  html { font-size: 40px !important; }
  * { font-family: "Comic Sans MS", cursive !important; color: #f0f !important; font-size: 30px !important;
      line-height: 3 !important; letter-spacing: 4px !important; box-sizing: content-box !important; }
  div, section, header, button, textarea, p, span, form, h2, img { background: #0f0 !important; border: 5px dashed red !important;
      padding: 20px !important; margin: 10px !important; width: 50px !important; border-radius: 0 !important;
      display: block !important; position: static !important; opacity: .5 !important; }
  [data-parla-widget], div[id^="parla"] { transform: rotate(10deg) !important; filter: blur(2px) !important; display: none !important; }
  .launcher, .panel, .msg, #panel, #input, .send { display: none !important; visibility: hidden !important; }
`;
const page = (body, head = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>Shop</title>${head}</head>
<body><h1>Acme shop</h1><p>Products, prices, a chat in the corner.</p>${body}</body></html>`;
/** Elements of the page itself that share names with the widget's: widget CSS must not reach them. */
const LOOKALIKES = '<div class="panel msg" id="panel-page">page panel</div><button class="send btn">page button</button>';

before(async () => {
  parla = await startParla();
  proxy = await startProxy(parla);
  host = await startHost({
    '/shop.html': page(embed(proxy.url)),
    '/plain.html': page(LOOKALIKES + embed(parla)),
    '/hostile.html': page(LOOKALIKES + embed(parla), `<style>${HOSTILE_CSS}</style>`),
    '/hostile-nowidget.html': page(LOOKALIKES, `<style>${HOSTILE_CSS}</style>`),
    '/it.html': page(embed(parla, 'demo', 'data-lang="it" data-open="true"')),
    // Another site framing Parla's own pages (clickjacking a signed-in agent's console).
    '/frames.html': page(`<iframe id="console" src="${parla}/console"></iframe><iframe id="demo" src="${parla}/"></iframe>`),
    // A strict Content-Security-Policy: no inline script or style, Parla allowed by name only.
    '/csp.html': { html: page(embed(parla)), headers: { 'content-security-policy':
      `default-src 'none'; script-src ${parla}; connect-src ${parla} ${parla.replace('http', 'ws')}; style-src 'self'; img-src data:` } },
  });
});
after(cleanup);

/** A JSON call to the admin API; fails the test on an error status. */
const api = (method, path, body, token) => apiCall(parla, method, path, body, token);

/** Drops Chromium's own console line for a socket the proxy cut on purpose. */
const real = (problems) => problems.filter((p) => !/WebSocket connection to .* failed/.test(p));

const conversationId = (p) => p.evaluate(() => JSON.parse(localStorage.getItem('parla.widget.v1.demo') || '{}').conversation_id);

test('a visitor opens the embedded widget, a cut mid-stream and an outage lose nothing, a reload continues', { timeout: 120_000 }, async (t) => {
  const { page: p, problems } = await openBrowser(t);
  await p.goto(`${host}/shop.html`);

  // The loader draws only the launcher; the panel comes on first open, by keyboard.
  await p.locator('#launcher').waitFor();
  assert.equal(await p.locator('#panel').count(), 0, 'nothing but the launcher before the first open');
  await p.focus('#launcher');
  await p.keyboard.press('Enter');
  await p.locator('#panel').waitFor({ state: 'visible' });
  assert.equal(await p.getAttribute('#launcher', 'aria-expanded'), 'true');
  await waitConnected(p);
  assert.equal(await p.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.id), 'input', 'focus moves to the message box');
  assert.equal((await message(p, 1)).sender, 'bot', 'the greeting');

  // 1. The connection is cut right after the first token of the reply reaches the browser.
  const cut = proxy.cutOn('"type":"token"');
  await p.keyboard.type('What is Parla?');
  await p.keyboard.press('Enter');
  await cut;
  assert.equal(proxy.state.cuts, 1);
  const reply = await message(p, 3); // after reconnect + resume
  await waitConnected(p);
  assert.equal(reply.sender, 'bot');
  assert.match(reply.text, /messaging engine/);
  assert.deepEqual(await shownSeqs(p), [1, 2, 3], 'no gap, no duplicate after the cut');
  assert.equal((await message(p, 2)).text, 'What is Parla?');
  assert.ok(proxy.state.connections >= 2, 'it reconnected');
  assert.equal(await p.locator('#live > *').count(), 0, 'no half-streamed bubble left behind');

  // 2. An outage: the network is down (connections hang), the visitor writes anyway.
  proxy.hold();
  proxy.cutNow();
  await p.locator('#status[data-state="offline"], #status[data-state="connecting"]').waitFor();
  await p.fill('#input', 'How does streaming work?');
  await p.press('#input', 'Enter');
  await p.locator('#live .msg.pending').waitFor();
  assert.match(await p.textContent('#live .msg.pending'), /Sending/);
  assert.deepEqual(await shownSeqs(p), [1, 2, 3], 'not stored yet');
  await recordPartials(p);
  proxy.release();
  assert.deepEqual(await message(p, 4), { sender: 'user', text: 'How does streaming work?' });
  const second = await message(p, 5);
  assert.match(second.text, /stream_start/);
  assert.deepEqual(await shownSeqs(p), [1, 2, 3, 4, 5], 'the outbox message went out once, in order');
  await p.locator('#live > *').first().waitFor({ state: 'detached' }).catch(() => {});
  assert.equal(await p.locator('#live > *').count(), 0);
  const partials = await p.evaluate(() => window.__partials);
  assert.ok(partials.some((x) => x.length < second.text.length && second.text.startsWith(x.trim())),
    `tokens were painted as they arrived, before the stored message (saw ${partials.length} states)`);

  // 3. Reload: same conversation, each message once; the panel opens on request.
  const before = await conversationId(p);
  assert.ok(before, 'the conversation is kept in localStorage');
  await p.reload();
  await p.locator('#launcher').click();
  await waitConnected(p);
  await message(p, 5);
  assert.equal(await conversationId(p), before, 'same conversation after the reload');
  assert.deepEqual(await shownSeqs(p), [1, 2, 3, 4, 5]);
  await p.fill('#input', 'What if I reload the page?');
  await p.click('#send');
  assert.equal((await message(p, 6)).sender, 'user');
  assert.equal((await message(p, 7)).sender, 'bot');
  assert.deepEqual(await shownSeqs(p), [1, 2, 3, 4, 5, 6, 7]);

  await p.screenshot({ path: '/tmp/parla-widget-chat.png' });
  // Escape closes the panel and gives focus back to the launcher.
  await p.press('#input', 'Escape');
  await p.locator('#panel').waitFor({ state: 'hidden' });
  assert.equal(await p.evaluate(() => document.activeElement?.shadowRoot?.activeElement?.id), 'launcher');
  assert.deepEqual(real(problems), [], 'no script errors in the page');
});

test('axe finds no accessibility violations in the open widget, with a conversation in it', { timeout: 60_000 }, async (t) => {
  const { page: p, problems } = await openBrowser(t);
  await p.goto(`${host}/plain.html`);
  await p.click('#launcher');
  await waitConnected(p);
  await p.fill('#input', 'What is Parla?');
  await p.press('#input', 'Enter');
  await message(p, 3);
  await p.addScriptTag({ path: AXE });
  // Only the widget is audited (the host page is the test's); axe descends into shadow roots.
  const result = await p.evaluate(() => window.axe.run({ include: [['[data-parla-widget]']] }, { resultTypes: ['violations'] }));
  const violations = result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(violations, [], 'no axe violations');
  assert.ok(result.passes.length > 10, `axe checked something (${result.passes.length} rules passed)`);
  assert.deepEqual(problems, []);
});

test('an agent takes over and writes while the widget is closed: unread badge, banner, the agent\'s name, read receipt, typing', { timeout: 90_000 }, async (t) => {
  const email = 'ann@unread.example.com', password = 'a long enough password';
  await api('POST', '/api/auth/register', { email, password, name: 'Ann Agent' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password });
  await api('PATCH', '/api/workspace', { agents: { assignment: 'manual' } }, token);
  const bot = await api('POST', '/api/bots', { name: 'Help bot', config: { fallback_message: 'I am only a bot.' } }, token);
  await api('POST', `/api/bots/${bot.id}/publish`, null, token);
  const site = await startHost({ '/': page(embed(parla, bot.id)) });

  // The visitor writes, then closes the chat; a second tab of theirs stays on the site too.
  const { context, page: a, problems } = await openBrowser(t);
  await a.goto(`${site}/`);
  await a.click('#launcher');
  await waitConnected(a);
  await a.fill('#input', 'Is anyone there?');
  await a.press('#input', 'Enter');
  await message(a, 2); // the bot's fallback answer
  await a.press('#input', 'Escape');
  await a.locator('#panel').waitFor({ state: 'hidden' });
  const b = await context.newPage();
  watch(b, problems);
  await b.goto(`${site}/`); // closed; this browser has a conversation, so it connects quietly
  await b.locator('#status[data-state="connected"]').waitFor({ state: 'attached' });
  assert.ok(await b.locator('#badge').isHidden(), 'what the visitor saw in the other tab is not unread');
  assert.ok(await a.locator('#badge').isHidden());

  // Ann claims the conversation and writes twice, through the REST API.
  const conversationId = await a.evaluate((bot) => JSON.parse(localStorage.getItem(`parla.widget.v1.${bot}`)).conversation_id, bot.id);
  await api('POST', `/api/conversations/${conversationId}/claim`, {}, token);
  await api('POST', `/api/conversations/${conversationId}/replies`, { client_msg_id: 'r1', text: 'Hi, Ann here.' }, token);
  await api('POST', `/api/conversations/${conversationId}/replies`, { client_msg_id: 'r2', text: 'How can I help?' }, token);
  for (const p of [a, b]) {
    await p.locator('#badge', { hasText: '2' }).waitFor();
    assert.match(await p.getAttribute('#launcher', 'aria-label'), /\(2 unread\)/, 'screen readers hear it too');
  }
  await a.screenshot({ path: '/tmp/parla-widget-unread.png' });

  // Opening shows them, with the banner and the agent's name; the badge goes in both tabs' next messages.
  await a.click('#launcher');
  await a.locator('#badge').waitFor({ state: 'hidden' });
  assert.equal(await a.textContent('#handoff'), 'Ann Agent joined the conversation.');
  assert.deepEqual(await message(a, 4), { sender: 'human', text: 'How can I help?' });
  assert.equal(await a.textContent('#messages > [data-seq="3"] .from'), 'Ann Agent');

  // The visitor answers; Ann reads it (agent socket `read`): the visitor sees "Seen".
  await a.fill('#input', 'My order is late.');
  await a.press('#input', 'Enter');
  await message(a, 5);
  assert.equal(await a.locator('#messages > [data-seq="5"] .seen').count(), 0);
  const agent = await context.newPage();
  await agent.goto(`${parla}/console`);
  await agent.evaluate(async ({ ws, token, conversationId }) => new Promise((resolve, reject) => {
    const s = new WebSocket(ws);
    s.onopen = () => s.send(JSON.stringify({ type: 'hello', token }));
    s.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === 'welcome') s.send(JSON.stringify({ type: 'subscribe', conversation_id: conversationId, last_seq: 0 }));
      if (f.type === 'subscribed') {
        s.send(JSON.stringify({ type: 'read', conversation_id: conversationId, seq: 5 }));
        s.send(JSON.stringify({ type: 'typing', conversation_id: conversationId, on: true }));
        resolve();
      }
      if (f.type === 'error') reject(new Error(e.data));
    };
  }), { ws: `${parla.replace('http', 'ws')}/v1/agent/ws`, token, conversationId });
  await a.locator('#messages > [data-seq="5"] .seen').waitFor();
  assert.equal(await a.textContent('#messages > [data-seq="5"] .seen'), 'Seen');
  await a.locator('#typing', { hasText: 'Ann Agent is typing…' }).waitFor();
  await a.screenshot({ path: '/tmp/parla-widget-agent.png' });
  assert.deepEqual(problems, []);
});

/** Computed styles of the widget's parts, inside its shadow root. */
const widgetLook = async (p) => {
  await p.mouse.move(450, 5); // off the launcher: no hover effect
  return p.evaluate(async () => {
  const root = document.querySelector('[data-parla-widget]').shadowRoot;
  await Promise.all(root.getAnimations({ subtree: true }).filter((a) => a.effect?.getComputedTiming().iterations !== Infinity).map((a) => a.finished.catch(() => {})));
  const props = ['display', 'position', 'font-family', 'font-size', 'line-height', 'letter-spacing', 'color', 'background-color',
    'border-top-width', 'border-top-style', 'padding-top', 'margin-top', 'width', 'height', 'border-radius', 'opacity', 'transform', 'filter', 'box-sizing'];
  const out = {};
  for (const sel of ['#launcher', '#panel', '.head', '#title', '#messages > [data-seq="1"]', '#input', '#send']) {
    const el = root.querySelector(sel);
    const cs = getComputedStyle(el);
    out[sel] = Object.fromEntries(props.map((k) => [k, cs.getPropertyValue(k)]));
  }
  const hostCs = getComputedStyle(document.querySelector('[data-parla-widget]'));
  out.host = { display: hostCs.display, transform: hostCs.transform, filter: hostCs.filter, opacity: hostCs.opacity };
  return out;
  });
};
const pageLook = (p) => p.evaluate(() => Object.fromEntries(['#panel-page', 'button.send'].map((sel) => {
  const cs = getComputedStyle(document.querySelector(sel));
  return [sel, { display: cs.display, color: cs.color, background: cs.backgroundColor, width: cs.width, font: cs.fontFamily, radius: cs.borderRadius }];
})));

test('a hostile host stylesheet does not change the widget, and the widget\'s CSS does not touch the page', { timeout: 90_000 }, async (t) => {
  const { context, page: plain, problems } = await openBrowser(t);
  await plain.goto(`${host}/plain.html`);
  await plain.click('#launcher');
  await waitConnected(plain);
  await message(plain, 1);
  const clean = await widgetLook(plain);
  await plain.screenshot({ path: '/tmp/parla-widget-plain.png' });

  const hostile = await context.newPage();
  watch(hostile, problems);
  await hostile.goto(`${host}/hostile.html`);
  await hostile.click('#launcher');
  await waitConnected(hostile);
  await message(hostile, 1);
  const attacked = await widgetLook(hostile);
  await hostile.screenshot({ path: '/tmp/parla-widget-hostile.png' });
  assert.deepEqual(attacked, clean, 'every computed style of the widget is the same under the hostile stylesheet');
  assert.equal(clean['#panel'].display, 'flex');

  const bare = await context.newPage();
  await bare.goto(`${host}/hostile-nowidget.html`);
  assert.deepEqual(await pageLook(hostile), await pageLook(bare), 'the page\'s own .panel/.send look the same with and without the widget');
  assert.deepEqual(problems, []);
});

test('a page with a strict Content-Security-Policy (no inline styles) embeds the widget, styled', { timeout: 60_000 }, async (t) => {
  const { page: p, problems } = await openBrowser(t);
  await p.goto(`${host}/csp.html`);
  await p.click('#launcher');
  await waitConnected(p);
  await p.fill('#input', 'What is Parla?');
  await p.press('#input', 'Enter');
  assert.match((await message(p, 3)).text, /messaging engine/);
  assert.equal(await p.$eval('#panel', (e) => getComputedStyle(e).display), 'flex', 'the stylesheet applied');
  assert.equal(await p.$eval('#launcher', (e) => getComputedStyle(e).borderRadius), '50%');
  assert.deepEqual(problems, [], 'no CSP violation reported');
});

test('on a phone, in Italian, with reduced motion: the panel fills the screen and speaks Italian', { timeout: 60_000 }, async (t) => {
  const { page: p, problems } = await openBrowser(t, { viewport: { width: 390, height: 800 }, isMobile: true, hasTouch: true, reducedMotion: 'reduce' });
  await p.goto(`${host}/it.html`); // data-open="true" data-lang="it"
  await waitConnected(p);
  await message(p, 1);
  assert.equal(await p.getAttribute('#input', 'placeholder'), 'Scrivi un messaggio…');
  assert.equal(await p.textContent('#send'), 'Invia');
  assert.equal(await p.textContent('#status'), 'In linea');
  const box = await p.locator('#panel').boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 390, 800], 'full screen on a phone');
  assert.equal(await p.$eval('#panel', (e) => getComputedStyle(e).transitionDuration), '0s', 'no motion when the visitor asks for less');
  await p.fill('#input', 'Cos\'è Parla?');
  await p.press('#input', 'Enter');
  await message(p, 3);
  await p.screenshot({ path: '/tmp/parla-widget-mobile-it.png' });
  assert.deepEqual(problems, []);
});

test('the bot\'s allowed origins are enforced by the server, and its appearance reaches the widget', { timeout: 90_000 }, async (t) => {
  const email = 'owner@widget.example.com', password = 'a long enough password';
  await api('POST', '/api/auth/register', { email, password, name: 'Owner' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password });
  const bot = await api('POST', '/api/bots', {
    name: 'Shop bot', language: 'en', config: { fallback_message: 'Ask me about orders.', welcome_message: 'Welcome to Acme!' },
    appearance: { title: 'Acme help', color: '#0b7285', position: 'bottom-left' },
    integration: { allowed_origins: ['https://acme.example'] },
  }, token);
  await api('POST', `/api/bots/${bot.id}/publish`, null, token);
  const shop = await startHost({ '/': page(embed(parla, bot.id)) });

  // The settings endpoint: public, read-only, refused to another origin, and without secrets.
  const refused = await fetch(`${parla}/v1/widget/bots/${bot.id}/settings`, { headers: { origin: shop } });
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).error.code, 'origin_not_allowed');

  const { page: p, problems } = await openBrowser(t);
  const sockets = [];
  p.on('websocket', (ws) => sockets.push(ws.url()));
  const settingsAnswered = p.waitForResponse((r) => r.url().includes('/settings'));
  await p.goto(`${shop}/`);
  assert.equal((await settingsAnswered).status(), 403);
  await p.waitForFunction(() => !document.querySelector('[data-parla-widget]'));
  assert.deepEqual(sockets, [], 'no socket from a page the bot does not allow');
  // Even a hand-made socket from this page is refused by the server.
  const code = await p.evaluate(({ url, bot }) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', bot_id: bot }));
    ws.onmessage = (e) => { resolve(JSON.parse(e.data).code); ws.close(); };
  }), { url: `${parla.replace('http', 'ws')}/v1/widget/ws`, bot: bot.id });
  assert.equal(code, 'origin_not_allowed');

  // The owner allows the shop: the widget appears, in the bot's colours and corner.
  await api('PATCH', `/api/bots/${bot.id}`, { integration: { allowed_origins: ['https://acme.example', shop] } }, token);
  const allowed = await fetch(`${parla}/v1/widget/bots/${bot.id}/settings`, { headers: { origin: shop } });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers.get('access-control-allow-origin'), shop);
  const settings = await allowed.json();
  assert.deepEqual(Object.keys(settings).sort(), ['appearance', 'id', 'language', 'name', 'welcome_message']);
  await p.reload();
  await p.click('#launcher');
  await waitConnected(p);
  assert.equal((await message(p, 1)).text, 'Welcome to Acme!');
  assert.equal(await p.textContent('#title'), 'Acme help');
  assert.equal(await p.$eval('.head', (e) => getComputedStyle(e).backgroundColor), 'rgb(11, 114, 133)');
  const launcher = await p.locator('#launcher').boundingBox();
  assert.ok(launcher.x < 100, `the launcher sits bottom-left (x=${launcher.x})`);
  await p.screenshot({ path: '/tmp/parla-widget-appearance.png' });
  assert.deepEqual(problems.filter((x) => !/403|Forbidden/.test(x)), []);
});

const svg = (color, label) => ({
  html: `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="240"><rect width="480" height="240" fill="${color}"/>` +
    `<text x="240" y="140" font-family="sans-serif" font-size="56" fill="#fff" text-anchor="middle">${label}</text></svg>`,
  headers: { 'content-type': 'image/svg+xml' },
});

test('rich messages: a carousel whose button sends a postback, a form whose fields land in the user data', { timeout: 90_000 }, async (t) => {
  const email = 'owner@rich.example.com', password = 'a long enough password';
  await api('POST', '/api/auth/register', { email, password, name: 'Owner' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password });
  const pages = { '/basic.svg': svg('#2b6cb0', 'Basic'), '/pro.svg': svg('#805ad5', 'Pro') };
  const site = await startHost(pages);
  const bot = await api('POST', '/api/bots', { name: 'Shop bot', category: 'SALES',
    config: { welcome_message: 'Hi! Ask me about our plans.', fallback_message: 'Sorry, I did not get that.' } }, token);
  const intents = [
    { name: 'plans', examples: ['show me your plans', 'which plans do you have'], response: { text: 'Here are our plans.', content: {
      type: 'carousel', cards: [
        { title: 'Basic', subtitle: '5 euro a month, one bot', image_url: `${site}/basic.svg`,
          buttons: [{ label: 'Choose Basic', payload: 'plan_basic' }] },
        { title: 'Pro', subtitle: '20 euro a month, every channel', image_url: `${site}/pro.svg`,
          buttons: [{ label: 'Choose Pro', payload: 'plan_pro' }, { label: 'Compare', url: 'https://example.com/compare' }] },
      ] } } },
    { name: 'plan_pro', examples: ['professional tier details'], response: { text: 'Pro costs 20 euro a month. Shall we call you?' } },
    { name: 'contact', examples: ['call me back', 'I want to be contacted'], response: { text: 'Leave us your details.', content: {
      type: 'form', form_id: 'lead', submit_label: 'Send', fields: [
        { name: 'email', label: 'Email', input: 'email', required: true },
        { name: 'name', label: 'Name', input: 'text' },
      ] } } },
  ];
  for (const intent of intents) await api('POST', `/api/bots/${bot.id}/intents`, intent, token);
  await api('POST', `/api/bots/${bot.id}/publish`, null, token);
  pages['/'] = page(embed(parla, bot.id, 'data-open="true"'));

  const { page: p, problems } = await openBrowser(t, { viewport: { width: 900, height: 900 } });
  await p.goto(`${site}/`);
  await waitConnected(p);
  await message(p, 1);
  await p.fill('#input', 'show me your plans');
  await p.press('#input', 'Enter');
  const carousel = p.locator('#messages > [data-seq="3"]');
  await carousel.waitFor();
  assert.equal(await carousel.getAttribute('data-kind'), 'carousel');
  assert.equal(await carousel.locator('.card').count(), 2, 'both cards drawn');
  assert.deepEqual(await carousel.locator('.card h3').allTextContents(), ['Basic', 'Pro']);
  assert.equal(await carousel.locator('.card img').count(), 2, 'the cards\' images (http, on an http page)');
  assert.equal(await carousel.locator('.said').textContent(), 'Here are our plans.', 'what the bot says stays above its cards');
  await p.waitForFunction(() => [...document.querySelector('[data-parla-widget]').shadowRoot.querySelectorAll('.card img')]
    .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: GUARD });
  await p.screenshot({ path: '/tmp/parla-widget-carousel.png' });

  // The button sends a postback; the intent it names answers.
  await carousel.getByRole('button', { name: 'Choose Pro' }).click();
  assert.deepEqual(await message(p, 4), { sender: 'user', text: 'Choose Pro' });
  assert.deepEqual(await message(p, 5), { sender: 'bot', text: 'Pro costs 20 euro a month. Shall we call you?' });

  // A form: filled and sent; its fields land in the conversation's user data.
  await p.fill('#input', 'call me back');
  await p.press('#input', 'Enter');
  const form = p.locator('#messages > [data-seq="7"]');
  await form.waitFor();
  assert.equal(await form.getAttribute('data-kind'), 'form');
  await form.getByLabel('Email').fill('ada@example.com');
  await form.getByLabel('Name').fill('Ada Lovelace');
  await p.screenshot({ path: '/tmp/parla-widget-form.png' });
  await form.getByRole('button', { name: 'Send' }).click();
  assert.equal((await message(p, 8)).sender, 'user');
  assert.deepEqual(await message(p, 9), { sender: 'bot', text: 'Thank you, we have received your details.' });
  await p.screenshot({ path: '/tmp/parla-widget-form-sent.png' });

  const conversationId = await p.evaluate((id) => JSON.parse(localStorage.getItem(`parla.widget.v1.${id}`)).conversation_id, bot.id);
  const detail = await api('GET', `/api/conversations/${conversationId}`, null, token);
  assert.deepEqual(detail.user_data, { email: 'ada@example.com', name: 'Ada Lovelace' });
  assert.equal(detail.messages[3].postback, 'plan_pro');
  assert.equal(detail.messages[2].content.type, 'carousel');
  assert.deepEqual(problems, []);
});

test('the widget files are served for embedding: content type, validators, CORS, immutable versioned app', async () => {
  const loader = await fetch(`${parla}/widget.js`);
  assert.equal(loader.status, 200);
  assert.match(loader.headers.get('content-type'), /^text\/javascript/);
  assert.equal(loader.headers.get('access-control-allow-origin'), '*');
  assert.match(loader.headers.get('cache-control'), /max-age=300/);
  const etag = loader.headers.get('etag');
  const body = await loader.text();
  const again = await fetch(`${parla}/widget.js`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  const hash = /app\.js\?v=([0-9a-f]{16})/.exec(body)?.[1];
  assert.ok(hash, 'the loader names the app build it goes with');
  const app = await fetch(`${parla}/widget/app.js?v=${hash}`);
  assert.equal(app.status, 200);
  assert.match(app.headers.get('cache-control'), /immutable/);
  assert.equal(app.headers.get('etag'), `"${hash}"`, 'the server and the build agree on the hash');
  const stale = await fetch(`${parla}/widget/app.js?v=0000000000000000`);
  assert.equal(stale.headers.get('cache-control'), 'no-cache', 'an unknown version is never cached for good');
});

test('Parla\'s own pages cannot be framed by another site, and run whole under their CSP (no inline script)', { timeout: 60_000 }, async (t) => {
  const { page: p, problems } = await openBrowser(t);
  await p.goto(`${host}/frames.html`);
  // Chromium replaces a frame refused by frame-ancestors with its error page.
  const framed = async (id) => {
    const handle = await p.locator(`#${id}`).elementHandle();
    await p.waitForFunction((el) => el.contentWindow !== null, handle, { timeout: GUARD });
    const frame = await handle.contentFrame();
    await frame.waitForLoadState('load').catch(() => {});
    return frame.url();
  };
  for (const id of ['console', 'demo']) {
    const url = await framed(id);
    assert.ok(!url.startsWith(parla), `${id} was framed by another origin: ${url}`);
  }
  assert.ok(problems.some((m) => /frame-ancestors/.test(m)), `Chromium reports the refusal: ${problems.join('\n')}`);

  // Opened directly, both pages work under the same policy: the console draws its sign-in, the
  // demo page's script embeds the widget, and nothing is refused.
  const { page: direct, problems: directProblems } = await openBrowser(t);
  await direct.goto(`${parla}/console`);
  // A wrong password: the console's module (a file, not inline) runs, calls the API, shows the refusal.
  await direct.fill('#email', 'nobody@example.com');
  await direct.fill('#password', 'not the right password');
  await direct.click('#sign-in');
  await direct.waitForFunction(() => document.getElementById('login-error').textContent.length > 0, null, { timeout: GUARD });
  await direct.goto(`${parla}/`);
  await waitConnected(direct);
  // (The refused sign-in's 401 is logged by Chromium too: only policy refusals count here.)
  assert.deepEqual(directProblems.filter((m) => /Content Security Policy|Refused to/i.test(m)), [],
    'no CSP violation on Parla\'s own pages');
});
