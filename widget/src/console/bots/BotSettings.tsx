// A bot's settings: who it is and how it speaks.
import { useState } from 'preact/hooks';
import type { Bot, BotCategory } from '../api.gen';
import { t } from '../i18n';
import { api } from '../session';
import { Field, useForm } from '../ui/form';
import { LanguageField } from './BotList';
import { CATEGORIES, categoryLabel } from './labels';

export function BotSettings({ bot, writer, onSaved }: { bot: Bot; writer: boolean; onSaved: (b: Bot) => void }) {
  const form = useForm(['name', 'description', 'category', 'language', 'config.personality', 'config.welcome_message', 'config.fallback_message', 'config.retention_days']);
  const [saved, setSaved] = useState(false);
  const submit = form.submit(async () => {
    setSaved(false);
    const data = new FormData(form.ref.current!);
    const text = (k: string) => String(data.get(k) ?? '');
    const updated = await api<Bot>('PATCH', `/api/bots/${encodeURIComponent(bot.id)}`, {
      name: text('name'),
      description: text('description'),
      category: text('category') as BotCategory,
      language: text('language').trim(),
      config: {
        personality: text('config.personality'),
        welcome_message: text('config.welcome_message'),
        fallback_message: text('config.fallback_message'),
        retention_days: text('config.retention_days').trim() === '' ? null : Number(text('config.retention_days')),
      },
    });
    onSaved(updated);
    setSaved(true);
  });
  return (
    <form id="bot-settings" class="panel" ref={form.ref} onSubmit={submit} onInput={() => setSaved(false)} noValidate aria-label={t('settings')}>
      <fieldset disabled={!writer}>
        <div class="grid2">
          <Field form={form} name="name" label={t('botName')}>
            {(p) => <input {...p} defaultValue={bot.name} required maxLength={200} />}
          </Field>
          <Field form={form} name="category" label={t('category')}>
            {(p) => <select {...p}>{CATEGORIES.map((c) => <option value={c} selected={c === bot.category}>{categoryLabel(c)}</option>)}</select>}
          </Field>
        </div>
        <Field form={form} name="description" label={t('description')}>
          {(p) => <textarea {...p} rows={2} maxLength={2000} defaultValue={bot.description ?? ''} />}
        </Field>
        <LanguageField form={form} value={bot.language} />
        <Field form={form} name="config.personality" label={t('personality')} hint={t('personalityHint')}>
          {(p) => <textarea {...p} rows={3} maxLength={2000} defaultValue={bot.config.personality ?? ''} />}
        </Field>
        <Field form={form} name="config.welcome_message" label={t('welcome')} hint={t('welcomeHint')}>
          {(p) => <textarea {...p} rows={2} maxLength={1000} defaultValue={bot.config.welcome_message ?? ''} />}
        </Field>
        <Field form={form} name="config.fallback_message" label={t('fallback')} hint={t('fallbackHint')}>
          {(p) => <textarea {...p} rows={2} maxLength={1000} defaultValue={bot.config.fallback_message} required />}
        </Field>
        <Field form={form} name="config.retention_days" label={t('botRetention')} hint={t('botRetentionHint')}>
          {(p) => <input {...p} type="number" min={1} max={36500} inputMode="numeric" defaultValue={bot.config.retention_days == null ? '' : String(bot.config.retention_days)} placeholder={t('workspacePolicy')} />}
        </Field>
      </fieldset>
      <p class="form-error" role="alert">{form.general}</p>
      {writer && (
        <p class="actions">
          <button id="save-bot" type="submit" disabled={form.busy}>{t('save')}</button>
          <span id="bot-saved" role="status" class="ok">{saved ? t('saved_') : ''}</span>
        </p>
      )}
    </form>
  );
}
