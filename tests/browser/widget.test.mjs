// The embeddable widget end to end: a third-party page embeds it with one script tag (another
// origin than Parla's), in Debian's Chromium, against the real `parla serve`. Network drops are
// real (a TCP proxy cuts the connections); nothing in the widget is stubbed. Run with:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Screenshots land in /tmp/parla-widget-*.png, for a person to look at.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  GUARD, cleanup, embed, message, openBrowser, shownSeqs, startHost, startParla, startProxy, waitConnected, watch,
} from './harness.mjs';

let parla, proxy, host;

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
  });
});
after(cleanup);

/** Drops Chromium's own console line for a socket the proxy cut on purpose. */
const real = (problems) => problems.filter((p) => !/WebSocket connection to .* failed/.test(p));

/** Records, inside the page, every text the streaming bubble shows (one entry per DOM change). */
const recordPartials = (p) => p.evaluate(() => {
  const root = document.querySelector('[data-parla-widget]').shadowRoot;
  window.__partials = [];
  new MutationObserver(() => {
    for (const el of root.querySelectorAll('#live .msg.streaming')) {
      const text = el.querySelector('.text').textContent;
      if (text && el.getClientRects().length > 0) window.__partials.push(text);
    }
  }).observe(root.querySelector('#live'), { childList: true, subtree: true, characterData: true });
});

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

test('a closed widget counts unread replies (from another tab of the same visitor) and clears them on open', { timeout: 90_000 }, async (t) => {
  const { context, page: a, problems } = await openBrowser(t);
  await a.goto(`${host}/plain.html`);
  await a.click('#launcher');
  await waitConnected(a);
  await message(a, 1);

  // A second tab: the widget stays closed but, as this browser has a conversation, connects.
  const b = await context.newPage();
  watch(b, problems);
  await b.goto(`${host}/plain.html`);
  await b.locator('#launcher').waitFor();
  await b.locator('#status[data-state="connected"]').waitFor({ state: 'attached' });
  assert.ok(await b.locator('#badge').isHidden(), 'nothing unread yet');

  await a.fill('#input', 'What is Parla?');
  await a.press('#input', 'Enter');
  await message(a, 3);
  await b.locator('#badge:not([hidden])').waitFor();
  assert.equal(await b.textContent('#badge'), '1', 'the bot reply is unread; the visitor\'s own message is not');
  await b.screenshot({ path: '/tmp/parla-widget-unread.png' });
  await b.click('#launcher');
  await b.locator('#badge').waitFor({ state: 'hidden' });
  assert.deepEqual(await shownSeqs(b), [1, 2, 3]);
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

/** A JSON call to the admin API; fails the test on an error status. */
async function api(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${parla}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const json = await res.json().catch(() => null);
  assert.ok(res.ok, `${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}

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
