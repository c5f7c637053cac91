// #bots: the workspace's bots; #bots/new: a new one.
import type { Bot, BotCategory, BotList as Bots } from '../api.gen';
import { t } from '../i18n';
import { canWrite } from '../roles';
import { go } from '../router';
import { api, type Me } from '../session';
import { Field, useForm } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';
import { CATEGORIES, LANGUAGES, categoryLabel, statusLabel } from './labels';

export function BotList({ me }: { me: Me }) {
  const res = useResource(() => api<Bots>('GET', '/api/bots'), []);
  const writer = canWrite(me.role);
  return (
    <main class="page" aria-labelledby="bots-title">
      <div class="page-head">
        <h1 id="bots-title">{t('bots')}</h1>
        {writer && <a id="new-bot" class="button" href="#bots/new">{t('newBot')}</a>}
      </div>
      <ResourceView
        res={res}
        id="bot-list"
        isEmpty={(d) => d.data.length === 0}
        empty={<p>{writer ? t('noBotsWriter') : t('noBots')}</p>}
      >
        {(d) => (
          <ul class="tiles">
            {d.data.map((b) => (
              <li data-bot-id={b.id} data-status={b.status}>
                <a class="tile-title" href={`#bots/${b.id}`}>{b.name}</a>
                <span class="status" data-status={b.status}>{statusLabel(b.status)}</span>
                <p class="muted">{b.description || categoryLabel(b.category)}</p>
              </li>
            ))}
          </ul>
        )}
      </ResourceView>
    </main>
  );
}

export function NewBot() {
  const form = useForm(['name', 'description', 'category', 'language']);
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const description = String(data.get('description') ?? '').trim();
    const bot = await api<Bot>('POST', '/api/bots', {
      name: String(data.get('name')),
      category: String(data.get('category')) as BotCategory,
      language: String(data.get('language')).trim(),
      ...(description ? { description } : {}),
    });
    go(`bots/${bot.id}`);
  });
  return (
    <main class="page" aria-labelledby="new-bot-title">
      <form id="new-bot-form" class="panel narrow" ref={form.ref} onSubmit={submit} noValidate>
        <h1 id="new-bot-title">{t('newBot')}</h1>
        <Field form={form} name="name" label={t('botName')}>
          {(p) => <input {...p} required maxLength={200} />}
        </Field>
        <Field form={form} name="description" label={t('description')}>
          {(p) => <textarea {...p} rows={2} maxLength={2000} />}
        </Field>
        <Field form={form} name="category" label={t('category')}>
          {(p) => <select {...p}>{CATEGORIES.map((c) => <option value={c} selected={c === 'CUSTOMER_SUPPORT'}>{categoryLabel(c)}</option>)}</select>}
        </Field>
        <LanguageField form={form} value="en" />
        <p class="form-error" role="alert">{form.general}</p>
        <p class="actions">
          <button id="create-bot" type="submit" disabled={form.busy}>{t('createBot')}</button>
          <a href="#bots">{t('cancel')}</a>
        </p>
      </form>
    </main>
  );
}

/** The bot's language: a tag, with the common ones offered. */
export function LanguageField({ form, value, disabled }: { form: ReturnType<typeof useForm>; value: string; disabled?: boolean }) {
  return (
    <Field form={form} name="language" label={t('language')} hint={t('languageHint')}>
      {(p) => (
        <>
          <input {...p} list="languages" defaultValue={value} required pattern="[A-Za-z0-9-]{2,10}" disabled={disabled} />
          <datalist id="languages">{LANGUAGES.map((l) => <option value={l} />)}</datalist>
        </>
      )}
    </Field>
  );
}
