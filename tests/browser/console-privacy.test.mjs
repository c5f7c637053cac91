// A person's data and the audit log in the console, in headless Chromium: an admin turns on
// masking of personal data in transcripts, finds a
// visitor's conversation by its id, downloads the export (a zip), erases it after confirming
// (the API then finds nothing), and reads the erasure in the audit log; a viewer is told these
// are for owners and admins.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { apiCall, axe, cleanup, openBrowser, shots, startParlaWithDir } from './harness.mjs';

after(cleanup);
const PASSWORD = 'a long console password 1';

test('privacy: a person found, exported, erased; the erasure in the audit log', { timeout: 120_000 }, async (t) => {
  const { url } = await startParlaWithDir({ PARLA__AUTH__IP_REQUESTS_PER_15MIN: '1000' });
  await apiCall(url, 'POST', '/api/auth/register', { email: 'olga@privacy.example.com', password: PASSWORD, name: 'Olga Owner' });
  const { access_token: token } = await apiCall(url, 'POST', '/api/auth/login', { email: 'olga@privacy.example.com', password: PASSWORD });
  const bot = await apiCall(url, 'POST', '/api/bots', { name: 'Front desk' }, token);
  await apiCall(url, 'POST', `/api/bots/${bot.id}/publish`, undefined, token);
  const opened = await apiCall(url, 'POST', '/api/conversations', { bot_id: bot.id }, token);
  const id = opened.conversation_id;
  await apiCall(url, 'POST', `/api/conversations/${id}/messages`, { client_msg_id: 'p1', text: 'please forget me' }, token);

  const { page, problems } = await openBrowser(t, { acceptDownloads: true });
  await page.goto(`${url}/console#workspace/privacy`);
  await page.fill('#email', 'olga@privacy.example.com');
  await page.fill('#password', PASSWORD);
  await page.click('#sign-in');
  // Masking: emails, phones, cards and IBANs kept out of stored transcripts.
  await page.locator('#masking-form').waitFor();
  assert.equal(await page.isChecked('#redact-transcripts'), false);
  await page.check('#redact-transcripts');
  await page.click('#save-masking');
  await page.locator('#masking-saved:has-text("Saved")').waitFor();
  const workspace = await apiCall(url, 'GET', '/api/workspace', undefined, token);
  assert.deepEqual(workspace.privacy, { redact_transcripts: true, redact_llm: false });

  // Retention: out of range is said on its field; then 30 days for conversations.
  await page.fill('#retention-conversations', '0');
  await page.click('#save-retention');
  await page.locator('#retention-conversations-error').waitFor();
  assert.equal(await page.getAttribute('#retention-conversations', 'aria-invalid'), 'true');
  await page.fill('#retention-conversations', '30');
  await page.click('#save-retention');
  await page.locator('#retention-saved:has-text("Saved")').waitFor();
  assert.deepEqual((await apiCall(url, 'GET', '/api/workspace', undefined, token)).retention,
    { conversation_days: 30, unmatched_days: null });
  assert.deepEqual(await axe(page), []);
  await shots(page, 'privacy-retention');

  await page.fill('#subject-query', id);
  await page.click('#subject-search');
  const row = page.locator(`#subject-results li[data-conversation-id="${id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /found by conversation/);
  assert.deepEqual(await axe(page), []);
  await shots(page, 'privacy-found');

  // The export: a zip download.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#subject-export')]);
  assert.equal(download.suggestedFilename(), 'data-subject.zip');
  const bytes = await readFile(await download.path());
  assert.equal(bytes.subarray(0, 2).toString(), 'PK', 'a zip archive');

  // Erased, once confirmed.
  await page.click('#subject-erase');
  await page.locator('#erase-dialog').waitFor();
  assert.deepEqual(await axe(page), []);
  await shots(page, 'privacy-erase-dialog');
  await page.click('#erase-dialog-confirm');
  await page.locator('#subject-erased').waitFor();
  assert.match(await page.textContent('#subject-erased'), /Erased 1 conversation/);
  const gone = await fetch(`${url}/api/conversations/${id}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(gone.status, 404);

  // The audit log says who erased and exported, newest first.
  await page.click('#ws-tab-audit');
  const first = page.locator('#audit-table tbody tr').first();
  await first.waitFor();
  assert.match(await first.textContent(), /POST \/api\/data-subjects\/erase/);
  assert.match(await page.textContent('#audit-table'), /POST \/api\/data-subjects\/export/);
  assert.deepEqual(await axe(page), []);
  await shots(page, 'audit-log');

  // The dashboard says what the policy is.
  await page.click('#tab-dashboard');
  await page.locator('#dash-retention').waitFor();
  assert.equal(await page.textContent('#dash-retention'), 'Kept: conversations 30 days, unmatched messages for good');
  assert.deepEqual(problems.filter((p) => !/status of 422/.test(p)), []);
});
