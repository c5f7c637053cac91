// #bots/ID/intents[/IID|new]: what the bot recognises and answers. The list, the editor with a
// live preview drawn by the widget itself, and the messages no intent matched, each one click
// away from becoming a training phrase.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Bot, IntentBody, IntentList, IntentReport, IntentView, RichContent } from '../api.gen';
import { t } from '../i18n';
import { go } from '../router';
import { api } from '../session';
import { Confirm } from '../ui/dialog';
import { Field, describe, useForm } from '../ui/form';
import { ResourceView, useResource, type Resource } from '../ui/resource';
import { RichEditor, cleanContent } from './RichEditor';

const path = (bot: Bot, rest = '') => `/api/bots/${encodeURIComponent(bot.id)}/intents${rest}`;

export function Intents({ bot, writer, selected }: { bot: Bot; writer: boolean; selected: string | null }) {
  const res = useResource(() => api<IntentList>('GET', path(bot)), [bot.id]);
  const intents = res.data?.data ?? [];
  const current = selected && selected !== 'new' ? intents.find((i) => i.id === selected) ?? null : null;
  const base = `bots/${bot.id}/intents`;
  // A new intent's editor gives way to the saved intent's, which says it was saved.
  const [created, setCreated] = useState<string | null>(null);
  return (
    <div class="split">
      <section class="panel list-panel" aria-labelledby="intents-title">
        <div class="page-head">
          <h2 id="intents-title">{t('intents')}</h2>
          {writer && <a id="new-intent" class="button small" href={`#${base}/new`}>{t('newIntent')}</a>}
        </div>
        <ResourceView res={res} id="intent-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noIntents')}</p>}>
          {(d) => (
            <ul class="picklist">
              {d.data.map((i) => (
                <li data-intent-id={i.id}>
                  <a href={`#${base}/${i.id}`} aria-current={i.id === selected ? 'page' : undefined}>{i.name}</a>
                  <span class="muted">{i.examples.length === 1 ? t('phrases1') : t('phrasesN', { n: i.examples.length })}</span>
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      <div class="editor-col">
        {selected === 'new' && writer && (
          <IntentEditor key="new" bot={bot} intent={null} writer={writer} onSaved={(i) => { setCreated(i.id); res.set({ data: [...intents, i] }); go(`${base}/${i.id}`, true); }} onDeleted={() => {}} />
        )}
        {current && (
          <IntentEditor key={current.id} bot={bot} intent={current} writer={writer} created={created === current.id} onSaved={(i) => res.set({ data: intents.map((x) => (x.id === i.id ? i : x)) })} onDeleted={() => { void res.reload(); go(base, true); }} />
        )}
        {selected && selected !== 'new' && res.state === 'ready' && !current && <p class="panel" role="alert">{t('intentGone')}</p>}
        {!selected && <Unmatched bot={bot} intents={res} writer={writer} />}
      </div>
    </div>
  );
}

interface EditorProps { bot: Bot; intent: IntentView | null; writer: boolean; created?: boolean; onSaved: (i: IntentView) => void; onDeleted: () => void }

function IntentEditor({ bot, intent, writer, created = false, onSaved, onDeleted }: EditorProps) {
  const form = useForm(['name', 'description', 'examples', 'response.text', 'response.quick_replies', 'response.content', 'actions.url', 'actions.secret', 'actions'], {
    intent_name_taken: t('intentNameTaken'),
    form_id_taken: t('formIdTaken'),
  });
  const [name, setName] = useState(intent?.name ?? '');
  const [description, setDescription] = useState(intent?.description ?? '');
  const [examples, setExamples] = useState<string[]>(intent?.examples ?? []);
  const [phrase, setPhrase] = useState('');
  const [bulk, setBulk] = useState('');
  const [bulkNote, setBulkNote] = useState('');
  const [text, setText] = useState(intent?.response.text ?? '');
  const [quick, setQuick] = useState((intent?.response.quick_replies ?? []).join('\n'));
  const [content, setContent] = useState<RichContent | null>(intent?.response.content ?? null);
  const hook = intent?.actions[0];
  const [editHook, setEditHook] = useState(!intent);
  const [hookUrl, setHookUrl] = useState(hook && 'url' in hook ? String(hook.url) : '');
  const [hookSecret, setHookSecret] = useState('');
  const [saved, setSaved] = useState(created);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState('');

  const add = (items: string[]) => {
    const seen = new Set(examples.map((e) => e.toLowerCase()));
    const fresh: string[] = [];
    for (const raw of items) {
      const p = raw.trim();
      if (p && !seen.has(p.toLowerCase())) { seen.add(p.toLowerCase()); fresh.push(p); }
    }
    setExamples([...examples, ...fresh]);
    setSaved(false);
    return fresh.length;
  };

  const submit = form.submit(async () => {
    setSaved(false);
    const body: IntentBody = {
      name,
      description,
      examples: examples as IntentBody['examples'],
      response: { text, quick_replies: quick.split('\n').map((q) => q.trim()).filter(Boolean), content: cleanContent(content) },
    };
    if (editHook) body.actions = (hookUrl.trim() ? [{ type: 'webhook', url: hookUrl.trim(), secret: hookSecret }] : []) as IntentBody['actions'];
    const saved = intent
      ? await api<IntentView>('PATCH', path(bot, `/${encodeURIComponent(intent.id)}`), body)
      : await api<IntentView>('POST', path(bot), body);
    setSaved(true);
    if (intent) setEditHook(false);
    onSaved(saved);
  });
  const remove = async () => {
    try {
      await api('DELETE', path(bot, `/${encodeURIComponent(intent!.id)}`));
      onDeleted();
    } catch (e) {
      setDeleteError(describe(e));
    }
  };

  const off = !writer;
  return (
    <div class="intent-editor">
      <form id="intent-form" class="panel" ref={form.ref} onSubmit={submit} onInput={() => setSaved(false)} noValidate aria-labelledby="intent-title">
        <h2 id="intent-title">{intent ? intent.name : t('newIntent')}</h2>
        <Field form={form} name="name" label={t('intentName')} hint={t('intentNameHint')}>
          {(p) => <input {...p} value={name} disabled={off} required maxLength={100} onInput={(e) => setName((e.target as HTMLInputElement).value)} />}
        </Field>
        <Field form={form} name="description" label={t('description')}>
          {(p) => <input {...p} value={description} disabled={off} maxLength={1000} onInput={(e) => setDescription((e.target as HTMLInputElement).value)} />}
        </Field>

        <fieldset class="phrases-box">
          <legend>{t('phrases')} <span class="muted">({examples.length})</span></legend>
          <ul id="phrases" class="chips">
            {examples.map((e, i) => (
              <li>
                <span>{e}</span>
                {writer && <button type="button" class="chip-x" aria-label={t('removePhrase', { phrase: e })} onClick={() => { setExamples(examples.filter((_, j) => j !== i)); setSaved(false); }}>×</button>}
              </li>
            ))}
          </ul>
          {form.errors.examples && <p id="examples-error" class="field-error">{form.errors.examples}</p>}
          {writer && (
            <>
              <div class="row">
                <label for="phrase" class="sr-only">{t('newPhrase')}</label>
                <input id="phrase" name="examples" value={phrase} placeholder={t('newPhrase')} maxLength={500} aria-invalid={form.errors.examples ? 'true' : undefined} aria-describedby={form.errors.examples ? 'examples-error' : undefined}
                  onInput={(e) => setPhrase((e.target as HTMLInputElement).value)}
                  onKeyDown={(e) => { if (e.key === 'Enter') { e.preventDefault(); add([phrase]); setPhrase(''); } }} />
                <button id="add-phrase" type="button" class="secondary" onClick={() => { add([phrase]); setPhrase(''); }}>{t('add')}</button>
              </div>
              <details>
                <summary>{t('bulkPaste')}</summary>
                <label for="bulk" class="sr-only">{t('bulkPaste')}</label>
                <textarea id="bulk" rows={4} value={bulk} placeholder={t('bulkHint')} onInput={(e) => setBulk((e.target as HTMLTextAreaElement).value)} />
                <p class="actions">
                  <button id="add-bulk" type="button" class="secondary" onClick={() => { const n = add(bulk.split('\n')); setBulk(''); setBulkNote(n === 1 ? t('phrasesAdded1') : t('phrasesAdded', { n })); }}>{t('addAll')}</button>
                  <span id="bulk-note" role="status">{bulkNote}</span>
                </p>
              </details>
            </>
          )}
        </fieldset>

        <Field form={form} name="response.text" label={t('responseText')}>
          {(p) => <textarea {...p} rows={3} value={text} disabled={off} required maxLength={4000} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />}
        </Field>
        <Field form={form} name="response.quick_replies" label={t('quickReplies')} hint={t('quickRepliesHint')}>
          {(p) => <textarea {...p} rows={2} value={quick} disabled={off} onInput={(e) => setQuick((e.target as HTMLTextAreaElement).value)} />}
        </Field>
        <RichEditor form={form} value={content} disabled={off} onChange={(c) => { setContent(c); setSaved(false); }} />

        <fieldset class="rich">
          <legend>{t('webhook')}</legend>
          {!editHook ? (
            <p>
              {hook ? t('webhookSet', { url: hookUrl }) : t('webhookNone')}{' '}
              {writer && <button id="edit-webhook" type="button" class="link" onClick={() => setEditHook(true)}>{t('change')}</button>}
            </p>
          ) : (
            <>
              <p class="hint">{t('webhookHint')}</p>
              <Field form={form} name="actions.url" label={t('webhookUrl')}>
                {(p) => <input {...p} type="url" value={hookUrl} disabled={off} onInput={(e) => setHookUrl((e.target as HTMLInputElement).value)} />}
              </Field>
              <Field form={form} name="actions.secret" label={t('webhookSecret')} hint={t('webhookSecretHint')}>
                {(p) => <input {...p} type="password" autocomplete="off" value={hookSecret} disabled={off} onInput={(e) => setHookSecret((e.target as HTMLInputElement).value)} />}
              </Field>
            </>
          )}
        </fieldset>

        <p class="form-error" role="alert">{form.general}</p>
        {writer && (
          <p class="actions">
            <button id="save-intent" type="submit" disabled={form.busy}>{t('save')}</button>
            {intent && <button id="delete-intent" type="button" class="secondary danger-text" onClick={() => setDeleting(true)}>{t('delete')}</button>}
            <span id="intent-saved" role="status" class="ok">{saved ? t('saved_') : ''}</span>
          </p>
        )}
      </form>
      <IntentPreview bot={bot} phrase={examples[0] ?? ''} text={text} content={cleanContent(content)} />
      {deleting && intent && (
        <Confirm id="delete-intent-dialog" title={t('deleteIntentTitle', { name: intent.name })} confirm={t('deleteForGood')} danger error={deleteError}
          onConfirm={() => void remove()} onClose={() => { setDeleting(false); setDeleteError(''); }}>
          <p>{t('deleteIntentBody')}</p>
        </Confirm>
      )}
    </div>
  );
}

/** The answer as a visitor will see it: the widget's own panel, re-drawn a moment after each edit. */
function IntentPreview({ bot, phrase, text, content }: { bot: Bot; phrase: string; text: string; content: RichContent | null }) {
  const host = useRef<HTMLDivElement>(null);
  const key = JSON.stringify([phrase, text, content, bot.appearance, bot.name]);
  useEffect(() => {
    let stop = () => {};
    let live = true;
    const timer = setTimeout(() => {
      void import('../preview').then(({ showPreview }) => {
        if (!live || !host.current) return;
        const settings = { id: bot.id, name: bot.name, language: bot.language, appearance: bot.appearance ?? {} };
        const frames = [
          ...(phrase ? [{ sender: 'user' as const, text: phrase }] : []),
          ...(text || content ? [{ sender: 'bot' as const, text, content }] : []),
        ];
        stop = showPreview(host.current, settings, frames);
      });
    }, 150);
    return () => { live = false; clearTimeout(timer); stop(); };
  }, [key]);
  return (
    <section class="preview" aria-labelledby="preview-title">
      <h2 id="preview-title">{t('preview')}</h2>
      <div id="intent-preview" ref={host} class="preview-box" />
    </section>
  );
}

/** What visitors wrote that no intent matched (last 30 days), each addable as a phrase. */
function Unmatched({ bot, intents, writer }: { bot: Bot; intents: Resource<IntentList>; writer: boolean }) {
  const to = Date.now();
  const res = useResource(
    () => api<IntentReport>('GET', `/api/analytics/intents?bot_id=${encodeURIComponent(bot.id)}&from=${to - 30 * 86_400_000}&to=${to}&unmatched_limit=50`),
    [bot.id],
  );
  const [target, setTarget] = useState('');
  const [error, setError] = useState('');
  const [added, setAdded] = useState<string[]>([]);
  const list = intents.data?.data ?? [];
  const known = new Set(list.flatMap((i) => i.examples.map((e) => e.toLowerCase())));
  const addTo = async (text: string) => {
    const id = target || list[0]?.id;
    if (!id) return;
    setError('');
    try {
      // One append on the server: two tabs adding at once both keep theirs.
      await api<IntentView>('POST', path(bot, `/${encodeURIComponent(id)}/examples`), { text });
      setAdded([...added, text.toLowerCase()]);
      void intents.reload();
    } catch (e) {
      setError(describe(e));
    }
  };
  return (
    <section class="panel" aria-labelledby="unmatched-title">
      <h2 id="unmatched-title">{t('unmatchedTitle')}</h2>
      <p class="hint">{t('unmatchedHint')}</p>
      {writer && list.length > 0 && (
        <p class="row">
          <label for="unmatched-target">{t('addTo')}</label>
          <select id="unmatched-target" value={target || list[0]?.id} onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}>
            {list.map((i) => <option value={i.id}>{i.name}</option>)}
          </select>
        </p>
      )}
      {error && <p class="form-error" role="alert">{error}</p>}
      <ResourceView res={res} id="unmatched-list" isEmpty={(d) => d.unmatched.filter((u) => !known.has(u.text.toLowerCase())).length === 0} empty={<p>{t('noUnmatched')}</p>}>
        {(d) => (
          <ul class="picklist">
            {d.unmatched.filter((u) => !known.has(u.text.toLowerCase()) && !added.includes(u.text.toLowerCase())).map((u) => (
              <li data-seq={u.seq}>
                <span class="text">{u.text}</span>
                {writer && list.length > 0 && <button type="button" class="link add-phrase" onClick={() => void addTo(u.text)}>{t('addAsPhrase')}</button>}
              </li>
            ))}
          </ul>
        )}
      </ResourceView>
    </section>
  );
}
