// #workspace/privacy and #workspace/audit: a person's data (find by email, phone, name or
// conversation id; export as one archive; erase everywhere, confirmed) and the audit log of who
// did what. Owners and admins only: the server refuses the others.
import { useEffect, useState } from 'preact/hooks';
import type { ApiKeyList, AuditEntry, AuditPage, Erasure, MemberList, PrivacySettings, RetentionSettings, SubjectConversationView, SubjectList, WorkspaceView } from '../api.gen';
import { read } from '../http';
import { t } from '../i18n';
import { canWrite } from '../roles';
import { api, authed, type Me } from '../session';
import { Confirm } from '../ui/dialog';
import { ResourceView, useResource } from '../ui/resource';
import { describe, fieldOf } from '../ui/form';

const when = (ms: number) => new Date(ms).toLocaleString();

export function Privacy({ me }: { me: Me }) {
  const [query, setQuery] = useState('');
  const [asked, setAsked] = useState('');
  const [found, setFound] = useState<SubjectConversationView[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [erasing, setErasing] = useState(false);
  const [erased, setErased] = useState<Erasure | null>(null);
  if (!canWrite(me.role)) return <p class="panel">{t('privacyAdminsOnly')}</p>;

  const search = async (e?: Event) => {
    e?.preventDefault();
    const q = query.trim();
    if (!q) { setError(t('subjectQueryHint')); return; }
    setBusy(true); setError(''); setErased(null);
    try {
      const list = await api<SubjectList>('GET', `/api/data-subjects?query=${encodeURIComponent(q)}`);
      setFound(list.data);
      setAsked(q);
    } catch (err) { setError(describe(err)); } finally { setBusy(false); }
  };
  const exportAll = async () => {
    setBusy(true); setError('');
    try {
      const res = await authed('/api/data-subjects/export', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: asked }),
      });
      if (!res.ok) await read(res);
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement('a');
      a.href = url;
      a.download = 'data-subject.zip';
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) { setError(describe(err)); } finally { setBusy(false); }
  };
  const erase = async () => {
    setBusy(true); setError('');
    try {
      const done = await api<Erasure>('POST', '/api/data-subjects/erase', { query: asked });
      setErased(done);
      setErasing(false);
      setFound(null);
    } catch (err) { setError(describe(err)); } finally { setBusy(false); }
  };

  return (
    <>
      <Masking />
      <form id="subject-form" class="panel" onSubmit={(e) => void search(e)} noValidate aria-labelledby="subject-title">
        <h2 id="subject-title">{t('dataSubjects')}</h2>
        <p class="hint">{t('dataSubjectsHint')}</p>
        <p class="row">
          <label for="subject-query" class="sr-only">{t('subjectQuery')}</label>
          <input id="subject-query" type="search" value={query} maxLength={254} placeholder={t('subjectQueryHint')}
            onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
          <button id="subject-search" type="submit" disabled={busy}>{t('find')}</button>
        </p>
        {error && !erasing && <p class="form-error" role="alert">{error}</p>}
        {erased && (
          <p id="subject-erased" role="status" class="ok">
            {t('subjectErased', { conversations: String(erased.conversations.length), messages: String(erased.messages) })}
            {erased.failed.length > 0 && ` ${t('subjectEraseFailed', { n: String(erased.failed.length) })}`}
          </p>
        )}
      </form>
      {found && (
        <section id="subject-results" class="panel" aria-labelledby="subject-results-title">
          <h2 id="subject-results-title">{t('subjectFound', { n: String(found.length), query: asked })}</h2>
          {found.length === 0 ? <p>{t('subjectNone')}</p> : (
            <>
              <ul class="picklist">
                {found.map((c) => (
                  <li data-conversation-id={c.id}>
                    <span><strong>{c.source}</strong> <code>{c.id}</code> <span class="muted">{t('subjectMatched', { by: c.matched.join(', ') })}</span></span>
                    <span class="muted">{t('subjectMessages', { n: String(c.messages), date: when(c.started_at) })}</span>
                  </li>
                ))}
              </ul>
              <p class="actions">
                <button id="subject-export" type="button" class="secondary" disabled={busy} onClick={() => void exportAll()}>{t('subjectExport')}</button>
                <button id="subject-erase" type="button" class="danger" disabled={busy} onClick={() => { setError(''); setErasing(true); }}>{t('subjectErase')}</button>
              </p>
            </>
          )}
        </section>
      )}
      {erasing && found && (
        <Confirm id="erase-dialog" title={t('subjectEraseTitle', { n: String(found.length) })} confirm={t('subjectEraseConfirm')} danger busy={busy} error={error}
          onConfirm={() => void erase()} onClose={() => { setErasing(false); setError(''); }}>
          <p>{t('subjectEraseBody')}</p>
        </Confirm>
      )}
    </>
  );
}

export function AuditLog({ me }: { me: Me }) {
  const [entries, setEntries] = useState<AuditEntry[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [action, setAction] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const load = async (more: boolean) => {
    setBusy(true); setError('');
    const params = new URLSearchParams({ limit: '50' });
    if (action.trim()) params.set('action', action.trim());
    if (more && next) params.set('before', next);
    try {
      const page = await api<AuditPage>('GET', `/api/audit-log?${params}`);
      setEntries(more && entries ? [...entries, ...page.data] : page.data);
      setNext(page.next_before ?? null);
    } catch (err) { setError(describe(err)); } finally { setBusy(false); }
  };
  const [names, setNames] = useState<Record<string, string>>({});
  const admin = canWrite(me.role);
  useEffect(() => {
    if (!admin) return;
    void load(false);
    // Who, by name: the members and the API keys (an entry outlives a removed member's name).
    void Promise.all([api<MemberList>('GET', '/api/members'), api<ApiKeyList>('GET', '/api/api-keys')]).then(([members, keys]) => {
      const known: Record<string, string> = {};
      for (const m of members.data) known[`account:${m.id}`] = m.name;
      for (const k of keys.data) known[`api_key:${k.id}`] = k.name;
      setNames(known);
    }, () => {});
  }, [admin]);
  if (!admin) return <p class="panel">{t('privacyAdminsOnly')}</p>;
  const who = (e: AuditEntry) => {
    const name = names[`${e.actor.kind}:${e.actor.id}`] ?? e.actor.id;
    return e.actor.kind === 'account' ? t('auditMember', { id: name }) : t('auditKey', { id: name });
  };
  return (
    <section class="panel" aria-labelledby="audit-title">
      <h2 id="audit-title">{t('auditLog')}</h2>
      <p class="hint">{t('auditHint')}</p>
      <form class="row" onSubmit={(e) => { e.preventDefault(); void load(false); }}>
        <label for="audit-action" class="sr-only">{t('auditAction')}</label>
        <input id="audit-action" type="search" value={action} maxLength={200} placeholder={t('auditActionHint')}
          onInput={(e) => setAction((e.target as HTMLInputElement).value)} />
        <button id="audit-filter" type="submit" class="secondary" disabled={busy}>{t('filter')}</button>
      </form>
      {error && <p class="form-error" role="alert">{error}</p>}
      {entries && entries.length === 0 && <p>{t('auditNone')}</p>}
      {entries && entries.length > 0 && (
        <div class="table-scroll">
          <table id="audit-table" class="audit">
            <thead><tr><th>{t('auditWhen')}</th><th>{t('auditWho')}</th><th>{t('auditAction')}</th><th>{t('auditTarget')}</th><th>{t('auditFrom')}</th></tr></thead>
            <tbody>
              {entries.map((e) => (
                <tr data-audit-id={e.id}>
                  <td data-label={t('auditWhen')}>{when(e.at)}</td>
                  <td data-label={t('auditWho')}>{who(e)}</td>
                  <td data-label={t('auditAction')}><code>{e.action}</code></td>
                  <td data-label={t('auditTarget')}><code>{e.target}</code></td>
                  <td data-label={t('auditFrom')}>{e.ip ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && <p><button id="audit-more" type="button" class="secondary" disabled={busy} onClick={() => void load(true)}>{t('loadMore')}</button></p>}
    </section>
  );
}

/** Where the workspace masks emails, phones, cards and IBANs visitors write. */
function Masking() {
  const res = useResource(() => api<WorkspaceView>('GET', '/api/workspace'), []);
  return (
    <ResourceView res={res} id="masking">
      {(w) => (
        <>
          <MaskingForm key={w.id} current={w.privacy} onSaved={res.set} />
          <RetentionForm key={`r-${w.id}`} current={w.retention} onSaved={res.set} />
        </>
      )}
    </ResourceView>
  );
}

function MaskingForm({ current, onSaved }: { current: PrivacySettings; onSaved: (w: WorkspaceView) => void }) {
  const [settings, setSettings] = useState<PrivacySettings>(current);
  const [state, setState] = useState<'' | 'busy' | 'saved'>('');
  const [error, setError] = useState('');
  const save = async (e: Event) => {
    e.preventDefault();
    setState('busy'); setError('');
    try { onSaved(await api<WorkspaceView>('PATCH', '/api/workspace', { privacy: settings })); setState('saved'); } catch (err) { setError(describe(err)); setState(''); }
  };
  const toggle = (key: keyof PrivacySettings) => (e: Event) => { setSettings({ ...settings, [key]: (e.target as HTMLInputElement).checked }); setState(''); };
  return (
    <form id="masking-form" class="panel" onSubmit={(e) => void save(e)} aria-labelledby="masking-title">
      <h2 id="masking-title">{t('masking')}</h2>
      <p class="hint">{t('maskingHint')}</p>
      <label class="check"><input id="redact-transcripts" type="checkbox" checked={settings.redact_transcripts} onChange={toggle('redact_transcripts')} /> {t('redactTranscripts')}</label>
      <label class="check"><input id="redact-llm" type="checkbox" checked={settings.redact_llm} onChange={toggle('redact_llm')} /> {t('redactLlm')}</label>
      {error && <p class="form-error" role="alert">{error}</p>}
      <p class="actions">
        <button id="save-masking" type="submit" disabled={state === 'busy'}>{t('save')}</button>
        <span id="masking-saved" role="status" class="ok">{state === 'saved' ? t('saved_') : ''}</span>
      </p>
    </form>
  );
}

/** How long conversations and unmatched messages are kept: a number of days, or empty for good. */
function RetentionForm({ current, onSaved }: { current: RetentionSettings; onSaved: (w: WorkspaceView) => void }) {
  const text = (days: number | null | undefined) => (days == null ? '' : String(days));
  const [conversations, setConversations] = useState(text(current.conversation_days));
  const [unmatched, setUnmatched] = useState(text(current.unmatched_days));
  const [state, setState] = useState<'' | 'busy' | 'saved'>('');
  const [error, setError] = useState<{ field: string; text: string } | null>(null);
  const days = (value: string) => (value.trim() === '' ? null : Number(value));
  const save = async (e: Event) => {
    e.preventDefault();
    setState('busy'); setError(null);
    const retention = { conversation_days: days(conversations), unmatched_days: days(unmatched) };
    try {
      onSaved(await api<WorkspaceView>('PATCH', '/api/workspace', { retention }));
      setState('saved');
    } catch (err) {
      const field = fieldOf(err, ['retention.conversation_days', 'retention.unmatched_days']) ?? '';
      setError({ field, text: describe(err) });
      setState('');
    }
  };
  const field = (id: string, name: string, label: string, value: string, set: (v: string) => void) => {
    const wrong = error?.field === name;
    return (
      <div class="field">
        <label for={id}>{label}</label>
        <input id={id} name={name} type="number" min={1} max={36500} inputMode="numeric" value={value}
          placeholder={t('keepForGood')} aria-invalid={wrong ? 'true' : undefined} aria-describedby={wrong ? `${id}-error` : undefined}
          onInput={(e) => { set((e.target as HTMLInputElement).value); setState(''); }} />
        {wrong && <p id={`${id}-error`} class="field-error">{error?.text}</p>}
      </div>
    );
  };
  return (
    <form id="retention-form" class="panel" onSubmit={(e) => void save(e)} noValidate aria-labelledby="retention-title">
      <h2 id="retention-title">{t('retention')}</h2>
      <p class="hint">{t('retentionHint')}</p>
      {field('retention-conversations', 'retention.conversation_days', t('retentionConversations'), conversations, setConversations)}
      {field('retention-unmatched', 'retention.unmatched_days', t('retentionUnmatched'), unmatched, setUnmatched)}
      {error && !error.field.startsWith('retention.') && <p class="form-error" role="alert">{error.text}</p>}
      <p class="actions">
        <button id="save-retention" type="submit" disabled={state === 'busy'}>{t('save')}</button>
        <span id="retention-saved" role="status" class="ok">{state === 'saved' ? t('saved_') : ''}</span>
      </p>
    </form>
  );
}

