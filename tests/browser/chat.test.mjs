// End to end, as a person would: the real `parla serve` binary, the demo page at `/` (which
// embeds the widget, opened), Debian's Chromium driven by playwright-core. Run by
// ./scripts/test.sh, or by hand:
//   PARLA_BIN=/var/tmp/parla-target/debug/parla node --test tests/browser/
// Assertions go through the widget's stable ids (#messages children with data-seq/data-sender,
// #input, #send, #status[data-state]); Playwright's CSS selectors pierce its open shadow root.
// Timeouts below are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { recordPartials } from './harness.mjs';

const PARLA_BIN = process.env.PARLA_BIN;
const CHROMIUM = process.env.PARLA_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = '/tmp/parla-chat.png';
const GUARD = 15_000; // hang guard for every wait
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const tempDirs = [];
async function freshDir(prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

// ---- the server -------------------------------------------------------------------------------
let server = null;     // ChildProcess
let baseUrl = null;    // http://ADDR
let serverLog = [];    // last lines of its stdout/stderr, shown when something fails

function killServer() {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
}
process.on('exit', killServer); // backstop: never leave the server behind

function startServer(dataDir) {
  const child = spawn(PARLA_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, PARLA__RESPONDER__TOKEN_DELAY_MS: '5', PARLA__SERVER__OPS_LISTEN: '127.0.0.1:0', RUST_LOG: process.env.RUST_LOG || 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = child;
  const keep = (line) => { serverLog.push(line); if (serverLog.length > 200) serverLog.shift(); };
  createInterface({ input: child.stderr }).on('line', keep); // always drain: a full pipe blocks it
  const stdout = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`parla printed no address within ${GUARD} ms\n${serverLog.join('\n')}`)), GUARD);
    child.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${PARLA_BIN}: ${e.message}`)); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`parla exited (${signal || code}) before listening\n${serverLog.join('\n')}`));
    });
    stdout.on('line', (line) => {
      keep(line);
      const m = /^parla: listening on (http:\/\/\S+)$/.exec(line);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
}

before(async () => {
  assert.ok(PARLA_BIN, 'PARLA_BIN must be set to the parla binary, e.g. PARLA_BIN=$CARGO_TARGET_DIR/debug/parla');
  baseUrl = await startServer(await freshDir('parla-browser-data-'));
});

after(async () => {
  killServer();
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

// ---- the browser ------------------------------------------------------------------------------
/** A fresh Chromium (own user-data dir) with one page; page errors are collected. */
async function openBrowser(t) {
  const context = await chromium.launchPersistentContext(await freshDir('parla-chromium-'), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: GUARD,
    viewport: { width: 900, height: 700 },
  });
  t.after(() => context.close());
  context.setDefaultTimeout(GUARD);
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  return { page, problems };
}

const waitConnected = (page) => page.locator('#status[data-state="connected"]').waitFor({ timeout: GUARD });

/** Waits for the stored message with this seq and returns {sender, text}. */
async function message(page, seq) {
  const el = page.locator(`#messages > [data-seq="${seq}"]`);
  await el.waitFor({ state: 'visible', timeout: GUARD });
  return { sender: await el.getAttribute('data-sender'), text: (await el.locator('.text').textContent()) ?? '' };
}

/** The data-seq of every #messages child, in page order. */
const shownSeqs = (page) => page.$$eval('#messages > *', (els) => els.map((e) => Number(e.dataset.seq)));

// ---- the scenarios ----------------------------------------------------------------------------
test('a person chats with the demo bot, sees the reply stream, reloads and carries on', { timeout: 90_000 }, async (t) => {
  const { page, problems } = await openBrowser(t);
  await page.goto(`${baseUrl}/`);
  await waitConnected(page);

  const greeting = await message(page, 1);
  assert.equal(greeting.sender, 'bot');
  assert.ok(greeting.text.length > 0, 'the greeting has text');

  // Record, in the page, every text the streaming bubble shows while tokens arrive. A
  // MutationObserver sees each token frame (each is its own task), so this does not depend on
  // how fast this process polls.
  await recordPartials(page);

  // By keyboard: focus the box, type, Enter sends.
  await page.focus('#input');
  await page.keyboard.type('What is Parla?');
  await page.keyboard.press('Enter');

  const mine = await message(page, 2);
  assert.deepEqual(mine, { sender: 'user', text: 'What is Parla?' });
  assert.equal(await page.inputValue('#input'), '', 'Enter cleared the input');
  const reply = await message(page, 3);
  assert.equal(reply.sender, 'bot');
  assert.match(reply.text, /messaging engine/);

  const partials = await page.evaluate(() => window.__partials);
  const partial = partials.find((p) => p.length < reply.text.length && reply.text.startsWith(p.trim()));
  assert.ok(partial, `a partially streamed reply was visible before the stored one (saw ${partials.length} states)`);
  await page.locator('#live .streaming').waitFor({ state: 'detached', timeout: GUARD });

  // Reload: the page resumes the same conversation; nothing is shown twice.
  await page.reload();
  await waitConnected(page);
  assert.equal((await message(page, 3)).sender, 'bot');
  assert.deepEqual(await shownSeqs(page), [1, 2, 3], 'after reload, messages 1..3 once each');

  // By mouse: type into the box and click Send.
  await page.fill('#input', 'How does streaming work?');
  await page.click('#send');
  assert.deepEqual(await message(page, 4), { sender: 'user', text: 'How does streaming work?' });
  const second = await message(page, 5);
  assert.equal(second.sender, 'bot');
  assert.match(second.text, /stream_start/);
  // seq 5 came after any replay the resume triggered, so a duplicate would be in the page now.
  assert.deepEqual(await shownSeqs(page), [1, 2, 3, 4, 5], 'messages 1..5 once each, in order');
  assert.equal(await page.locator('#live > *').count(), 0, 'no pending or streaming bubble left');
  assert.equal(await page.textContent('#title'), 'Parla demo', 'the bot\'s appearance title heads the widget');

  await page.screenshot({ path: SCREENSHOT });
  assert.deepEqual(problems, [], 'no script errors in the page');
});

test('an unknown bot shows no widget at all, and opens no socket', { timeout: 60_000 }, async (t) => {
  const { page, problems } = await openBrowser(t);
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  // The loader asks for the bot's public settings; a 404 (bot_not_found) removes the widget
  // before anything else is loaded or connected.
  const settings = page.waitForResponse((r) => r.url().includes('/v1/widget/bots/no-such-bot/settings'));
  await page.goto(`${baseUrl}/?bot=no-such-bot`);
  const answer = await settings;
  assert.equal(answer.status(), 404);
  assert.equal((await answer.json()).error.code, 'bot_not_found');
  await page.waitForFunction(() => !document.querySelector('[data-parla-widget]'), null, { timeout: GUARD });
  assert.equal(await page.locator('#launcher').count(), 0);
  assert.deepEqual(sockets, [], 'no conversation was attempted');
  assert.deepEqual(problems.filter((p) => !/status of 404/.test(p)), [], 'no script errors in the page');
});

// ---- the agent console ------------------------------------------------------------------------
const CONSOLE_SHOT = '/tmp/parla-console.png';
const VISITOR_SHOT = '/tmp/parla-console-visitor.png';

/** A JSON call to the admin API; returns the parsed body, failing the test on an error status. */
async function api(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const json = await res.json().catch(() => null);
  assert.ok(res.ok, `${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}

test('an agent signs in to the console, takes a chat over from the bot and replies', { timeout: 90_000 }, async (t) => {
  // A workspace with a published bot, as its owner would set it up through the admin API.
  const email = 'ann@console.example.com', password = 'a long enough password';
  await api('POST', '/api/auth/register', { email, password, name: 'Ann Agent' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password });
  await api('PATCH', '/api/workspace', { agents: { assignment: 'manual' } }, token);
  const bot = await api('POST', '/api/bots', { name: 'Console test bot', config: { fallback_message: 'I am only a bot.' } }, token);
  await api('POST', `/api/bots/${bot.id}/publish`, null, token);
  await api('POST', '/api/canned-responses', { shortcut: 'thanks', text: 'Thank you for your patience!' }, token);

  // The visitor chats with the bot in one browser…
  const visitor = await openBrowser(t);
  await visitor.page.goto(`${baseUrl}/?bot=${bot.id}`);
  await waitConnected(visitor.page);
  await visitor.page.fill('#input', 'Can I speak to someone about my order?');
  await visitor.page.click('#send');
  assert.equal((await message(visitor.page, 1)).sender, 'user');

  // …the agent signs in to the console in another.
  const agent = await openBrowser(t);
  const page = agent.page;
  await page.goto(`${baseUrl}/console`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#sign-in');
  await page.waitForFunction(() => document.querySelector('#status')?.dataset.state === 'connected', null, { timeout: GUARD });
  assert.equal(await page.textContent('#me'), 'Ann Agent');

  // The conversation waits in the inbox (the visitor asked for a person: ESCALATED, first).
  const item = page.locator('#inbox li[data-conversation-id]').first();
  await item.waitFor({ timeout: GUARD });
  await page.waitForFunction(() => document.querySelector('#inbox li[data-conversation-id]')?.dataset.status === 'ESCALATED', null, { timeout: GUARD });
  assert.match(await item.textContent(), /new/, 'unread messages are flagged');
  await item.click();
  await page.locator('#thread [data-seq="1"]').waitFor({ timeout: GUARD });
  assert.match(await page.textContent('#thread [data-seq="1"]'), /speak to someone/);
  assert.ok(await page.isDisabled('#reply'), 'no reply before taking over');

  // Take over: the visitor is told, the reply box opens.
  await page.click('#claim');
  await visitor.page.locator('#handoff', { hasText: 'Ann Agent' }).waitFor({ timeout: GUARD });
  await page.waitForFunction(() => !document.querySelector('#reply').disabled, null, { timeout: GUARD });

  // Reply by keyboard, and with a canned response picked from the "/" list.
  await page.focus('#reply');
  await page.keyboard.type('Hi, I am Ann. Let me look at your order.');
  await page.keyboard.press('Enter');
  await page.keyboard.type('/tha');
  await page.locator('#canned li').first().waitFor({ timeout: GUARD });
  await page.keyboard.press('Tab');
  assert.equal(await page.inputValue('#reply'), 'Thank you for your patience!');
  await page.keyboard.press('Enter');

  // The visitor's page shows both, from the human, in order, and no bot answer after the takeover.
  const visitorTexts = async () => visitor.page.$$eval('#messages > .msg', (els) => els.map((e) => [e.dataset.sender, e.querySelector('.text').textContent]));
  await visitor.page.locator('#messages > .msg[data-sender="human"]').nth(1).waitFor({ timeout: GUARD });
  const shown = await visitorTexts();
  const human = shown.filter(([s]) => s === 'human').map(([, text]) => text);
  assert.deepEqual(human, ['Hi, I am Ann. Let me look at your order.', 'Thank you for your patience!']);
  const afterTakeover = shown.slice(shown.findIndex(([s]) => s === 'human'));
  assert.ok(afterTakeover.every(([s]) => s !== 'bot'), `no bot message after the takeover: ${JSON.stringify(shown)}`);

  // The visitor answers; the agent sees it live.
  await visitor.page.fill('#input', 'Thanks Ann!');
  await visitor.page.click('#send');
  await page.waitForFunction(() => [...document.querySelectorAll('#thread .msg[data-sender="user"]')].some((e) => e.textContent.includes('Thanks Ann!')), null, { timeout: GUARD });

  await page.screenshot({ path: '/tmp/parla-console-live.png' }); // Mid-session, for a person to look at.

  // Hand back to the bot, then resolve: the conversation leaves the inbox.
  await page.click('#release');
  await visitor.page.locator('#handoff', { hasText: 'again' }).waitFor({ timeout: GUARD });
  await page.click('#resolve');
  await page.waitForFunction(() => document.querySelectorAll('#inbox li[data-conversation-id]').length === 0, null, { timeout: GUARD });

  await page.screenshot({ path: CONSOLE_SHOT });
  await visitor.page.screenshot({ path: VISITOR_SHOT });
  assert.deepEqual(agent.problems, [], 'no script errors in the console');
  assert.deepEqual(visitor.problems, [], 'no script errors in the widget');
});
