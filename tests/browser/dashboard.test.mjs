// The console's dashboard in Debian's Chromium, against the real `parla serve`: a workspace where
// visitors chatted over the widget socket and an agent resolved a conversation, then a fresh
// workspace with nothing in it. Every number the page shows is compared with what the analytics
// API answers for the same request; the charts are counted against the API's series. Run with
// the other browser tests:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Timeouts are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { GUARD, apiCall, cleanup, openBrowser, startParla } from './harness.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const SHOTS = process.env.CARGO_TARGET_DIR || '/tmp';
const DAY = 86_400_000;
const PASSWORD = 'a long enough password';

let parla = null;
before(async () => { parla = await startParla(); });
after(cleanup);

/** A JSON call to the admin API; fails the test on an error status. */
const api = (method, path, body, token) => apiCall(parla, method, path, body, token);

async function owner(email, name) {
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name });
  return (await api('POST', '/api/auth/login', { email, password: PASSWORD })).access_token;
}

/**
 * Visitors chat over the widget socket, each its own conversation, all at once: every line is
 * sent after the previous one's answer ended. Run in a page of Parla's origin (Node 20 has no
 * WebSocket). Resolves to the `welcome` frames.
 */
function visitorsChat(page, bot, scripts) {
  const url = `${parla.replace('http', 'ws')}/v1/widget/ws`;
  return page.evaluate(({ url, bot, scripts, guard }) => Promise.all(scripts.map((lines) => new Promise((resolve, reject) => {
    const s = new WebSocket(url);
    let welcome = null, i = 0, echoed = false;
    const timer = setTimeout(() => reject(new Error(`a visitor got no answer to ${JSON.stringify(lines[i])}`)), guard);
    const next = () => {
      if (i === lines.length) { clearTimeout(timer); s.close(); resolve(welcome); return; }
      s.send(JSON.stringify({ type: 'message', client_msg_id: `m${i}`, text: lines[i] }));
    };
    s.onopen = () => s.send(JSON.stringify({ type: 'hello', bot_id: bot }));
    s.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === 'welcome') { welcome = f; next(); }
      else if (f.type === 'message' && f.client_msg_id === `m${i}`) echoed = true;
      else if (f.type === 'stream_end' && echoed) { echoed = false; i++; next(); }
      else if (f.type === 'error') { clearTimeout(timer); reject(new Error(e.data)); }
    };
  }))), { url, bot, scripts, guard: GUARD });
}

// ---- what the page should show, formatted as the console formats it -----------------------------
const NONE = '\u2014';
const num = (n) => new Intl.NumberFormat('en-US').format(n);
const pct = (r) => r == null ? NONE : `${Math.round(r * 1000) / 10}%`;
function duration(ms) {
  if (ms == null) return NONE;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
const tilesFor = (o) => ({
  conversations: num(o.conversations),
  messages: num(o.messages.total),
  active_visitors: num(o.active_visitors),
  visitors_online: o.visitors_online == null ? NONE : num(o.visitors_online),
  resolution_rate: pct(o.resolution_rate),
  escalation_rate: pct(o.escalation_rate),
  avg_first_response: duration(o.avg_first_response_ms),
  avg_duration: duration(o.avg_duration_ms),
  sentiment: o.sentiment == null ? NONE : `${o.sentiment > 0 ? '+' : ''}${o.sentiment.toFixed(2)}`,
  csat: o.csat.average == null ? NONE : `${o.csat.average.toFixed(1)} / 5`,
  llm_tokens: num(o.llm_tokens.prompt + o.llm_tokens.completion),
  match_rate: pct(o.match_rate),
});

// ---- reading the page -----------------------------------------------------------------------------
const shownTiles = (page) => page.$$eval('#kpis .kpi', (els) => Object.fromEntries(els.map((e) => [e.dataset.kpi, e.querySelector('.value').textContent])));
const shownPoints = (page) => page.$$eval('#series-chart svg g.pt', (els) => els.map((g) => ({
  start: Number(g.dataset.start), conversations: Number(g.dataset.conversations), messages: Number(g.dataset.messages),
  title: g.querySelector(':scope > title')?.textContent ?? '', height: Number(g.querySelector('.bar').getAttribute('height')),
})));
const waitReady = (page, key) => page.locator(`#dashboard[data-state="ready"][data-key="${key}"]`).waitFor({ timeout: GUARD });

/**
 * Runs `change` and waits for the dashboard's next load to draw; returns the URLs of the
 * analytics requests it made, by endpoint (`overview`, `conversations`, `intents`).
 */
async function load(page, key, change) {
  const urls = {};
  const seen = (req) => {
    const m = /\/api\/analytics\/(overview|conversations|intents)\?/.exec(req.url());
    if (m) urls[m[1]] = req.url().slice(parla.length);
  };
  page.on('request', seen);
  await change();
  await waitReady(page, key);
  page.off('request', seen);
  assert.deepEqual(Object.keys(urls).sort(), ['conversations', 'intents', 'overview'], 'one load asks the three endpoints');
  return urls;
}

async function signIn(page, email) {
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#views').waitFor({ timeout: GUARD });
}

async function axe(page) {
  // Evaluated through the DevTools protocol: the console's CSP (rightly) refuses an injected
  // inline <script>, and the test must not weaken it.
  await page.evaluate(await readFile(AXE, 'utf8'));
  const result = await page.evaluate(() => window.axe.run({ include: [['#dashboard'], ['header']] }, { resultTypes: ['violations'] }));
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** Chromium reports the failed requests the test provoked on purpose as console errors. */
const unprovoked = (problems) => problems.filter((p) => !/status of 403|net::ERR_FAILED/.test(p));

// ---- the scenarios ----------------------------------------------------------------------------------
test('the dashboard shows a workspace\'s numbers as the analytics API counts them', { timeout: 120_000 }, async (t) => {
  const email = 'olga@dashboard.example.com';
  const token = await owner(email, 'Olga Owner');
  const shop = await api('POST', '/api/bots', { name: 'Shop bot', config: { fallback_message: 'Sorry, I did not get that.' } }, token);
  await api('POST', `/api/bots/${shop.id}/intents`, { name: 'hours', examples: ['when are you open'], response: { text: '9 to 5.' } }, token);
  await api('POST', `/api/bots/${shop.id}/publish`, null, token);
  const quiet = await api('POST', '/api/bots', { name: 'Quiet bot' }, token);
  await api('POST', `/api/bots/${quiet.id}/publish`, null, token);

  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 1500 } });
  await page.goto(`${parla}/console`);

  // Three visitors chat with the shop bot: intent hits and messages no intent matched.
  const unmatchedText = 'blue elephants dance quietly';
  const welcomes = await visitorsChat(page, shop.id, [
    ['when are you open', unmatchedText],
    ['when are you open', 'tell me about the weather on mars'],
    ['when are you open'],
  ]);
  assert.equal(welcomes.length, 3);

  // The owner takes one over, answers and resolves it.
  const resolvedId = welcomes[0].conversation_id;
  await api('POST', `/api/conversations/${resolvedId}/claim`, {}, token);
  await api('POST', `/api/conversations/${resolvedId}/replies`, { client_msg_id: 'r1', text: 'We open at nine.' }, token);
  await api('POST', `/api/conversations/${resolvedId}/resolve`, { resolution: 'RESOLVED' }, token);

  // Visitors online is live: wait until the closed sockets are gone, so page and test agree.
  const deadline = Date.now() + GUARD;
  while ((await api('GET', '/api/analytics/overview', null, token)).visitors_online !== 0) {
    assert.ok(Date.now() < deadline, 'the visitors\' sockets closed');
    await new Promise((r) => setTimeout(r, 100));
  }

  // Sign in through the form; the desk comes first, the Dashboard tab switches.
  await signIn(page, email);
  assert.equal(await page.isVisible('#desk'), true, 'the desk is the first view');
  assert.equal(await page.getAttribute('#tab-inbox', 'aria-current'), 'page');
  const first = await load(page, '|7d', () => page.click('#tab-dashboard'));
  assert.equal(new URL(page.url()).hash, '#dashboard');
  assert.equal(await page.isVisible('#desk'), false);
  assert.equal(await page.getAttribute('#tab-dashboard', 'aria-current'), 'page');

  // The tiles show what the API answers for the very request the page made.
  const overview = await api('GET', first.overview, null, token);
  const q = new URL(first.overview, parla).searchParams;
  assert.equal(Number(q.get('to')) - Number(q.get('from')), 7 * DAY, 'seven days');
  assert.equal(q.get('bot_id'), null, 'all bots');
  assert.equal(overview.conversations, 3);
  assert.equal(overview.resolutions.resolved, 1);
  assert.ok(overview.intents_matched >= 3 && overview.intents_unmatched >= 2, JSON.stringify(overview));
  assert.ok(overview.messages.agent >= 1, 'the agent\'s reply counts');
  assert.deepEqual(await shownTiles(page), tilesFor(overview));
  assert.equal(await page.textContent('[data-kpi="conversations"] .value'), '3');
  assert.equal(await page.textContent('[data-kpi="resolution_rate"] .value'), '33.3%');
  assert.equal(await page.textContent('[data-kpi="csat"] .value'), NONE, 'no rating yet');
  assert.equal(await page.textContent('[data-kpi="csat"] .sub'), '0 responses');

  // The time series: one group (bar, tooltip) per point of the API's series, same numbers.
  assert.match(first.conversations, /interval=day/);
  const series = await api('GET', first.conversations, null, token);
  assert.equal(series.points.length, 7);
  const points = await shownPoints(page);
  assert.equal(points.length, series.points.length, 'a bar for every point');
  assert.deepEqual(points.map(({ start, conversations, messages }) => ({ start, conversations, messages })),
    series.points.map(({ start, conversations, messages }) => ({ start, conversations, messages })));
  assert.ok(points.every((p) => p.title.includes(`${p.messages} message`)), 'each bar has a tooltip with its numbers');
  assert.equal(points.reduce((sum, p) => sum + p.conversations, 0), 3);
  assert.ok(points.every((p) => (p.height > 0) === (p.messages > 0)), 'a bar where there were messages, none elsewhere');
  const seriesLabel = await page.getAttribute('#series-chart svg', 'aria-label');
  assert.match(seriesLabel, new RegExp(`3 conversations and ${overview.messages.total} messages`));
  assert.equal(await page.getAttribute('#series-chart svg', 'role'), 'img');
  assert.equal(await page.locator('#series-chart .no-data').count(), 0);

  // By channel: a bar for web with its counts.
  const web = page.locator('#channel-chart g.bar[data-channel="web"]');
  assert.equal(await web.count(), 1);
  assert.equal(Number(await web.getAttribute('data-conversations')), series.by_channel.web.conversations);
  assert.equal(Number(await web.getAttribute('data-messages')), series.by_channel.web.messages);
  assert.match(await page.getAttribute('#channel-chart svg', 'aria-label'), /web 3 conversations/);

  // Intents with their hits; the unmatched visitor messages.
  const intents = await api('GET', first.intents, null, token);
  const hours = intents.intents.find((i) => i.intent === 'hours');
  assert.ok(hours && hours.hits >= 3, JSON.stringify(intents));
  assert.equal(await page.textContent('#intents tr[data-intent="hours"] td.hits'), num(hours.hits));
  assert.equal(await page.textContent('#intents tr[data-intent="hours"] td.confidence'), pct(hours.avg_confidence));
  const unmatched = await page.$$eval('#unmatched li[data-conversation-id] .text', (els) => els.map((e) => e.textContent));
  assert.equal(unmatched.length, intents.unmatched.length);
  assert.ok(unmatched.includes(`\u201C${unmatchedText}\u201D`), `the unmatched list shows the visitor's text: ${unmatched}`);
  assert.equal(await page.textContent('#unmatched-total'), `(${intents.unmatched_total})`);

  assert.deepEqual(await axe(page), [], 'axe finds no violations on the dashboard');
  await page.screenshot({ path: join(SHOTS, 'dashboard.png') });

  // Export CSV and JSON: downloads with the bearer token, the same range and the same totals.
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  assert.match(csv.suggestedFilename(), /^parla-analytics-.*\.csv$/);
  const csvText = await readFile(await csv.path(), 'utf8');
  assert.ok(csvText.startsWith('hour,hour_utc,bot_id,channel,conversations'), csvText.slice(0, 80));
  const [header, ...lines] = csvText.trim().split('\n');
  const column = header.split(',').indexOf('conversations');
  assert.equal(lines.reduce((sum, l) => sum + Number(l.split(',')[column]), 0), overview.conversations, 'the CSV sums to the tile');
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  assert.match(json.suggestedFilename(), /\.json$/);
  const rows = JSON.parse(await readFile(await json.path(), 'utf8'));
  assert.equal(rows.reduce((sum, r) => sum + r.conversations, 0), overview.conversations, 'the JSON sums to the tile');

  // 24 hours: by hour, 24 bars, the API's series.
  const day = await load(page, '|24h', () => page.selectOption('#dash-range', '24h'));
  assert.match(day.conversations, /interval=hour/);
  const hourly = await api('GET', day.conversations, null, token);
  assert.equal(hourly.points.length, 24);
  assert.deepEqual((await shownPoints(page)).map((p) => p.messages), hourly.points.map((p) => p.messages));
  assert.deepEqual(await shownTiles(page), tilesFor(await api('GET', day.overview, null, token)));

  // A bot without traffic: zeros, dashes, charts saying there is nothing.
  const none = await load(page, `${quiet.id}|24h`, () => page.selectOption('#dash-bot', quiet.id));
  assert.equal(new URL(none.overview, parla).searchParams.get('bot_id'), quiet.id);
  const empty = await api('GET', none.overview, null, token);
  assert.equal(empty.conversations, 0);
  const tiles = await shownTiles(page);
  assert.deepEqual(tiles, tilesFor(empty));
  assert.equal(tiles.conversations, '0');
  assert.equal(tiles.messages, '0');
  assert.equal(tiles.visitors_online, NONE, 'visitors online is the tenant\'s, not a bot\'s');
  assert.equal(tiles.resolution_rate, NONE);
  assert.ok((await shownPoints(page)).every((p) => p.messages === 0 && p.height === 0));
  assert.equal(await page.textContent('#series-chart .no-data'), 'No conversations or messages in this range.');
  assert.equal(await page.locator('#channel-chart g.bar').count(), 0);
  assert.equal(await page.textContent('#channel-chart .no-data'), 'No conversations on any channel in this range.');
  assert.match(await page.textContent('#intents tbody'), /No intent matched/);
  assert.match(await page.textContent('#unmatched'), /No unmatched visitor messages/);

  // A failing request says so: a refused one (as for a role without the right), then no network.
  await page.selectOption('#dash-bot', '');
  await waitReady(page, '|24h');
  await page.route('**/api/analytics/overview?*', (route) => route.fulfill({
    status: 403, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'forbidden', message: 'your role may not use analytics:read' } }),
  }));
  await page.click('#dash-refresh');
  await page.locator('#dashboard[data-state="error"]').waitFor({ timeout: GUARD });
  assert.equal(await page.textContent('#dash-error'),
    'Could not load the dashboard: your role may not use analytics:read (HTTP 403, forbidden).');
  await page.unroute('**/api/analytics/overview?*');
  await page.route('**/api/analytics/**', (route) => route.abort('failed'));
  await page.click('#dash-refresh');
  await page.locator('#dash-error', { hasText: 'could not be reached' }).waitFor({ timeout: GUARD });
  await page.unroute('**/api/analytics/**');
  await load(page, '|24h', () => page.click('#dash-refresh'));
  assert.equal(await page.textContent('#dash-error'), '', 'the error goes once a load works');

  // Narrow screens: the charts are drawn at the width they get, nothing overflows.
  await page.setViewportSize({ width: 400, height: 2400 });
  await page.waitForFunction(() => Number(document.querySelector('#series-chart svg').getAttribute('width')) < 400, null, { timeout: GUARD });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no horizontal scroll');
  await page.screenshot({ path: join(SHOTS, 'dashboard-narrow.png') });
  await page.setViewportSize({ width: 1280, height: 1500 });

  // An unmatched message opens its conversation in the desk.
  await load(page, '|7d', () => page.selectOption('#dash-range', '7d'));
  const item = page.locator('#unmatched li', { hasText: unmatchedText });
  const seq = await item.getAttribute('data-seq');
  await item.getByRole('button').click();
  assert.equal(new URL(page.url()).hash, '#inbox');
  await page.locator(`#thread [data-seq="${seq}"]`, { hasText: unmatchedText }).waitFor({ timeout: GUARD });
  assert.equal(await page.isVisible('#dashboard'), false);

  assert.deepEqual(unprovoked(problems), [], 'no script errors in the console');
});

test('the dashboard of a workspace with nothing yet: zeros, dashes, and charts that say so', { timeout: 60_000 }, async (t) => {
  const email = 'nina@empty.example.com';
  const token = await owner(email, 'Nina New');
  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 1300 } });
  // Straight to /console#dashboard: after signing in, the dashboard is what shows.
  await page.goto(`${parla}/console#dashboard`);
  const urls = await load(page, '|7d', () => signIn(page, email));
  assert.equal(await page.isVisible('#desk'), false);

  const overview = await api('GET', urls.overview, null, token);
  assert.equal(overview.conversations, 0);
  const tiles = await shownTiles(page);
  assert.deepEqual(tiles, tilesFor(overview));
  assert.deepEqual(tiles, {
    conversations: '0', messages: '0', active_visitors: '0', visitors_online: '0', resolution_rate: NONE,
    escalation_rate: NONE, avg_first_response: NONE, avg_duration: NONE, sentiment: NONE, csat: NONE,
    llm_tokens: '0', match_rate: NONE,
  });

  const series = await api('GET', urls.conversations, null, token);
  const points = await shownPoints(page);
  assert.equal(points.length, series.points.length, 'the chart still has its days, all empty');
  assert.ok(points.every((p) => p.conversations === 0 && p.height === 0));
  assert.match(await page.getAttribute('#series-chart svg', 'aria-label'), /0 conversations and 0 messages/);
  assert.equal(await page.textContent('#series-chart .no-data'), 'No conversations or messages in this range.');
  assert.equal(await page.textContent('#channel-chart .no-data'), 'No conversations on any channel in this range.');
  assert.match(await page.textContent('#intents tbody'), /No intent matched/);
  assert.match(await page.textContent('#unmatched'), /No unmatched visitor messages/);
  assert.deepEqual(await page.$$eval('#dash-bot option', (os) => os.map((o) => o.textContent)), ['All bots'], 'no bots yet');
  assert.equal(await page.textContent('#dash-error'), '');

  assert.deepEqual(await axe(page), [], 'axe finds no violations on the empty dashboard');
  await page.screenshot({ path: join(SHOTS, 'dashboard-empty.png') });
  assert.deepEqual(problems, [], 'no script errors in the console');
});
