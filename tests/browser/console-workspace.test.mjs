// The console's workspace sections in Debian's Chromium, against the real `parla serve`: an API
// key created (its secret shown once) and used the way curl would; a colleague invited from the
// console who joins in a second browser, whose role limits what the console offers and what the
// server accepts; the LLM endpoint and token budget with their refusals on their fields; canned
// responses. Run with the other browser tests:
//   PARLA_BIN=$CARGO_TARGET_DIR/debug/parla node --test tests/browser/
// Timeouts are hang guards only, never timing assertions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiCall, axe, cleanup, mailTo, openBrowser, shots, startParlaWithDir } from './harness.mjs';

const PASSWORD = 'a long enough password';

let parla = null;
let dataDir = null;
before(async () => {
  ({ url: parla, dataDir } = await startParlaWithDir({ PARLA__AUTH__IP_REQUESTS_PER_15MIN: '1000' }));
});
after(cleanup);

const api = (method, path, body, token) => apiCall(parla, method, path, body, token);



const unprovoked = (problems) => problems.filter((p) => !/status of (400|401|403|409|422)/.test(p));

async function signIn(page, email) {
  await page.goto(`${parla}/console`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  await page.locator('#views').waitFor();
}

test('an owner runs the workspace: API key, an invited agent, the LLM endpoint and budget, canned responses', { timeout: 120_000 }, async (t) => {
  const owner = 'wendy@ws.example.com';
  await api('POST', '/api/auth/register', { email: owner, password: PASSWORD, name: 'Wendy Owner', company: 'Wendy Srl' });
  const { access_token: token } = await api('POST', '/api/auth/login', { email: owner, password: PASSWORD });
  const bot = await api('POST', '/api/bots', { name: 'Front desk' }, token);
  const { page, problems } = await openBrowser(t, { viewport: { width: 1280, height: 900 } });
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: parla });
  await signIn(page, owner);

  // API keys: the secret is shown once, works as a bearer with its scope and no other, and
  // stops working once revoked.
  await page.click('#tab-workspace');
  await page.click('#ws-tab-api-keys');
  await page.locator('#key-list[data-state="empty"]').waitFor();
  await page.click('#create-key');
  await page.locator('#name-error').waitFor(); // No name: said on the field.
  await page.fill('#name', 'CRM sync');
  await page.check('input[name="scopes"][value="bots:read"]');
  await page.click('#create-key');
  await page.locator('#new-key-value').waitFor();
  const secret = await page.textContent('#new-key-value');
  await page.click('#copy-key');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret, 'Copy puts the secret on the clipboard');
  await shots(page, 'api-key-created');
  const asKey = (method, path, body) => fetch(`${parla}${path}`, {
    method, headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
  });
  const listed = await asKey('GET', '/api/bots');
  assert.equal(listed.status, 200);
  assert.deepEqual((await listed.json()).data.map((b) => b.id), [bot.id]);
  const refused = await asKey('POST', '/api/bots', { name: 'x' });
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).error.code, 'insufficient_scope');
  await page.click('button:has-text("I have copied it")');
  assert.equal(await page.locator('#new-key-value').count(), 0, 'shown once');
  await page.click('#key-list .revoke-key');
  await page.locator('#key-list li[data-revoked="true"]').waitFor();
  assert.equal((await asKey('GET', '/api/bots')).status, 401);

  // The LLM endpoint: a URL that is not http(s) is refused on its field; the budget shows its usage.
  await page.click('#ws-tab-general');
  await page.locator('#workspace-form').waitFor();
  assert.equal(await page.inputValue('#name'), 'Wendy Srl');
  await page.check('#own-llm');
  await page.fill('#llm-base_url', 'ftp://llm.example.com/v1');
  await page.fill('#llm-model', 'gpt-4o-mini');
  await page.fill('#monthly_token_budget', '1000');
  await page.click('#save-workspace');
  await page.locator('#llm-base_url-error').waitFor();
  assert.equal(await page.getAttribute('#llm-base_url', 'aria-invalid'), 'true');
  await page.uncheck('#own-llm');
  await page.click('#save-workspace');
  await page.locator('#workspace-saved:has-text("Saved.")').waitFor();
  assert.match(await page.textContent('#token-usage'), /^0 of 1,000 tokens used in \d{4}-\d{2}/);
  const workspace = await api('GET', '/api/workspace', null, token);
  assert.equal(workspace.monthly_token_budget, 1000);
  assert.equal(workspace.llm ?? null, null);
  assert.deepEqual(await axe(page), [], 'axe: workspace');
  await shots(page, 'workspace');

  // Canned responses: one added; a second with the same shortcut is refused on its field.
  await page.click('#ws-tab-canned');
  await page.locator('#canned-list[data-state="empty"]').waitFor();
  await page.fill('#shortcut', 'thanks');
  await page.fill('#text', 'Thank you for your patience!');
  await page.click('#create-canned');
  await page.locator('#canned-list li[data-canned-id]').waitFor();
  await page.fill('#shortcut', 'thanks');
  await page.fill('#text', 'Again');
  await page.click('#create-canned');
  await page.locator('#shortcut-error').waitFor();
  assert.equal(await page.textContent('#shortcut-error'), 'Another canned response has this shortcut.');

  // Invite an agent; they join from the mailed link in a second browser.
  await page.click('#ws-tab-members');
  await page.locator('#member-list li[data-member-id]').waitFor();
  const agentEmail = 'arno@ws.example.com';
  await page.fill('#email', agentEmail);
  await page.selectOption('#role', 'agent');
  await page.click('#invite');
  await page.locator('#invitation-list li[data-invitation-id]').waitFor();
  assert.deepEqual(await axe(page), [], 'axe: members');
  await shots(page, 'members');
  const mail = await mailTo(dataDir, agentEmail, 'Join a Parla workspace');
  const link = /open (\S+)/.exec(mail.body)[1];
  const second = await openBrowser(t);
  await second.page.goto(link);
  await second.page.fill('#name', 'Arno Agent');
  await second.page.fill('#password', PASSWORD);
  await second.page.click('#accept');
  await second.page.locator('#status[data-state="connected"]').waitFor();

  // What the agent's console offers: the bot read-only, no workspace administration.
  const agentPage = second.page;
  await agentPage.click('#tab-bots');
  await agentPage.locator(`#bot-list li[data-bot-id="${bot.id}"]`).waitFor();
  assert.equal(await agentPage.locator('#new-bot').count(), 0);
  await agentPage.click('#tab-workspace');
  await agentPage.locator('#workspace-form').waitFor();
  assert.equal(await agentPage.isDisabled('#name'), true, 'the workspace is read-only');
  assert.equal(await agentPage.locator('#save-workspace').count(), 0);
  await agentPage.click('#ws-tab-members');
  await agentPage.locator('#member-list li[data-member-id]').first().waitFor();
  assert.equal(await agentPage.locator('#invite-form, .remove-member').count(), 0, 'no invitations or removals');
  await agentPage.click('#ws-tab-api-keys');
  await agentPage.locator('text=Only owners and admins manage API keys.').waitFor();
  // And the server refuses what the page does not offer.
  const { access_token: agentToken } = await api('POST', '/api/auth/login', { email: agentEmail, password: PASSWORD });
  const patch = await fetch(`${parla}/api/workspace`, {
    method: 'PATCH', headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Mine now' }),
  });
  assert.equal(patch.status, 403);

  // The owner changes the agent's role to viewer: the member list says so.
  await page.reload();
  const row = page.locator('#member-list li', { hasText: 'Arno Agent' });
  await row.waitFor();
  await row.locator('select').selectOption('viewer');
  assert.equal((await api('GET', '/api/members', null, token)).data.find((m) => m.email === agentEmail).role, 'agent', 'picking is not applying');
  await row.locator('.apply-role').click();
  await page.locator('#member-list li[data-role="viewer"]').waitFor();
  assert.equal((await api('GET', '/api/members', null, token)).data.find((m) => m.email === agentEmail).role, 'viewer');
  assert.deepEqual(unprovoked(problems), [], 'no script errors in the owner\'s console');
  assert.deepEqual(unprovoked(second.problems), [], 'no script errors in the agent\'s console');
});
