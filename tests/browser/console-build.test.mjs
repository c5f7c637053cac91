// The console's bot sections in Debian's Chromium, against the real `parla serve`, as a new
// tenant uses them: create a bot (a refusal shown on its field), set how it speaks, teach it an
// intent from pasted phrases with a rich answer the widget itself previews, feed it a TXT and a
// PDF and watch them processed, publish it, turn what visitors wrote unmatched into a training
// phrase, and delete it. Then what a colleague with the agent role may and may not touch.
// Run with the other browser tests:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Timeouts are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { apiCall, axe, cleanup, GUARD, mailTo, message, openBrowser, shots, startHost, startParlaWithDir } from './harness.mjs';

const PASSWORD = 'a long enough password';

let parla = null;
let dataDir = null;
/** WhatsApp's Graph API as it answers a revoked access token. */
let graph = null;
before(async () => {
  graph = createServer((req, res) => {
    req.resume();
    res.writeHead(401, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: { message: 'Error validating access token: Session has expired.', type: 'OAuthException', code: 190 } }));
  });
  await new Promise((r) => graph.listen(0, '127.0.0.1', r));
  ({ url: parla, dataDir } = await startParlaWithDir({
    PARLA__CHANNELS__WHATSAPP_API_BASE: `http://127.0.0.1:${graph.address().port}/v21.0`,
    PARLA__AUTH__IP_REQUESTS_PER_15MIN: '1000',
    // The hashing embedder: the sentence model in a debug build takes seconds per document.
    PARLA__EMBEDDINGS__LOCAL_MODEL: '',
  }));
});
after(async () => { graph?.close(); await cleanup(); });

const api = (method, path, body, token) => apiCall(parla, method, path, body, token);



const unprovoked = (problems) => problems.filter((p) => !/status of (400|401|403|409|415|422)/.test(p));

/** A one-page PDF 1.4 with `text` (Helvetica, uncompressed, a correct xref), as tests/integration builds one. */
function pdf(text) {
  const content = `BT /F1 12 Tf 72 720 Td (${text}) Tj ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => { offsets.push(out.length); out += `${i + 1} 0 obj\n${o}\nendobj\n`; });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** A visitor's conversation over the widget socket, run in a page of Parla's origin: the answers' texts. */
function chat(page, bot, lines) {
  const url = `${parla.replace('http', 'ws')}/v1/widget/ws`;
  return page.evaluate(({ url, bot, lines, guard }) => new Promise((resolve, reject) => {
    const s = new WebSocket(url);
    const answers = [];
    let i = 0;
    const timer = setTimeout(() => reject(new Error(`no answer to ${lines[i]}`)), guard);
    const next = () => {
      if (i === lines.length) { clearTimeout(timer); s.close(); resolve(answers); return; }
      s.send(JSON.stringify({ type: 'message', client_msg_id: `m${i}`, text: lines[i] }));
    };
    s.onopen = () => s.send(JSON.stringify({ type: 'hello', bot_id: bot }));
    s.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === 'welcome') next();
      else if (f.type === 'stream_end') { answers.push(f.text); i++; next(); }
      else if (f.type === 'error') { clearTimeout(timer); reject(new Error(e.data)); }
    };
  }), { url, bot, lines, guard: GUARD });
}

test('a new tenant builds, teaches, feeds, publishes and deletes a bot in the console', { timeout: 180_000 }, async (t) => {
  const email = 'bea@build.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Bea Builder' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 900 } });
  await page.goto(`${parla}/console`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');

  // A workspace without bots lands on its (empty) list of bots.
  await page.locator('#bot-list[data-state="empty"]').waitFor();
  assert.equal(new URL(page.url()).hash, '#bots');
  assert.equal(await page.getAttribute('#tab-bots', 'aria-current'), 'page');
  await shots(page, 'bots-empty');

  // Create: a language the API refuses is said on the language field.
  await page.click('#new-bot');
  await page.locator('#new-bot-form').waitFor();
  await page.fill('#name', 'Spa bot');
  await page.fill('#description', 'Answers about the spa.');
  await page.fill('#language', 'not a tag!');
  await page.click('#create-bot');
  await page.locator('#language-error').waitFor();
  assert.equal(await page.getAttribute('#language', 'aria-invalid'), 'true');
  assert.deepEqual(await axe(page), [], 'axe: new bot with a field in error');
  await shots(page, 'bot-new-error');
  await page.fill('#language', 'en');
  await page.click('#create-bot');
  await page.locator('#bot-settings').waitFor();
  const botId = /#bots\/([^/]+)$/.exec(page.url())?.[1];
  assert.ok(botId, page.url());
  assert.equal(await page.getAttribute('#bot-status', 'data-status'), 'DRAFT');

  // Settings: the welcome and fallback messages.
  await page.fill('#config-welcome_message', 'Welcome to the spa!');
  await page.fill('#config-fallback_message', 'I do not know that yet.');
  await page.click('#save-bot');
  await page.locator('#bot-saved:has-text("Saved.")').waitFor();
  const saved = await api('GET', `/api/bots/${botId}`, null, token);
  assert.equal(saved.config.welcome_message, 'Welcome to the spa!');
  assert.equal(saved.config.fallback_message, 'I do not know that yet.');
  assert.deepEqual(await axe(page), [], 'axe: settings');
  await shots(page, 'bot-settings');

  // An intent: three phrases pasted at once (a duplicate dropped), an answer with a card the
  // widget previews, and a refusal on the card's button link.
  await page.click('#bot-tab-intents');
  await page.locator('#intent-list[data-state="empty"]').waitFor();
  await page.click('#new-intent');
  await page.locator('#intent-form').waitFor();
  await page.fill('#name', 'hours');
  await page.click('summary');
  await page.fill('#bulk', 'when do you open\nopening hours\n  when are you open  \nOpening hours\n');
  await page.click('#add-bulk');
  assert.equal(await page.textContent('#bulk-note'), '3 phrases added.');
  assert.deepEqual(await page.$$eval('#phrases li span', (s) => s.map((x) => x.textContent)), ['when do you open', 'opening hours', 'when are you open']);
  await page.fill('#response-text', 'We open at 9 and close at 18.');
  await page.selectOption('#response-content', 'card');
  await page.fill('#response-content-title', 'Opening hours');
  await page.fill('#response-content-subtitle', 'Every day');
  // The preview is the widget's panel: the visitor's phrase, then the answer with its card.
  const preview = page.locator('#intent-preview');
  await preview.getByText('Opening hours', { exact: true }).waitFor();
  await preview.getByText('We open at 9 and close at 18.').waitFor();
  await preview.getByText('when do you open').waitFor();
  await page.click('button:has-text("Add a button")');
  await page.fill('#response-content-buttons-0-label', 'Book');
  await page.fill('#response-content-buttons-0-url', 'javascript:alert(1)');
  await page.click('#save-intent');
  await page.locator('#response-content-buttons-0-url-error').waitFor();
  assert.equal(await page.getAttribute('#response-content-buttons-0-url', 'aria-invalid'), 'true');
  await page.fill('#response-content-buttons-0-url', 'https://spa.example.com/book');
  await page.click('#save-intent');
  await page.waitForURL(/#bots\/[^/]+\/intents\/[^/]+$/);
  await page.locator('#intent-saved:has-text("Saved.")').waitFor();
  await page.locator('#intent-list li[data-intent-id]').waitFor();
  const intents = (await api('GET', `/api/bots/${botId}/intents`, null, token)).data;
  assert.equal(intents.length, 1);
  assert.deepEqual(intents[0].examples, ['when do you open', 'opening hours', 'when are you open']);
  assert.deepEqual(intents[0].response.content, {
    type: 'card', title: 'Opening hours', subtitle: 'Every day', buttons: [{ label: 'Book', url: 'https://spa.example.com/book' }],
  });
  assert.deepEqual(await axe(page), [], 'axe: intent editor');
  await shots(page, 'intent-editor');

  // Knowledge: a TXT dropped on the zone, a PDF picked; both processed. A file of a kind Parla
  // does not read is refused with the reason.
  await page.click('#bot-tab-knowledge');
  await page.locator('#documents[data-state="empty"]').waitFor();
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['The sauna is open from 10 to 20. Towels are included with every visit.'], 'spa.txt', { type: 'text/plain' }));
    document.querySelector('#drop-zone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await page.setInputFiles('#file-input', [
    { name: 'rooms.pdf', mimeType: 'application/pdf', buffer: pdf('Every room has a balcony facing the lake.') },
    { name: 'tool.exe', mimeType: 'application/octet-stream', buffer: Buffer.from('MZ not a document') },
  ]);
  await page.locator('#uploads li[data-state="failed"]').waitFor();
  assert.match(await page.textContent('#uploads li[data-state="failed"]'), /tool\.exe/);
  await page.locator('#documents li[data-status="COMPLETED"] >> nth=1').waitFor({ timeout: 60_000 });
  const docs = await page.$$eval('#documents li', (lis) => lis.map((li) => [li.querySelector('.name').textContent, li.dataset.status]));
  assert.deepEqual(docs.map(([n]) => n).sort(), ['rooms.pdf', 'spa.txt']);
  assert.ok(docs.every(([, s]) => s === 'COMPLETED'), JSON.stringify(docs));
  assert.deepEqual(await axe(page), [], 'axe: knowledge');
  await shots(page, 'knowledge');
  // Process one again (it goes back through the queue and comes back ready), delete the other.
  const txt = page.locator('#documents li', { hasText: 'spa.txt' });
  const reprocessed = page.waitForResponse((r) => r.url().includes('/reprocess') && r.request().method() === 'POST');
  await txt.locator('.reprocess-doc').click();
  assert.equal((await reprocessed).status(), 202);
  await page.locator('#documents li[data-status="COMPLETED"] >> nth=1').waitFor({ timeout: 60_000 });
  await page.locator('#documents li', { hasText: 'rooms.pdf' }).locator('.delete-doc').click();
  await page.locator('#delete-doc-dialog[open]').waitFor();
  assert.match(await page.textContent('#delete-doc-dialog-title'), /rooms\.pdf/);
  await page.click('#delete-doc-dialog-confirm');
  await page.locator('#documents li', { hasText: 'rooms.pdf' }).waitFor({ state: 'detached' });
  assert.deepEqual((await api('GET', `/api/bots/${botId}/documents`, null, token)).data.map((d) => d.title), ['spa.txt']);

  // Try it, while the bot is still a draft: the real widget, each answer traced to what made it.
  await page.click('#bot-tab-try');
  await page.locator('#try-chat #input').waitFor();
  await page.locator('#try-chat #status[data-state="connected"]').waitFor();
  await page.fill('#try-chat #input', 'when are you open');
  await page.click('#try-chat #send');
  const byIntent = page.locator('#try-trace li[data-intent="hours"]');
  await byIntent.waitFor();
  assert.ok(Number(await byIntent.getAttribute('data-confidence')) > 0);
  assert.match(await byIntent.textContent(), /Intent hours · \d+ %/);
  await page.fill('#try-chat #input', 'are towels included with a visit');
  await page.click('#try-chat #send');
  const byDoc = page.locator('#try-trace li[data-sources*="spa.txt"]');
  await byDoc.waitFor();
  assert.match(await byDoc.textContent(), /Towels are included/);
  assert.match(await byDoc.textContent(), /From spa\.txt/);
  assert.deepEqual(await axe(page), [], 'axe: try it');
  await shots(page, 'try-it');
  const previews = async () => (await api('GET', `/api/bots/${botId}/conversations`, null, token)).data.filter((c) => c.source === 'preview').length;
  const settle = async (n) => {
    const until = Date.now() + GUARD;
    while ((await previews()) !== n) { assert.ok(Date.now() < until, `${n} test chats kept`); await new Promise((r) => setTimeout(r, 100)); }
  };
  await page.click('#restart-chat');
  await page.locator('#try-trace li').first().waitFor({ state: 'detached' });
  await page.locator('#try-chat #status[data-state="connected"]').waitFor();
  await settle(1); // Restart deleted the old test chat and opened one.
  const tried = await api('GET', '/api/analytics/overview', null, token);
  assert.equal(tried.conversations, 0, 'a test chat counts in no statistics');
  await page.click('#bot-tab-settings');
  await settle(0); // Leaving the pane deletes it.

  // Publish; a visitor asks what the intent answers and something nothing answers.
  await page.click('#publish-bot');
  await page.locator('#bot-status[data-status="ACTIVE"]').waitFor();
  const answers = await chat(page, botId, ['when are you open', 'is there parking for bicycles']);
  assert.equal(answers[0], 'We open at 9 and close at 18.');

  // The unmatched message becomes a training phrase of the intent.
  await page.click('#bot-tab-intents');
  const unmatched = page.locator('#unmatched-list li', { hasText: 'is there parking for bicycles' });
  await unmatched.waitFor();
  await shots(page, 'intents');
  await unmatched.locator('.add-phrase').click();
  await unmatched.waitFor({ state: 'detached' });
  const after = (await api('GET', `/api/bots/${botId}/intents`, null, token)).data[0];
  assert.deepEqual(after.examples.at(-1), 'is there parking for bicycles');

  // Pause, then delete behind a confirmation that names the bot; Escape cancels it first.
  await page.click('#pause-bot');
  await page.locator('#bot-status[data-status="PAUSED"]').waitFor();
  await page.click('#delete-bot');
  await page.locator('#delete-dialog[open]').waitFor();
  assert.match(await page.textContent('#delete-dialog-title'), /Spa bot/);
  await page.keyboard.press('Escape');
  await page.locator('#delete-dialog').waitFor({ state: 'detached' });
  // Focus returns to the button (the page may redraw it meanwhile: waited for, bounded).
  await page.waitForFunction(() => document.activeElement?.id === 'delete-bot', null, { timeout: GUARD });
  await page.click('#delete-bot');
  await page.click('#delete-dialog-confirm');
  await page.locator('#bot-list[data-state="empty"]').waitFor();
  const left = await fetch(`${parla}/api/bots/${botId}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(left.status, 404);
  assert.deepEqual(unprovoked(problems), [], 'no script errors in the console');
});

test('a colleague with the agent role sees the bots but cannot change them', { timeout: 60_000 }, async (t) => {
  const owner = 'oli@build.example.com';
  await api('POST', '/api/auth/register', { email: owner, password: PASSWORD, name: 'Oli Owner' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email: owner, password: PASSWORD });
  const bot = await api('POST', '/api/bots', { name: 'Shared bot' }, token);
  const intent = await api('POST', `/api/bots/${bot.id}/intents`, { name: 'hello', examples: ['hi'], response: { text: 'Hello!' } }, token);
  const agent = 'amy@build.example.com';
  await api('POST', '/api/members/invitations', { email: agent, role: 'agent' }, token);
  const mail = await mailTo(dataDir, agent, 'Join a Parla workspace');
  const invite = /token=(\S+)/.exec(mail.body)[1];
  await api('POST', '/api/auth/accept-invitation', { token: invite, name: 'Amy Agent', password: PASSWORD });

  const { page, problems } = await openBrowser(t);
  await page.goto(`${parla}/console`);
  await page.fill('#email', agent);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#status[data-state="connected"]').waitFor();
  assert.equal(new URL(page.url()).hash, '#inbox', 'an agent lands on the inbox');
  await page.click('#tab-bots');
  await page.locator(`#bot-list li[data-bot-id="${bot.id}"]`).waitFor();
  assert.equal(await page.locator('#new-bot').count(), 0, 'no New bot');
  await page.click(`#bot-list a[href="#bots/${bot.id}"]`);
  await page.locator('#bot-settings').waitFor();
  assert.equal(await page.locator('#publish-bot, #delete-bot, #save-bot').count(), 0, 'no publish, delete or save');
  assert.equal(await page.isDisabled('#name'), true, 'the settings are read-only');
  await page.click('#bot-tab-intents');
  await page.locator('#intent-list li[data-intent-id]').waitFor();
  assert.equal(await page.locator('#new-intent').count(), 0);
  await page.click(`#intent-list a[href$="/${intent.id}"]`);
  await page.locator('#intent-form').waitFor();
  assert.equal(await page.locator('#save-intent, #delete-intent, #add-phrase').count(), 0);
  assert.equal(await page.isDisabled('#response-text'), true);
  await shots(page, 'intent-read-only');
  // The server refuses what the page does not offer.
  const { access_token: agentToken } = await api('POST', '/api/auth/login', { email: agent, password: PASSWORD });
  const refused = await fetch(`${parla}/api/bots/${bot.id}`, {
    method: 'PATCH', headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Mine' }),
  });
  assert.equal(refused.status, 403);
  assert.deepEqual(unprovoked(problems), []);
});

const htmlPage = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body><h1>A shop</h1>${body}</body></html>`;

test('appearance previewed live, the snippet copied and pasted on an allowed site, and a WhatsApp number connected', { timeout: 120_000 }, async (t) => {
  const email = 'cleo@build.example.com';
  await api('POST', '/api/auth/register', { email, password: PASSWORD, name: 'Cleo Colour' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email, password: PASSWORD });
  const bot = await api('POST', '/api/bots', { name: 'Shop bot', config: { welcome_message: 'Hi from the shop!' } }, token);
  await api('POST', `/api/bots/${bot.id}/intents`, { name: 'hello', examples: ['hello there'], response: { text: 'Hello, shopper!' } }, token);
  await api('POST', `/api/bots/${bot.id}/publish`, null, token);
  const pages = {};
  const shop = await startHost(pages);
  const elsewhere = await startHost(pages);

  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 900 } });
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: parla });
  await page.goto(`${parla}/console`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#views').waitFor();
  await page.goto(`${parla}/console#bots/${bot.id}/appearance`);
  await page.locator('#appearance-form').waitFor();

  // The preview is the widget itself, and follows the colour as it is typed.
  await page.locator('#appearance-preview').getByText('Hi from the shop!').waitFor();
  await page.fill('#appearance-color', '#e8590c');
  await page.fill('#appearance-title', 'Shop help');
  await page.locator('#appearance-preview #title', { hasText: 'Shop help' }).waitFor();
  const headColor = () => page.locator('#appearance-preview .head').evaluate((el) => getComputedStyle(el).backgroundColor);
  const deadline = Date.now() + GUARD;
  while ((await headColor()) !== 'rgb(232, 89, 12)' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await headColor(), 'rgb(232, 89, 12)', 'the preview wears the new colour');

  // A path is not an origin: refused on the field. Then only the shop may show the chat.
  await page.fill('#integration-allowed_origins', `${shop}/path`);
  await page.click('#save-appearance');
  await page.locator('#integration-allowed_origins-error').waitFor();
  await page.fill('#integration-allowed_origins', shop);
  await page.click('#save-appearance');
  await page.locator('#appearance-saved:not(:empty)').waitFor();
  const saved = await api('GET', `/api/bots/${bot.id}`, null, token);
  assert.equal(saved.appearance.color, '#e8590c');
  assert.deepEqual(saved.integration.allowed_origins, [shop]);
  assert.deepEqual(await axe(page), [], 'axe: appearance');
  await shots(page, 'appearance');

  // The snippet, copied, pasted on the shop's page: the chat shows there in its colour and answers.
  await page.click('#copy-snippet');
  const snippet = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(snippet, await page.textContent('#snippet'));
  assert.equal(snippet, `<script src="${parla}/widget.js" data-bot="${bot.id}" async></script>`);
  pages['/shop.html'] = htmlPage(snippet);
  const visitor = await openBrowser(t);
  await visitor.page.goto(`${shop}/shop.html`);
  await visitor.page.locator('#launcher').click();
  await visitor.page.locator('#status[data-state="connected"]').waitFor();
  await visitor.page.fill('#input', 'hello there');
  await visitor.page.click('#send');
  const answer = await message(visitor.page, 3);
  assert.equal(answer.text, 'Hello, shopper!');
  // Another site with the same snippet gets no chat at all.
  const stranger = await openBrowser(t);
  await stranger.page.goto(`${elsewhere}/shop.html`);
  await stranger.page.waitForLoadState('networkidle');
  assert.equal(await stranger.page.locator('#launcher').count(), 0, 'no widget on a site not allowed');

  // Channels: WhatsApp, with where each value comes from; a bad value refused on its field;
  // once connected, the webhook URL to paste in Meta's console.
  await page.click('#bot-tab-channels');
  await page.locator('#channel-list[data-state="empty"]').waitFor();
  await page.click('#add-whatsapp');
  await page.locator('#channel-form-whatsapp').waitFor();
  assert.match(await page.textContent('#phone_number_id-hint'), /API setup/);
  await page.fill('#phone_number_id', 'not digits');
  await page.fill('#access_token', 'EAAG-test-token-0000');
  await page.fill('#app_secret', 'app-secret-1234');
  await page.fill('#verify_token', 'my verify token');
  await page.click('#connect-channel');
  await page.locator('#phone_number_id-error').waitFor();
  await page.fill('#phone_number_id', '1234567890');
  await page.click('#connect-channel');
  await page.locator('#channel-list li[data-kind="whatsapp"]').waitFor();
  const hook = await page.textContent('#channel-list .webhook-url');
  assert.match(hook, new RegExp(`^${parla}/`), 'the webhook URL is on this server');
  assert.match(await page.textContent('#channel-list li[data-kind="whatsapp"]'), /…1234/, 'the secret only by its last characters');

  // A customer writes on WhatsApp (a webhook signed with the app secret): the connection shows
  // it came in, and — Meta refusing the token — the answer's delivery error, with no secret in it.
  const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: {
    messaging_product: 'whatsapp', metadata: { display_phone_number: '15550001111', phone_number_id: '1234567890' },
    contacts: [{ profile: { name: 'Kim' }, wa_id: '15551234567' }],
    messages: [{ from: '15551234567', id: 'wamid.console1', timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'hello there' } }],
  } }] }] });
  const signed = await fetch(`${hook}`, {
    method: 'POST', body,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${createHmac('sha256', 'app-secret-1234').update(body).digest('hex')}` },
  });
  assert.equal(signed.status, 200);
  const errorShown = Date.now() + GUARD;
  while (await page.locator('#channel-list .channel-error').count() === 0) {
    assert.ok(Date.now() < errorShown, 'the delivery error shows');
    await page.click('#bot-tab-settings');
    await page.click('#bot-tab-channels');
    await page.locator('#channel-list li[data-kind="whatsapp"]').waitFor();
  }
  assert.match(await page.textContent('#channel-list .channel-health'), /last message in/);
  const shown = await page.textContent('#channel-list .channel-error');
  assert.match(shown, /Last error/);
  assert.doesNotMatch(shown, /EAAG-test-token|app-secret-1234/, 'no secret in the error');
  assert.deepEqual(await axe(page), [], 'axe: channels');
  await shots(page, 'channels');
  assert.deepEqual(unprovoked(problems), []);
});
