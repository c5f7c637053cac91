// The widget's benchmark (run by scripts/bench-widget.sh): bundle sizes, script tag to
// interactive, and token frame to pixels, in headless Chromium against the real `parla serve`
// on localhost, with the old minimal page (widget/bench/baseline-minimal.html, the page `GET /`
// served before the widget) as the baseline in the same run.
//
// "Interactive" = the panel is open, the socket is welcomed, the greeting (seq 1) is on screen
// and the message box is enabled. "Welcome" = the server's welcome frame arrived: from then a
// message goes out at once (before it, it waits in the outbox). The greeting is a stored
// message (one durable append), so "interactive" includes the server's fsync.
// "Token frame to pixels" = from the WebSocket message event of a `token` frame to the end of the
// next animation frame after its text is in the DOM (rAF, then a task posted from it: the frame
// has been produced by then). The bench page wraps window.WebSocket to see frames arrive; the
// widget itself has no hook.
import { readFile } from 'node:fs/promises';
import { gzipSync, brotliCompressSync } from 'node:zlib';
// playwright-core comes from tests/browser (npm ci there), through its harness.
import { CHROMIUM, CHROMIUM_ARGS, chromium, cleanup, startHost, startParla } from '../../tests/browser/harness.mjs';

const RUNS = Number(process.env.RUNS || 15);
const loadAtStart = (await import('node:os')).loadavg().map((x) => +x.toFixed(2));
const EXCHANGES = Number(process.env.EXCHANGES || 4);
const here = (p) => new URL(p, import.meta.url);

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: +q(0.5).toFixed(1), p90: +q(0.9).toFixed(1), max: +s[s.length - 1].toFixed(1) };
};

// ---- sizes ----
const sizes = {};
for (const [name, path] of [['loader (dist/widget.js)', '../dist/widget.js'], ['app (dist/app.js)', '../dist/app.js'],
  ['baseline minimal page (HTML+inline JS)', './baseline-minimal.html']]) {
  const bytes = await readFile(here(path));
  sizes[name] = { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length, brotli: brotliCompressSync(bytes).length };
}

// ---- pages ----
/** Installed before anything else on a page: watches token frames arrive and get painted. */
const PROBE = `<script>
(() => {
  window.__tokens = [];
  const Orig = window.WebSocket;
  function Probe(url, protocols) {
    window.__ws ??= { created: performance.now() };
    const ws = protocols === undefined ? new Orig(url) : new Orig(url, protocols);
    ws.addEventListener('open', () => { window.__ws.open ??= performance.now(); });
    let handler = null;
    Object.defineProperty(ws, 'onmessage', { configurable: true, get: () => handler, set: (fn) => { handler = fn; } });
    ws.addEventListener('message', (ev) => {
      if (!handler) return;
      const token = typeof ev.data === 'string' && ev.data.startsWith('{"type":"token"');
      if (typeof ev.data === 'string' && ev.data.startsWith('{"type":"welcome"')) window.__ws.welcome ??= performance.now();
      const t0 = performance.now();
      handler.call(ws, ev);
      if (!token) return;
      const tDom = performance.now();
      requestAnimationFrame(() => {
        const ch = new MessageChannel();
        ch.port1.onmessage = () => window.__tokens.push({ dom: tDom - t0, painted: performance.now() - t0 });
        ch.port2.postMessage(0);
      });
    });
    return ws;
  }
  Probe.prototype = Orig.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Probe[k] = Orig[k];
  window.WebSocket = Probe;
})();
</script>`;

/** Polls each frame for "interactive" inside a root (the widget's shadow root, or the page). */
const READY = (rootExpr) => `<script>
(() => {
  const tick = () => {
    const root = ${rootExpr};
    if (root && !window.__launcher && root.querySelector('#launcher')) window.__launcher = performance.now();
    const st = root && root.querySelector('#status');
    const ok = st && (st.dataset.state === 'connected') && root.querySelector('#messages > [data-seq="1"]')
      && !root.querySelector('#input').disabled;
    if (ok) { window.__ready = performance.now(); return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
</script>`;

const parla = await startParla({ PARLA__RESPONDER__TOKEN_DELAY_MS: '5' });
const host = await startHost({
  '/widget.html': `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Shop</title>${PROBE}</head><body>
<h1>Acme shop</h1>
<script>window.__tag = performance.now();</script>
<script src="${parla}/widget.js" data-bot="demo" data-open="true" async></script>
${READY("document.querySelector('[data-parla-widget]')?.shadowRoot")}
</body></html>`,
});
// The baseline speaks to its own origin (location.host), so it is served as if from Parla.
const baselineHtml = (await readFile(here('./baseline-minimal.html'), 'utf8'))
  .replace('<head>', `<head>${PROBE}`)
  .replace('</body>', `${READY("(document.querySelector('#status') && document.querySelector('#status').dataset.state === 'connected' && (document.querySelector('#status').dataset.state = 'connected'), document)")}</body>`);

// Chromium's Local Network Access checks refuse a page's socket to 127.0.0.1 in a fresh
// non-persistent context; both ends are on loopback here, so they are off for the bench.
const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, '--disable-features=LocalNetworkAccessChecks'], headless: true });

async function load(context, url, route) {
  const page = await context.newPage();
  if (process.env.DEBUG) { page.on('console', (m) => console.error(m.type(), m.text())); page.on('pageerror', (e) => console.error('pageerror', e.message)); }
  if (route) await page.route(url, (r) => r.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: route }));
  await page.goto(url);
  await page.waitForFunction(() => window.__ready !== undefined, null, { timeout: 15_000 });
  const t = await page.evaluate(() => ({ tag: window.__tag, launcher: window.__launcher, ready: window.__ready, ...window.__ws }));
  return { page, t };
}

async function chat(page, rootSel) {
  for (let i = 0; i < EXCHANGES; i++) {
    const before = await page.evaluate(() => window.__tokens.length);
    await page.fill(`${rootSel}#input`, i % 2 ? 'How does streaming work?' : 'What is Parla?');
    await page.press(`${rootSel}#input`, 'Enter');
    await page.locator(`${rootSel}#messages > [data-seq="${3 + 2 * i}"]`).waitFor({ timeout: 15_000 });
    await page.waitForFunction((n) => window.__tokens.length > n, before, { timeout: 15_000 });
  }
  return page.evaluate(() => window.__tokens);
}

const widget = { fromNav: [], fromTag: [], launcher: [], socket: [], welcome: [], warmFromNav: [], warmFromTag: [], warmWelcome: [], dom: [], painted: [] };
const baseline = { fromNav: [], welcome: [], dom: [], painted: [] };
for (let i = 0; i < RUNS; i++) {
  // Widget, cold cache (a fresh context each time), then warm (same context, loaded again).
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const cold = await load(ctx, `${host}/widget.html`);
  widget.fromNav.push(cold.t.ready);
  widget.fromTag.push(cold.t.ready - cold.t.tag);
  widget.launcher.push(cold.t.launcher - cold.t.tag);
  widget.socket.push(cold.t.created - cold.t.tag);
  widget.welcome.push(cold.t.welcome - cold.t.tag);
  if (i < 3) for (const x of await chat(cold.page, '')) { widget.dom.push(x.dom); widget.painted.push(x.painted); }
  await cold.page.close();
  const warm = await load(ctx, `${host}/widget.html`);
  widget.warmFromNav.push(warm.t.ready);
  widget.warmFromTag.push(warm.t.ready - warm.t.tag);
  widget.warmWelcome.push(warm.t.welcome - warm.t.tag);
  await ctx.close();

  const bctx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const base = await load(bctx, `${parla}/minimal`, baselineHtml);
  baseline.fromNav.push(base.t.ready);
  baseline.welcome.push(base.t.welcome);
  if (i < 3) for (const x of await chat(base.page, '')) { baseline.dom.push(x.dom); baseline.painted.push(x.painted); }
  await bctx.close();
}
await browser.close();
await cleanup();

const report = {
  chromium: browser.version(),
  // This machine has 2 cores and may be shared: the load says how much else was running.
  'load average (1, 5, 15 min) at the end': (await import('node:os')).loadavg().map((x) => +x.toFixed(2)),
  'load average at the start': loadAtStart,
  runs: RUNS,
  sizes,
  'widget: script tag → launcher drawn (ms, cold)': stats(widget.launcher),
  'widget: script tag → app loaded, socket opening (ms, cold)': stats(widget.socket),
  'widget: script tag → welcome (can send; ms, cold)': stats(widget.welcome),
  'widget: script tag → welcome (can send; ms, warm)': stats(widget.warmWelcome),
  'widget: script tag → interactive (ms, cold cache)': stats(widget.fromTag),
  'widget: script tag → interactive (ms, warm cache)': stats(widget.warmFromTag),
  'widget: navigation start → interactive (ms, cold)': stats(widget.fromNav),
  'baseline minimal page: navigation start → welcome (ms, cold)': stats(baseline.welcome),
  'baseline minimal page: navigation start → interactive (ms, cold)': stats(baseline.fromNav),
  'widget: token frame → text in DOM (ms)': stats(widget.dom),
  'widget: token frame → next frame painted (ms)': stats(widget.painted),
  'baseline: token frame → text in DOM (ms)': stats(baseline.dom),
  'baseline: token frame → next frame painted (ms)': stats(baseline.painted),
};
console.log(JSON.stringify(report, null, 2));
