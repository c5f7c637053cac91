// #workspace[/members|/api-keys|/canned]: the workspace — its name, LLM endpoint and token
// budget; its members and invitations; its API keys; its canned responses; a person's data
// (#workspace/privacy) and the audit log (#workspace/audit).
import { useState } from 'preact/hooks';
import type { ApiKeyList, CannedList, CannedResponse, CreatedApiKey, InvitationList, MemberList, Role, WorkspaceBody, WorkspaceView } from '../api.gen';
import { t } from '../i18n';
import { canWrite } from '../roles';
import { api, type Me } from '../session';
import { CopyButton } from '../ui/copy';
import { Confirm } from '../ui/dialog';
import { Field, describe, useForm } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';
import { AuditLog, Privacy } from './Privacy';

const SECTIONS = [
  { path: '', word: 'general' },
  { path: 'members', word: 'members' },
  { path: 'api-keys', word: 'apiKeys' },
  { path: 'canned', word: 'canned' },
  { path: 'privacy', word: 'privacy' },
  { path: 'audit', word: 'auditLog' },
] as const;
const SCOPES = ['bots:read', 'bots:write', 'conversations:read', 'conversations:write', 'analytics:read'];
const ROLES: Role[] = ['owner', 'admin', 'agent', 'viewer'];
const fmt = (n: number) => new Intl.NumberFormat().format(n);
const when = (ms: number) => new Date(ms).toLocaleDateString();

export function Workspace({ me, section }: { me: Me; section: string }) {
  return (
    <main class="page" aria-labelledby="workspace-title">
      <h1 id="workspace-title">{t('workspace')}</h1>
      <nav class="tabs" aria-label={t('workspaceSections')}>
        {SECTIONS.map((s) => (
          <a id={`ws-tab-${s.path || 'general'}`} href={`#workspace${s.path ? `/${s.path}` : ''}`} aria-current={section === s.path ? 'page' : undefined}>{t(s.word)}</a>
        ))}
      </nav>
      {section === '' && <General me={me} />}
      {section === 'members' && <Members me={me} />}
      {section === 'api-keys' && <ApiKeys me={me} />}
      {section === 'canned' && <Canned me={me} />}
      {section === 'privacy' && <Privacy me={me} />}
      {section === 'audit' && <AuditLog me={me} />}
    </main>
  );
}

function General({ me }: { me: Me }) {
  const res = useResource(() => api<WorkspaceView>('GET', '/api/workspace'), []);
  return (
    <ResourceView res={res} id="workspace-general">
      {(w) => <GeneralForm key={w.id} workspace={w} admin={canWrite(me.role)} onSaved={res.set} />}
    </ResourceView>
  );
}

function GeneralForm({ workspace, admin, onSaved }: { workspace: WorkspaceView; admin: boolean; onSaved: (w: WorkspaceView) => void }) {
  const form = useForm(['name', 'llm.base_url', 'llm.model', 'llm.api_key', 'monthly_token_budget']);
  const [own, setOwn] = useState(workspace.llm != null);
  const [saved, setSaved] = useState(false);
  const submit = form.submit(async () => {
    setSaved(false);
    const data = new FormData(form.ref.current!);
    const text = (k: string) => String(data.get(k) ?? '').trim();
    const budget = text('monthly_token_budget');
    const body: WorkspaceBody = { name: text('name'), monthly_token_budget: budget === '' ? null : Number(budget) };
    if (!own) body.llm = null;
    else {
      const key = String(data.get('llm.api_key') ?? '');
      body.llm = { base_url: text('llm.base_url'), model: text('llm.model'), ...(key || data.get('clear_key') ? { api_key: key } : {}) };
    }
    onSaved(await api<WorkspaceView>('PATCH', '/api/workspace', body));
    setSaved(true);
  });
  const budget = workspace.monthly_token_budget;
  return (
    <form id="workspace-form" class="panel" ref={form.ref} onSubmit={submit} onInput={() => setSaved(false)} noValidate>
      <fieldset disabled={!admin}>
        <Field form={form} name="name" label={t('workspaceName')}>
          {(p) => <input {...p} defaultValue={workspace.name} required maxLength={200} />}
        </Field>
        <fieldset class="rich">
          <legend>{t('llm')}</legend>
          <p class="hint">{t('llmHint')}</p>
          <label class="check"><input id="own-llm" type="checkbox" checked={own} onChange={(e) => setOwn((e.target as HTMLInputElement).checked)} /> {t('ownLlm')}</label>
          {own && (
            <>
              <Field form={form} name="llm.base_url" label={t('llmBase')} hint={t('llmBaseHint')}>
                {(p) => <input {...p} type="url" defaultValue={workspace.llm?.base_url ?? ''} placeholder="https://api.openai.com/v1" />}
              </Field>
              <Field form={form} name="llm.model" label={t('llmModel')}>
                {(p) => <input {...p} defaultValue={workspace.llm?.model ?? ''} placeholder="gpt-4o-mini" />}
              </Field>
              <Field form={form} name="llm.api_key" label={t('llmKey')} hint={workspace.llm?.api_key_set ? t('llmKeyKept') : t('llmKeyHint')}>
                {(p) => <input {...p} type="password" autocomplete="off" />}
              </Field>
              {workspace.llm?.api_key_set && <label class="check"><input name="clear_key" type="checkbox" /> {t('llmKeyClear')}</label>}
            </>
          )}
        </fieldset>
        <Field form={form} name="monthly_token_budget" label={t('budget')} hint={t('budgetHint')}>
          {(p) => <input {...p} type="number" min={0} defaultValue={budget == null ? '' : String(budget)} />}
        </Field>
        <p id="token-usage" class="muted">
          {budget == null
            ? t('usageNoBudget', { used: fmt(workspace.tokens_used_this_month), month: workspace.month })
            : t('usage', { used: fmt(workspace.tokens_used_this_month), budget: fmt(budget), month: workspace.month })}
        </p>
      </fieldset>
      <p class="form-error" role="alert">{form.general}</p>
      {admin && (
        <p class="actions">
          <button id="save-workspace" type="submit" disabled={form.busy}>{t('save')}</button>
          <span id="workspace-saved" role="status" class="ok">{saved ? t('saved_') : ''}</span>
        </p>
      )}
    </form>
  );
}

/** The roles `me` may give: owners any, admins all but owner. */
const grantable = (me: Me): Role[] => ROLES.filter((r) => me.role === 'owner' || (me.role === 'admin' && r !== 'owner'));
const roleLabel = (r: Role) => ({ owner: t('roleOwner'), admin: t('roleAdmin'), agent: t('roleAgent'), viewer: t('roleViewer') })[r];

function Members({ me }: { me: Me }) {
  const admin = canWrite(me.role);
  const members = useResource(() => api<MemberList>('GET', '/api/members'), []);
  const invitations = useResource(() => (admin ? api<InvitationList>('GET', '/api/members/invitations') : Promise.resolve({ data: [] })), [admin]);
  const [error, setError] = useState('');
  const [removing, setRemoving] = useState<{ id: string; name: string } | null>(null);
  // A role is picked, then applied: arrowing through a closed select must not change it each step.
  const [picked, setPicked] = useState<Record<string, Role>>({});
  const invite = useForm(['email', 'role']);
  const [sent, setSent] = useState('');
  const submitInvite = invite.submit(async () => {
    const data = new FormData(invite.ref.current!);
    const email = String(data.get('email')).trim();
    await api('POST', '/api/members/invitations', { email, role: String(data.get('role')) });
    // Only the email is cleared: a reset would put the role back on the list's first, Owner.
    (invite.ref.current!.elements.namedItem('email') as HTMLInputElement).value = '';
    setSent(t('invited', { email }));
    void invitations.reload();
  });
  const act = async (work: () => Promise<unknown>) => {
    setError('');
    try { await work(); void members.reload(); void invitations.reload(); setRemoving(null); } catch (e) { setError(describe(e)); }
  };
  const options = grantable(me);
  return (
    <>
      {error && !removing && <p class="form-error" role="alert">{error}</p>}
      <section class="panel" aria-labelledby="members-title">
        <h2 id="members-title">{t('members')}</h2>
        <ResourceView res={members} id="member-list">
          {(d) => (
            <ul class="picklist">
              {d.data.map((m) => (
                <li data-member-id={m.id} data-role={m.role}>
                  <span><strong>{m.name}</strong> <span class="muted">{m.email}</span></span>
                  <span class="row">
                    {admin && m.id !== me.id && options.includes(m.role) ? (
                      <>
                        <label for={`role-${m.id}`} class="sr-only">{t('roleOf', { name: m.name })}</label>
                        <select id={`role-${m.id}`} value={picked[m.id] ?? m.role} onChange={(e) => setPicked({ ...picked, [m.id]: (e.target as HTMLSelectElement).value as Role })}>
                          {options.map((r) => <option value={r}>{roleLabel(r)}</option>)}
                        </select>
                        {picked[m.id] && picked[m.id] !== m.role && (
                          <button type="button" class="small apply-role" onClick={() => void act(async () => {
                            await api('PATCH', `/api/members/${m.id}`, { role: picked[m.id] });
                            setPicked(({ [m.id]: _, ...rest }) => rest);
                          })}>{t('applyRole')}</button>
                        )}
                        <button type="button" class="link danger-text remove-member" onClick={() => setRemoving({ id: m.id, name: m.name })}>{t('remove')}</button>
                      </>
                    ) : (
                      <span class="badge">{roleLabel(m.role)}{m.id === me.id ? ` · ${t('you')}` : ''}</span>
                    )}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      {admin && (
        <section class="panel" aria-labelledby="invite-title">
          <h2 id="invite-title">{t('inviteTitle')}</h2>
          <form id="invite-form" ref={invite.ref} onSubmit={submitInvite} noValidate class="row">
            <Field form={invite} name="email" label={t('email')}>
              {(p) => <input {...p} type="email" required />}
            </Field>
            <Field form={invite} name="role" label={t('role')}>
              {(p) => <select {...p}>{options.map((r) => <option value={r} selected={r === 'agent'}>{roleLabel(r)}</option>)}</select>}
            </Field>
            <button id="invite" type="submit" disabled={invite.busy}>{t('invite')}</button>
          </form>
          <p class="form-error" role="alert">{invite.general}</p>
          <p id="invite-sent" role="status" class="ok">{sent}</p>
          <ResourceView res={invitations} id="invitation-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noInvitations')}</p>}>
            {(d) => (
              <ul class="picklist">
                {d.data.map((i) => (
                  <li data-invitation-id={i.id}>
                    <span>{i.email} <span class="badge">{roleLabel(i.role)}</span> <span class="muted">{t('expires', { date: when(i.expires_at) })}</span></span>
                    <button type="button" class="link danger-text" onClick={() => void act(() => api('DELETE', `/api/members/invitations/${i.id}`))}>{t('revoke')}</button>
                  </li>
                ))}
              </ul>
            )}
          </ResourceView>
        </section>
      )}
      {removing && (
        <Confirm id="remove-member-dialog" title={t('removeMemberTitle', { name: removing.name })} confirm={t('remove')} danger error={error}
          onConfirm={() => void act(() => api('DELETE', `/api/members/${removing.id}`))} onClose={() => { setRemoving(null); setError(''); }}>
          <p>{t('removeMemberBody')}</p>
        </Confirm>
      )}
    </>
  );
}

function ApiKeys({ me }: { me: Me }) {
  const admin = canWrite(me.role);
  const keys = useResource(() => (admin ? api<ApiKeyList>('GET', '/api/api-keys') : Promise.resolve({ data: [] })), [admin]);
  const form = useForm(['name', 'scopes']);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [error, setError] = useState('');
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const scopes = data.getAll('scopes').map(String);
    const key = await api<CreatedApiKey>('POST', '/api/api-keys', { name: String(data.get('name')), scopes });
    form.ref.current!.reset();
    setCreated(key);
    void keys.reload();
  });
  if (!admin) return <p class="panel">{t('adminsOnly')}</p>;
  return (
    <>
      {created && (
        <section id="new-key" class="panel notice" aria-labelledby="new-key-title">
          <h2 id="new-key-title">{t('keyCreated', { name: created.name })}</h2>
          <p>{t('keyOnce')}</p>
          <p class="row"><code id="new-key-value" class="secret">{created.key}</code> <CopyButton id="copy-key" text={created.key} /></p>
          <button type="button" class="secondary" onClick={() => setCreated(null)}>{t('keyCopied')}</button>
        </section>
      )}
      <section class="panel" aria-labelledby="keys-title">
        <h2 id="keys-title">{t('apiKeys')}</h2>
        {error && <p class="form-error" role="alert">{error}</p>}
        <ResourceView res={keys} id="key-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noKeys')}</p>}>
          {(d) => (
            <ul class="picklist">
              {d.data.map((k) => (
                <li data-key-id={k.id} data-revoked={String(k.revoked)}>
                  <span><strong>{k.name}</strong> <code>{k.prefix}…</code> <span class="muted">{k.scopes.join(', ')}</span></span>
                  <span class="muted">{k.revoked ? t('revoked') : k.last_used_at ? t('lastUsed', { date: when(k.last_used_at) }) : t('neverUsed')}</span>
                  {!k.revoked && (
                    <button type="button" class="link danger-text revoke-key" onClick={() => void (async () => {
                      setError('');
                      try { await api('DELETE', `/api/api-keys/${k.id}`); void keys.reload(); } catch (e) { setError(describe(e)); }
                    })()}>{t('revoke')}</button>
                  )}
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      <form id="key-form" class="panel" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="key-form-title">
        <h2 id="key-form-title">{t('newKey')}</h2>
        <Field form={form} name="name" label={t('keyName')} hint={t('keyNameHint')}>
          {(p) => <input {...p} required maxLength={100} />}
        </Field>
        <fieldset aria-describedby={form.errors.scopes ? 'scopes-error' : undefined}>
          <legend>{t('scopes')}</legend>
          {SCOPES.map((s) => <label class="check scope"><input type="checkbox" name="scopes" value={s} /> <code>{s}</code></label>)}
          {form.errors.scopes && <p id="scopes-error" class="field-error">{form.errors.scopes}</p>}
        </fieldset>
        <p class="form-error" role="alert">{form.general}</p>
        <button id="create-key" type="submit" disabled={form.busy}>{t('createKey')}</button>
      </form>
    </>
  );
}

function Canned({ me }: { me: Me }) {
  const writer = canWrite(me.role);
  const res = useResource(() => api<CannedList>('GET', '/api/canned-responses'), []);
  const form = useForm(['shortcut', 'text'], { shortcut_taken: t('shortcutTaken') });
  const [error, setError] = useState('');
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    await api<CannedResponse>('POST', '/api/canned-responses', { shortcut: String(data.get('shortcut')).trim().replace(/^\//, ''), text: String(data.get('text')) });
    form.ref.current!.reset();
    void res.reload();
  });
  return (
    <>
      <section class="panel" aria-labelledby="canned-title">
        <h2 id="canned-title">{t('canned')}</h2>
        <p class="hint">{t('cannedHint')}</p>
        {error && <p class="form-error" role="alert">{error}</p>}
        <ResourceView res={res} id="canned-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noCanned')}</p>}>
          {(d) => (
            <ul class="picklist">
              {d.data.map((c) => (
                <li data-canned-id={c.id}>
                  <span><code>/{c.shortcut}</code> {c.text}</span>
                  {writer && (
                    <button type="button" class="link danger-text" onClick={() => void (async () => {
                      setError('');
                      try { await api('DELETE', `/api/canned-responses/${c.id}`); void res.reload(); } catch (e) { setError(describe(e)); }
                    })()}>{t('delete')}</button>
                  )}
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      {writer && (
        <form id="canned-form" class="panel" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="canned-form-title">
          <h2 id="canned-form-title">{t('newCanned')}</h2>
          <Field form={form} name="shortcut" label={t('shortcut')} hint={t('shortcutHint')}>
            {(p) => <input {...p} required maxLength={33} />}
          </Field>
          <Field form={form} name="text" label={t('cannedText')}>
            {(p) => <textarea {...p} rows={3} required maxLength={4000} />}
          </Field>
          <p class="form-error" role="alert">{form.general}</p>
          <button id="create-canned" type="submit" disabled={form.busy}>{t('add')}</button>
        </form>
      )}
    </>
  );
}
