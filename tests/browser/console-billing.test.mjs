// The console's plan & billing section in headless Chromium: the plan and this month's usage,
// the marketplace (a creator's public listing, found and bought: the browser is sent to Stripe
// Checkout), and selling (payouts ready, the listing's price changed). Stripe is Stripe's own
// mock (stripe-mock), Stripe's events are signed as Stripe documents (HMAC-SHA256 of
// "{t}.{body}"); the Rust tests sign them with Stripe's own library.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:net';
import { apiCall, axe, cleanup, GUARD, openBrowser, shots, startParlaWithDir } from './harness.mjs';

after(cleanup);
const PASSWORD = 'a long console password 1';
const SECRET = 'whsec_console_test';

const freePort = () => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function stripeMock() {
  const bin = process.env.PARLA_TEST_STRIPE_MOCK;
  if (!bin) return null;
  const [http, https] = [await freePort(), await freePort()];
  const child = spawn(bin, ['-http-port', String(http), '-https-port', String(https)], { stdio: 'ignore' });
  process.on('exit', () => child.kill('SIGKILL'));
  after(() => child.kill('SIGKILL'));
  const base = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + GUARD;
  for (;;) {
    try { await fetch(`${base}/v1/customers`, { headers: { authorization: 'Bearer sk_test_x' } }); return base; } catch {
      if (Date.now() > deadline) throw new Error('stripe-mock did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function signedEvent(url, event) {
  const body = JSON.stringify(event);
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
  const res = await fetch(`${url}/v1/billing/stripe/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${v1}` }, body });
  assert.equal(res.status, 200, await res.text());
}

async function owner(url, email, name) {
  await apiCall(url, 'POST', '/api/auth/register', { email, password: PASSWORD, name });
  const { access_token: token } = await apiCall(url, 'POST', '/api/auth/login', { email, password: PASSWORD });
  const me = await apiCall(url, 'GET', '/api/auth/me', undefined, token);
  return { token, me };
}

async function signIn(page, url, email, hash) {
  await page.goto(`${url}/console#${hash}`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
}

test('plan & billing: usage, a listed bot bought from the marketplace, a listing sold', { timeout: 120_000 }, async (t) => {
  const mock = await stripeMock();
  if (!mock) { t.skip('PARLA_TEST_STRIPE_MOCK is not set (scripts/stripe-mock.sh installs it)'); return; }
  const { url } = await startParlaWithDir({
    PARLA__BILLING__STRIPE_SECRET_KEY: 'sk_test_console',
    PARLA__BILLING__STRIPE_API_BASE: mock,
    PARLA__BILLING__STRIPE_WEBHOOK_SECRETS: `["${SECRET}"]`,
    PARLA__AUTH__IP_REQUESTS_PER_15MIN: '1000',
  });
  // A creator with a public listing (payouts ready, as Stripe's event says).
  const creator = await owner(url, 'cora@creator.example.com', 'Cora Creator');
  const bot = await apiCall(url, 'POST', '/api/bots', { name: 'Clinic concierge', language: 'en' }, creator.token);
  await apiCall(url, 'POST', `/api/bots/${bot.id}/publish`, undefined, creator.token);
  await apiCall(url, 'POST', '/api/marketplace/connect', {}, creator.token);
  const { account } = await apiCall(url, 'GET', '/api/marketplace/connect', undefined, creator.token);
  await signedEvent(url, {
    id: 'evt_console_account', object: 'event', type: 'account.updated', created: Math.floor(Date.now() / 1000),
    data: { object: { id: account.id, object: 'account', charges_enabled: true, payouts_enabled: true, details_submitted: true, metadata: { tenant_id: creator.me.tenant_id } } },
  });
  const listing = { public: true, description: 'Books visits and answers a clinic\u2019s patients, day and night.', prices: [{ amount: 1900, currency: 'eur', interval: 'month' }], trial_days: 7 };
  const deadline = Date.now() + GUARD;
  for (;;) {
    try { await apiCall(url, 'PUT', `/api/bots/${bot.id}/listing`, listing, creator.token); break; } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  // The buyer: the plan and its usage.
  const buyer = await owner(url, 'bea@buyer.example.com', 'Bea Buyer');
  await apiCall(url, 'POST', '/api/bots', { name: 'Front desk' }, buyer.token);
  const { page, problems } = await openBrowser(t);
  await signIn(page, url, 'bea@buyer.example.com', 'billing');
  await page.locator('#usage[data-state="ready"]').waitFor();
  assert.match(await page.textContent('#plan-title'), /Free/);
  assert.match(await page.textContent('#usage-table tr[data-limit="bots"]'), /1 of 1/);
  assert.equal(await page.isVisible('#not-enforced'), true, 'this server does not enforce limits: said so');
  await page.locator('#plans[data-state="ready"]').waitFor();
  assert.equal(await page.locator('#plans li[data-plan]').count(), 3);
  assert.equal(await page.getAttribute('#plans li[data-plan="free"]', 'aria-current'), 'true');
  assert.deepEqual(await axe(page), []);
  await shots(page, 'billing-plan');

  // The marketplace: found by a word of its description, bought through Checkout.
  await page.click('#bill-tab-marketplace');
  await page.locator('#market-list[data-state="ready"]').waitFor();
  await page.fill('#market-search input[name="q"]', 'clinic');
  await page.click('#market-go');
  const card = page.locator(`#market-list li[data-bot-id="${bot.id}"]`);
  await card.waitFor();
  assert.match(await card.textContent(), /Clinic concierge/);
  assert.match(await card.textContent(), /7/);
  assert.deepEqual(await axe(page), []);
  await shots(page, 'billing-marketplace');
  await page.route('https://checkout.stripe.com/**', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<title>Checkout</title><p>Stripe Checkout</p>' }));
  await Promise.all([page.waitForURL(/^https:\/\/checkout\.stripe\.com\//, { timeout: GUARD }), card.locator('button.subscribe').click()]);
  assert.match(page.url(), /^https:\/\/checkout\.stripe\.com\//);

  // The creator sells: payouts ready, the listing's price changed and saved.
  const seller = await openBrowser(t);
  await signIn(seller.page, url, 'cora@creator.example.com', 'billing/selling');
  await seller.page.locator('#payouts-state[data-ready="true"]').waitFor();
  const form = seller.page.locator(`#listing-${bot.id}`);
  await form.waitFor();
  assert.equal(await form.locator('input[name="public"]').isChecked(), true);
  assert.equal(await form.locator('input[name="amount"]').inputValue(), '19');
  await form.locator('input[name="amount"]').fill('24.50');
  await form.locator('button.save-listing').click();
  await form.locator('.ok:has-text("Saved")').waitFor();
  const saved = await apiCall(url, 'GET', `/api/bots/${bot.id}/listing`, undefined, creator.token);
  assert.equal(saved.prices[0].amount, 2450);
  assert.deepEqual(await axe(seller.page), []);
  await shots(seller.page, 'billing-selling');
  assert.deepEqual(problems.filter((p) => !/checkout\.stripe\.com/.test(p)), []);
  assert.deepEqual(seller.problems, []);
});
