// What the widget's browser tests share: the real `parla serve` binary, a third-party "host"
// site on another origin that embeds the widget with its one script tag, a TCP proxy between
// the browser and Parla that can cut every connection (a real network drop, no test hook in the
// widget), and Debian's Chromium. Timeouts are hang guards only, never timing assertions.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const PARLA_BIN = process.env.PARLA_BIN;
export const CHROMIUM = process.env.PARLA_CHROMIUM || '/usr/bin/chromium';
export const GUARD = 15_000;
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const tempDirs = [];
export async function freshDir(prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
const cleanups = [];
export async function cleanup() {
  for (const f of cleanups.splice(0).reverse()) await f();
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** A JSON call to the admin API of the server at `base`; fails the test on an error status. */
export async function apiCall(base, method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const json = await res.json().catch(() => null);
  assert.ok(res.ok, `${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * The newest mail to `to` whose subject is `subject`, from the outbox of the server with data
 * dir `dataDir` (no relay configured: every mail lands there); waits for it (a hang guard).
 */
export async function mailTo(dataDir, to, subject) {
  const deadline = Date.now() + GUARD;
  for (;;) {
    const text = await readFile(join(dataDir, 'outbox.jsonl'), 'utf8').catch(() => '');
    const mail = text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .filter((m) => m.to === to && m.subject === subject).at(-1);
    if (mail) return mail;
    assert.ok(Date.now() < deadline, `no mail "${subject}" to ${to} in the outbox`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `parla serve` on port 0; resolves to its base URL. */
export async function startParla(env = {}) {
  return (await startParlaWithDir(env)).url;
}

/** Starts `parla serve` on port 0; resolves to `{url, dataDir}` (its mail outbox is in the dir). */
export async function startParlaWithDir(env = {}) {
  assert.ok(PARLA_BIN, 'PARLA_BIN must be set to the parla binary, e.g. PARLA_BIN=$CARGO_TARGET_DIR/debug/parla');
  // The data dir inside a folder of its own: the master key Parla generates beside it
  // (`data.master.key`) goes with it.
  const dataDir = join(await freshDir('parla-widget-'), 'data');
  const log = [];
  const child = spawn(PARLA_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, PARLA__RESPONDER__TOKEN_DELAY_MS: '5', PARLA__SERVER__OPS_LISTEN: '127.0.0.1:0', RUST_LOG: process.env.RUST_LOG || 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); };
  process.on('exit', kill);
  cleanups.push(kill);
  const keep = (line) => { log.push(line); if (log.length > 200) log.shift(); };
  createInterface({ input: child.stderr }).on('line', keep);
  const stdout = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`parla printed no address\n${log.join('\n')}`)), GUARD);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`parla exited (${signal || code})\n${log.join('\n')}`)); });
    stdout.on('line', (line) => {
      keep(line);
      const m = /^parla: listening on (http:\/\/\S+)$/.exec(line);
      if (m) { clearTimeout(timer); resolve({ url: m[1], dataDir }); }
    });
  });
}

/**
 * A TCP proxy in front of Parla. `cutOn(text)` arms it: the next server→browser chunk that
 * contains `text` is forwarded, then every connection is destroyed. `hold()` makes new
 * connections wait (the network is down) until `release()`.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const conns = new Set();
  const state = { connections: 0, cut: null, held: [], holding: false, cuts: 0 };
  const server = createTcpServer((client) => {
    const go = () => {
      state.connections++;
      const upstream = connect(Number(port), hostname);
      const pair = { client, upstream };
      conns.add(pair);
      const drop = () => { conns.delete(pair); client.destroy(); upstream.destroy(); };
      client.on('error', drop); upstream.on('error', drop);
      client.on('close', drop); upstream.on('close', drop);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        client.write(d);
        if (state.cut && d.includes(state.cut.text)) {
          const { resolve } = state.cut;
          state.cut = null;
          state.cuts++;
          // Let the chunk with the matching frame reach the browser, then pull the plug.
          setImmediate(() => { for (const c of [...conns]) { c.client.destroy(); c.upstream.destroy(); conns.delete(c); } resolve(); });
        }
      });
    };
    if (state.holding) state.held.push(go); else go();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => { for (const c of conns) { c.client.destroy(); c.upstream.destroy(); } server.close(() => r()); }));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    /** Resolves once the cut happened. */
    cutOn(text) { return new Promise((resolve) => { state.cut = { text: Buffer.from(text), resolve }; }); },
    cutNow() { for (const c of [...conns]) { c.client.destroy(); c.upstream.destroy(); conns.delete(c); } state.cuts++; },
    hold() { state.holding = true; },
    release() { state.holding = false; for (const go of state.held.splice(0)) go(); },
  };
}

/** A third-party site (another origin) serving `pages`: path → HTML, or {html, headers}. */
export async function startHost(pages) {
  const server = createHttpServer((req, res) => {
    const entry = pages[new URL(req.url, 'http://x').pathname];
    if (!entry) { res.writeHead(404).end('not found'); return; }
    const { html, headers = {} } = typeof entry === 'string' ? { html: entry } : entry;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(html);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return `http://127.0.0.1:${server.address().port}`;
}

/** A fresh Chromium (own profile) with one page; page errors and console errors are collected. */
export async function openBrowser(t, { viewport = { width: 900, height: 760 }, ...options } = {}) {
  const context = await chromium.launchPersistentContext(await freshDir('parla-chromium-'), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: GUARD, viewport, ...options,
  });
  t.after(() => context.close());
  context.setDefaultTimeout(GUARD);
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  watch(page, problems);
  return { context, page, problems };
}

export function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
}

/** Playwright's CSS selectors pierce open shadow roots: these find elements inside the widget. */
export const waitConnected = (page) => page.locator('#status[data-state="connected"]').waitFor({ timeout: GUARD });

/** Waits for the stored message with this seq and returns {sender, text}. */
export async function message(page, seq) {
  const el = page.locator(`#messages > [data-seq="${seq}"]`);
  await el.waitFor({ state: 'visible', timeout: GUARD });
  return { sender: await el.getAttribute('data-sender'), text: (await el.locator('.text').textContent()) ?? '' };
}

/** The data-seq of every #messages child, in page order. */
export const shownSeqs = (page) => page.$$eval('#messages > *', (els) => els.map((e) => Number(e.dataset.seq)));

/** The one-tag embed, as a customer pastes it. */
export const embed = (parla, bot = 'demo', attrs = '') =>
  `<script src="${parla}/widget.js" data-bot="${bot}" ${attrs} async></script>`;

/** Records, inside the page, every text the streaming bubble shows (one entry per DOM change). */
export const recordPartials = (p) => p.evaluate(() => {
  const root = document.querySelector('[data-parla-widget]').shadowRoot;
  window.__partials = [];
  new MutationObserver(() => {
    for (const el of root.querySelectorAll('#live .msg.streaming')) {
      const text = el.querySelector('.text').textContent;
      if (text && el.getClientRects().length > 0) window.__partials.push(text);
    }
  }).observe(root.querySelector('#live'), { childList: true, subtree: true, characterData: true });
});


/** Where screenshots go: $PARLA_SHOTS, else the cargo target dir, else /tmp. */
export const SHOTS = process.env.PARLA_SHOTS || process.env.CARGO_TARGET_DIR || '/tmp';
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/**
 * axe-core's violations inside `include` (the console's `#app` by default), one line each.
 * Evaluated through the DevTools protocol: the pages' CSP (rightly) refuses an injected inline
 * script.
 */
export async function axe(page, include = [['#app']]) {
  await page.evaluate(await readFile(AXE, 'utf8'));
  const result = await page.evaluate((include) => window.axe.run({ include }, { resultTypes: ['violations'] }), include);
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** Console screenshots at desktop and phone width, then checks nothing scrolls sideways at 360 px. */
export async function shots(page, name) {
  const before = page.viewportSize();
  for (const [w, h] of [[1280, 800], [390, 844]]) {
    await page.setViewportSize({ width: w, height: h });
    await page.screenshot({ path: join(SHOTS, `console-${name}-${w}x${h}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 360, height: 740 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth), `${name}: no horizontal scroll at 360 px`);
  await page.setViewportSize(before);
}

export { chromium };
