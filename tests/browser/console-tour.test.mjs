// The console as a whole, in Debian's Chromium against the real `parla serve`: in Italian (the
// browser's language, or the one picked), by keyboard alone, and when the API fails. Run with
// the other browser tests:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Timeouts are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apiCall, axe, cleanup, GUARD, openBrowser, shots, SHOTS, startParla } from './harness.mjs';

const PASSWORD = 'a long enough password';

let parla = null;
before(async () => { parla = await startParla({ PARLA__AUTH__IP_REQUESTS_PER_15MIN: '1000' }); });
after(cleanup);

const api = (method, path, body, token) => apiCall(parla, method, path, body, token);

/** The console's word tables, read from their sources: `key: 'text'` per line. */
async function words(lang) {
  const source = await readFile(new URL(`../../widget/src/console/words/${lang}.ts`, import.meta.url), 'utf8');
  const unescape = (v) => v.replace(/\\u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16))).replace(/\\'/g, "'");
  return Object.fromEntries([...source.matchAll(/^ {2}(\w+): '((?:[^'\\]|\\.)*)',$/gm)].map(([, k, v]) => [k, unescape(v)]));
}


/**
 * The English words on the page that Italian says differently (none should be left): each as a
 * whole word or phrase, so Italian words that merely contain one ("intento" holds "intent") are
 * not taken for it.
 */
async function english(page) {
  const [en, it] = await Promise.all([words('en'), words('it')]);
  const text = (await page.locator('#app').innerText()).toLowerCase();
  const differ = (k) => en[k].toLowerCase() !== it[k].toLowerCase();
  const escape = (w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const find = (w) => new RegExp(`(?<![\\p{L}\\p{N}])${escape(w.toLowerCase())}(?![\\p{L}\\p{N}])`, 'u').exec(text);
  return Object.keys(en).filter((k) => differ(k) && !en[k].includes('{') && en[k].length > 3 && find(en[k]))
    .map((k) => { const at = find(en[k]).index; return `${k}: ${en[k]} (in "${text.slice(Math.max(0, at - 30), at + en[k].length + 30).replace(/\s+/g, ' ')}")`; });
}

/**
 * Visitors chat over the widget socket, each its own conversation: every line is sent after
 * the previous one's answer ended, then the socket closes. Run in a page of Parla's origin.
 */
function visitorsChat(page, bot, scripts) {
  const url = `${parla.replace('http', 'ws')}/v1/widget/ws`;
  return page.evaluate(({ url, bot, scripts, guard }) => Promise.all(scripts.map((lines) => new Promise((resolve, reject) => {
    const s = new WebSocket(url);
    let i = 0, echoed = false;
    const timer = setTimeout(() => reject(new Error(`a visitor got no answer to ${JSON.stringify(lines[i])}`)), guard);
    const next = () => {
      if (i === lines.length) { clearTimeout(timer); s.close(); resolve(); return; }
      s.send(JSON.stringify({ type: 'message', client_msg_id: `m${i}`, text: lines[i] }));
    };
    s.onopen = () => s.send(JSON.stringify({ type: 'hello', bot_id: bot }));
    s.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === 'welcome') next();
      else if (f.type === 'message' && f.client_msg_id === `m${i}`) echoed = true;
      else if (f.type === 'stream_end' && echoed) { echoed = false; i++; next(); }
      else if (f.type === 'error') { clearTimeout(timer); reject(new Error(e.data)); }
    };
  }))), { url, bot, scripts, guard: GUARD });
}

test('an Italian browser gets the console in Italian, and the choice is kept', { timeout: 60_000 }, async (t) => {
  const email = 'ida@tour.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Ida Italiana' });
  const { page, problems } = await openBrowser(t, { locale: 'it-IT', viewport: { width: 1280, height: 800 } });
  await page.goto(`${parla}/console`);
  await page.locator('#login').waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'it');
  assert.equal(await page.textContent('#login-title'), 'Accedi');
  assert.deepEqual(await english(page), [], 'no English left on the sign-in page');
  await page.screenshot({ path: join(SHOTS, 'console-it-sign-in-1280x800.png') });
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#bot-list').waitFor();
  assert.equal(await page.textContent('#tab-bots'), 'Bot');
  assert.deepEqual(await english(page), [], 'no English left on the bots page');
  assert.deepEqual(await axe(page), [], 'axe: Italian bots page');
  await page.screenshot({ path: join(SHOTS, 'console-it-bots-1280x800.png') });
  // English picked on the account page: kept across a reload.
  await page.click('#me');
  await page.selectOption('#lang', 'en');
  await page.locator('#security-title:has-text("Your account")').waitFor();
  await page.reload();
  await page.locator('#security-title:has-text("Your account")').waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.deepEqual(problems, []);
});

test('by keyboard alone: sign in, reach a section, open a bot, and a dialog returns focus', { timeout: 60_000 }, async (t) => {
  const email = 'kai@tour.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Kai Keys' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
  const bot = await api('POST', '/api/bots', { name: 'Keyboard bot' }, token);
  const { page, problems } = await openBrowser(t);
  await page.goto(`${parla}/console`);
  await page.locator('#login').waitFor();
  // Tab order: into the email field, the password, the button; Enter submits.
  const focusOn = async (id, max = 12) => {
    for (let i = 0; i < max; i++) {
      if (await page.evaluate(() => document.activeElement?.id) === id) return;
      await page.keyboard.press('Tab');
    }
    assert.fail(`Tab never reached #${id}`);
  };
  await focusOn('email');
  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.locator('#views').waitFor();
  await focusOn('tab-bots', 20);
  await page.keyboard.press('Enter');
  await page.locator(`#bot-list li[data-bot-id="${bot.id}"]`).waitFor();
  const link = `#bot-list a[href="#bots/${bot.id}"]`;
  await page.focus(link);
  await page.keyboard.press('Enter');
  await page.locator('#bot-settings').waitFor();
  await focusOn('delete-bot', 30);
  await page.keyboard.press('Enter');
  await page.locator('#delete-dialog[open]').waitFor();
  assert.notEqual(await page.evaluate(() => document.activeElement?.closest('dialog')?.id), undefined, 'focus moved into the dialog');
  await page.keyboard.press('Escape');
  await page.locator('#delete-dialog').waitFor({ state: 'detached' });
  await page.waitForFunction(() => document.activeElement?.id === 'delete-bot', null, { timeout: GUARD })
    .catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'delete-bot', 'focus is back on the opener');
  assert.deepEqual(problems, []);
});

test('a list whose request fails says so with Retry, and Retry loads it', { timeout: 60_000 }, async (t) => {
  const email = 'eve@tour.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Eve Errors' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
  await api('POST', '/api/bots', { name: 'Flaky bot' }, token);
  const { page, problems } = await openBrowser(t);
  await page.goto(`${parla}/console`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#views').waitFor();
  await page.route('**/api/bots', (route) => route.fulfill({
    status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: 'internal error' } }),
  }));
  await page.click('#tab-bots');
  await page.locator('#bot-list[data-state="error"]').waitFor();
  assert.match(await page.textContent('#bot-list'), /internal error/);
  await page.unroute('**/api/bots');
  await page.route('**/api/bots', (route) => route.abort('failed'));
  await page.click('#bot-list button:has-text("Retry")');
  await page.locator('#bot-list:has-text("could not be reached")').waitFor();
  await page.unroute('**/api/bots');
  await page.click('#bot-list button:has-text("Retry")');
  await page.locator('#bot-list[data-state="ready"]').waitFor();
  assert.match(await page.textContent('#bot-list'), /Flaky bot/);
  assert.deepEqual(problems.filter((p) => !/status of 500|ERR_FAILED/.test(p)), []);
});

// The desk and the dashboard, in each language: a conversation opened, taken over and answered
// by keyboard alone (a canned response among them), both screens checked by axe, photographed
// at desktop and phone width (nothing scrolls sideways at 360 px) and, in Italian, with no
// English left.
const DESK_TEXTS = {
  en: { visitor: ['Hello, I have a question about my order', 'It has not arrived yet'], other: ['Do you ship abroad?'],
    fallback: 'Sorry, I did not understand.', answer: 'Let me check.', reply: 'Hi, I am looking at your order now.', canned: ['thanks', 'Thank you for your patience!'], note: 'Regular customer' },
  it: { visitor: ['Buongiorno, ho una domanda sul mio ordine', 'Non è ancora arrivato'], other: ['Spedite anche all\u2019estero?'],
    fallback: 'Mi dispiace, non ho capito.', answer: 'Controllo subito.', reply: 'Buongiorno, controllo subito il suo ordine.', canned: ['grazie', 'Grazie per la pazienza!'], note: 'Cliente abituale' },
};
for (const lang of ['en', 'it']) {
  const name = lang === 'it' ? 'Italian' : 'English';
  test(`the inbox and the dashboard in ${name}, by keyboard: axe clean, usable at phone width`, { timeout: 90_000 }, async (t) => {
    const text = DESK_TEXTS[lang];
    const email = `desk-${lang}@tour.example.com`;
    await api('POST', '/api/auth/register', { email, password: PASSWORD, name: lang === 'it' ? 'Dora Desk' : 'Dana Desk' });
    const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
    await api('PATCH', '/api/workspace', { agents: { assignment: 'manual' } }, token);
    const bot = await api('POST', '/api/bots', { name: 'Shop bot', language: lang, config: { fallback_message: text.fallback } }, token);
    // An intent answers the first question, so no conversation misses twice and is escalated (the
    // visitor would be told no agent is online, in words of the server's own).
    await api('POST', `/api/bots/${bot.id}/intents`, { name: 'order', examples: [text.visitor[0]], response: { text: text.answer } }, token);
    await api('POST', `/api/bots/${bot.id}/publish`, null, token);
    await api('POST', '/api/canned-responses', { shortcut: text.canned[0], text: text.canned[1] }, token);

    const { page, problems } = await openBrowser(t, { locale: lang === 'it' ? 'it-IT' : 'en-US', viewport: { width: 1280, height: 800 } });
    await page.goto(`${parla}/console`);
    await page.locator('#login').waitFor();
    await visitorsChat(page, bot.id, [text.visitor, text.other]);

    // Signed in, the desk: the two conversations, newest first.
    await page.fill('#email', email);
    await page.fill('#password', PASSWORD);
    await page.click('#sign-in');
    await page.locator('#status[data-state="connected"]').waitFor();
    await page.locator('#inbox[data-state="ready"] li[data-conversation-id]').nth(1).waitFor();
    assert.equal(new URL(page.url()).hash, '#inbox');

    // By keyboard: Tab reaches the list, the arrows move along it, Enter opens one.
    const focused = () => page.evaluate(() => document.activeElement?.dataset.conversationId ?? document.activeElement?.id);
    const ids = await page.$$eval('#inbox li[data-conversation-id]', (els) => els.map((e) => e.dataset.conversationId));
    for (let i = 0; i < 30 && await focused() !== ids[0]; i++) await page.keyboard.press('Tab');
    assert.equal(await focused(), ids[0], 'Tab reaches the first conversation');
    await page.keyboard.press('ArrowDown');
    assert.equal(await focused(), ids[1], 'ArrowDown moves to the next');
    await page.keyboard.press('Enter');
    await page.locator('#inbox li[aria-selected="true"]').waitFor();
    assert.equal(await page.getAttribute('#inbox li[aria-selected="true"]', 'data-conversation-id'), ids[1]);
    const first = page.locator('#thread .msg[data-seq="1"]');
    await first.waitFor();
    const visitor = (await first.textContent()).includes(text.other[0]) ? text.other : text.visitor;
    // The other one, to answer: the one with two questions.
    if (visitor === text.other) {
      await page.keyboard.press('ArrowUp');
      await page.keyboard.press(' ');
      await page.locator(`#inbox li[aria-selected="true"][data-conversation-id="${ids[0]}"]`).waitFor();
    }
    await page.locator('#thread .msg[data-sender="user"]', { hasText: text.visitor[1] }).waitFor();
    assert.ok(await page.isDisabled('#reply'), 'no reply before taking over');

    // Take over, reply, a canned response, a note: all by keyboard.
    await page.focus('#claim');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.querySelector('#reply').disabled);
    await page.focus('#reply');
    await page.keyboard.type(text.reply);
    await page.keyboard.press('Enter');
    await page.locator('#thread .msg[data-sender="human"]', { hasText: text.reply }).waitFor();
    await page.keyboard.type(`/${text.canned[0].slice(0, 3)}`);
    await page.locator('#canned li[aria-selected="true"]').waitFor();
    assert.equal(await page.getAttribute('#reply', 'aria-activedescendant'), await page.getAttribute('#canned li[aria-selected="true"]', 'id'));
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#reply'), text.canned[1]);
    await page.keyboard.press('Enter');
    await page.locator('#thread .msg[data-sender="human"]', { hasText: text.canned[1] }).waitFor();
    await page.focus('#note');
    await page.keyboard.type(text.note);
    await page.keyboard.press('Enter');
    await page.locator('#thread .msg.note', { hasText: text.note }).waitFor();
    assert.match(await page.textContent('#pane-title'), lang === 'it' ? /con te/ : /with you/);

    if (lang === 'it') assert.deepEqual(await english(page), [], 'no English left on the desk');
    assert.deepEqual(await axe(page), [], `axe: the desk in ${name}`);
    await shots(page, `desk-${lang}-inbox`);

    // The dashboard.
    await page.click('#tab-dashboard');
    await page.locator('#dashboard[data-state="ready"]').waitFor();
    await page.locator('#unmatched li[data-conversation-id]').first().waitFor();
    if (lang === 'it') assert.deepEqual(await english(page), [], 'no English left on the dashboard');
    assert.deepEqual(await axe(page), [], `axe: the dashboard in ${name}`);
    await shots(page, `desk-${lang}-dashboard`);
    assert.deepEqual(problems, []);
  });
}

test('the inbox says when the desk cannot connect, and "Reconnect now" connects it', { timeout: 60_000 }, async (t) => {
  const email = 'rex@tour.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Rex Reconnect' });
  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 800 } });
  // The agent socket is refused (closed at once) until the network comes back.
  let down = true;
  await page.routeWebSocket(/\/v1\/agent\/ws$/, (ws) => { if (down) ws.close(); else ws.connectToServer(); });
  await page.goto(`${parla}/console#inbox`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#inbox[data-state="error"]').waitFor({ state: 'attached' });
  assert.equal(await page.getAttribute('#status', 'data-state'), 'connecting');
  assert.match(await page.textContent('.inbox-col [role="alert"]'), /not connected/);
  assert.deepEqual(await axe(page), [], 'axe: the desk disconnected');
  await shots(page, 'desk-disconnected');
  down = false;
  // Dispatched rather than clicked: each retry redraws the inbox column, and under load a
  // pointer click kept waiting for the button to hold still between two redraws.
  await page.locator('.inbox-col button:has-text("Reconnect now")').dispatchEvent('click');
  await page.locator('#status[data-state="connected"]').waitFor();
  await page.locator('#inbox[data-state="empty"]').waitFor({ state: 'attached' });
  assert.equal(await page.textContent('.inbox-col .empty'), 'No live conversations.');
  assert.deepEqual(problems, []);
});
