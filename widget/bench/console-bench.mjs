// The console's benchmark (run by scripts/bench-console.sh): what a first visit downloads and
// how soon the console can be used, in headless Chromium against the real `parla serve` on
// localhost, with the console it replaced (the hand-written widget/console.html + console.js of
// commit 5bf874f, served as static files by a local host) as the baseline in the same run.
//
// "Interactive" = the first view's main control is on screen and enabled: the Sign in button
// (signed out, both consoles), or — signed in, new console only — the bot list has its data
// (`#bot-list[data-state]` ready or empty). Polled on every animation frame by a probe script
// installed before the page's own; reported in ms since navigation start.
// Bytes are what the wire carried (gzip when the server offers it), from Resource Timing.
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { CHROMIUM, CHROMIUM_ARGS, apiCall, chromium, cleanup, startHost, startParla } from '../../tests/browser/harness.mjs';

const RUNS = Number(process.env.RUNS || 20);
const loadAtStart = loadavg().map((x) => +x.toFixed(2));
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: +q(0.5).toFixed(1), p90: +q(0.9).toFixed(1), max: +s[s.length - 1].toFixed(1) };
};

const PROBE = (selector) => `(() => {
  const sel = ${JSON.stringify(selector)};
  const tick = () => {
    const el = document.querySelector(sel);
    if (el && !el.disabled && el.getClientRects().length) { window.__interactive = performance.now(); return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();`;

const old = (rev, path) => execFileSync('git', ['show', `${rev}:${path}`], { encoding: 'utf8' });
const parla = await startParla({ PARLA__AUTH__IP_REQUESTS_PER_15MIN: '100000', RUST_LOG: 'error' });
const baseline = await startHost({
  '/console': old('5bf874f', 'widget/console.html'),
  '/console.js': { html: old('5bf874f', 'widget/console.js'), headers: { 'content-type': 'text/javascript' } },
});
const email = 'bench@console.example.com', password = 'a long enough password';
await apiCall(parla, 'POST', '/api/auth/register', { email, password, name: 'Bench' });

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

/** One cold load in a fresh context: ms to interactive, and bytes on the wire. */
async function load(url, selector, session = null) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (session) await context.addInitScript((s) => localStorage.setItem('parla.console.session.v1', JSON.stringify(s)), session);
  await context.addInitScript(PROBE(selector));
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__interactive !== undefined, null, { timeout: 15_000 });
  const result = await page.evaluate(() => ({
    ms: window.__interactive,
    bytes: [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
      .filter((e) => !e.name.includes('/api/') && !e.name.includes('/ws'))
      .reduce((sum, e) => sum + e.encodedBodySize, 0),
  }));
  await context.close();
  return result;
}

async function session() {
  const s = await apiCall(parla, 'POST', '/api/auth/login', { email, password });
  return { access_token: s.access_token, refresh_token: s.refresh_token, expires_at: Date.now() + s.expires_in * 1000 };
}

const variants = {
  'old console, signed out (baseline)': () => load(`${baseline}/console`, '#sign-in'),
  'new console, signed out': () => load(`${parla}/console`, '#sign-in'),
  'new console, signed in, #bots': async () => load(`${parla}/console#bots`, '#bot-list[data-state="ready"], #bot-list[data-state="empty"]', await session()),
};
const results = Object.fromEntries(Object.keys(variants).map((k) => [k, { ms: [], bytes: [] }]));
for (let i = 0; i < RUNS; i++) {
  // Interleaved, so a noisy moment hits every variant alike.
  for (const [name, run] of Object.entries(variants)) {
    const r = await run();
    results[name].ms.push(r.ms);
    results[name].bytes.push(r.bytes);
  }
}
await browser.close();
await cleanup();

const out = { runs: RUNS, load_average_at_start: loadAtStart, load_average_at_end: loadavg().map((x) => +x.toFixed(2)), variants: {} };
for (const [name, r] of Object.entries(results)) {
  out.variants[name] = { interactive_ms: stats(r.ms), wire_bytes: stats(r.bytes).median };
}
console.log(JSON.stringify(out, null, 2));
