// Data-subject requests against a running Parla (embedded store): seeds one person with N
// widget conversations (each a message and a form giving their email) among F other
// conversations of filler, then times find, export and erase, and reads how long the store's
// compaction took from the server's log. Meanwhile a chat load may run (scripts/bench-erasure.sh).
//
//   node scripts/bench-erasure.mjs <base-url> <subject-conversations> <filler-conversations>
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const WebSocket = require('../loadtest/socketio/node_modules/ws');

const [base, N = '1000', F = '5000'] = process.argv.slice(2);
const api = async (method, path, body, token) => {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${text}`);
  return text ? (res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) : null;
};

const email = `bench-${Date.now()}@example.com`;
const password = 'a long benchmark password';
await api('POST', '/api/auth/register', { email, password, name: 'Bench' });
const { access_token: token } = await api('POST', '/api/auth/login', { email, password });
const bot = await api('POST', '/api/bots', { name: 'Erasure bench' }, token);
await api('POST', `/api/bots/${bot.id}/intents`, { name: 'contact', examples: ['please call me back'],
  response: { text: 'Leave us your details.', content: { type: 'form', form_id: 'lead', submit_label: 'Send',
    fields: [{ name: 'email', label: 'Email', input: 'email', required: true }] } } }, token);
await api('POST', `/api/bots/${bot.id}/publish`, undefined, token);

/** One widget conversation: a message, then (for the subject) the form with their email. */
function conversation(subject) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/widget/ws`);
    let step = 0;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', bot_id: bot.id })));
    ws.on('message', (raw) => {
      const f = JSON.parse(raw);
      if (f.type === 'welcome' && step === 0) {
        step = 1;
        ws.send(JSON.stringify({ type: 'message', client_msg_id: 'm1', text: `I am writing about order ${Math.random()} and my holiday plans` }));
      } else if (f.type === 'stream_end' && step === 1) {
        if (!subject) { ws.close(); resolve(); return; }
        step = 2;
        ws.send(JSON.stringify({ type: 'message', client_msg_id: 'm2', text: 'my details', form: { form_id: 'lead', values: { email: 'subject.person@example.com' } } }));
      } else if (f.type === 'message' && f.sender === 'bot' && step === 2) {
        ws.close(); resolve();
      } else if (f.type === 'error') { ws.close(); reject(new Error(JSON.stringify(f))); }
    });
    ws.on('error', reject);
  });
}

async function seed(count, subject) {
  const started = Date.now();
  for (let i = 0; i < count; i += 20) {
    await Promise.all(Array.from({ length: Math.min(20, count - i) }, () => conversation(subject)));
  }
  return (Date.now() - started) / 1000;
}

const filler = await seed(Number(F), false);
const seeded = await seed(Number(N), true);
// The shell starts a chat load now and says when to go (a file appears).
console.log('seeded');
const go = process.env.BENCH_GO;
if (go) {
  const { existsSync } = await import('node:fs');
  while (!existsSync(go)) await new Promise((r) => setTimeout(r, 100));
}
const timed = async (what, f) => { const t = performance.now(); const r = await f(); return [what, performance.now() - t, r]; };
const q = 'subject.person@example.com';
const [, findMs, found] = await timed('find', () => api('GET', `/api/data-subjects?query=${encodeURIComponent(q)}`, undefined, token));
const [, exportMs, archive] = await timed('export', () => fetch(`${base}/api/data-subjects/export`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: q }) }).then((r) => r.arrayBuffer()));
const [, eraseMs, erased] = await timed('erase', () => api('POST', '/api/data-subjects/erase', { query: q }, token));
console.log(JSON.stringify({
  seeded_filler_secs: filler, seeded_subject_secs: seeded,
  found: found.data.length, find_ms: Math.round(findMs),
  export_bytes: archive.byteLength, export_ms: Math.round(exportMs),
  erased: erased.conversations.length, erased_messages: erased.messages, failed: erased.failed.length, erase_ms: Math.round(eraseMs),
}));
