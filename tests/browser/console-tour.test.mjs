// The console as a whole, in Debian's Chromium against the real `parla serve`: in Italian (the
// browser's language, or the one picked), by keyboard alone, and when the API fails. Run with
// the other browser tests:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Timeouts are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { apiCall, axe, cleanup, GUARD, openBrowser, SHOTS, startParla } from './harness.mjs';

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


/** The English words on the page that Italian says differently (none should be left). */
async function english(page) {
  const [en, it] = await Promise.all([words('en'), words('it')]);
  const text = (await page.locator('#app').innerText()).toLowerCase();
  const differ = (k) => en[k].toLowerCase() !== it[k].toLowerCase();
  return Object.keys(en).filter((k) => differ(k) && !en[k].includes('{') && en[k].length > 3 && text.includes(en[k].toLowerCase())).map((k) => `${k}: ${en[k]}`);
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
