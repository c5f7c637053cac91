// #bots/ID/channels: the bot on WhatsApp, SMS and push. Each form says where every value is
// found in the provider's console; a connection shows its webhook URL to paste there, and the
// secrets only by their last characters.
import { useState } from 'preact/hooks';
import type { Bot, Channel, ChannelBody, ChannelList, ChannelView } from '../api.gen';
import { t } from '../i18n';
import { ApiError } from '../http';
import { api } from '../session';
import { CopyButton } from '../ui/copy';
import { Confirm } from '../ui/dialog';
import { Field, describe, useForm } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';

type Kind = 'whatsapp' | 'sms' | 'push';

interface Input { name: keyof ChannelBody; label: string; hint: string; secret?: boolean; optional?: boolean; textarea?: boolean }

const FIELDS = (): Record<Kind, Input[]> => ({
  whatsapp: [
    { name: 'phone_number_id', label: t('waPhoneId'), hint: t('waPhoneIdHint') },
    { name: 'access_token', label: t('waToken'), hint: t('waTokenHint'), secret: true },
    { name: 'app_secret', label: t('waSecret'), hint: t('waSecretHint'), secret: true },
    { name: 'verify_token', label: t('waVerify'), hint: t('waVerifyHint') },
    { name: 'template_name', label: t('waTemplate'), hint: t('waTemplateHint'), optional: true },
    { name: 'template_language', label: t('waTemplateLang'), hint: t('waTemplateLangHint'), optional: true },
  ],
  sms: [
    { name: 'phone_number', label: t('smsNumber'), hint: t('smsNumberHint') },
    { name: 'account_sid', label: t('smsSid'), hint: t('smsSidHint') },
    { name: 'auth_token', label: t('smsToken'), hint: t('smsTokenHint'), secret: true },
  ],
  push: [
    { name: 'service_account', label: t('pushKey'), hint: t('pushKeyHint'), secret: true, textarea: true },
  ],
});

const kindLabel = (k: Channel) => ({ whatsapp: 'WhatsApp', sms: 'SMS', push: t('push'), web: 'Web', api: 'API', preview: t('preview') } as Record<string, string>)[k] ?? k;

export function Channels({ bot, writer }: { bot: Bot; writer: boolean }) {
  const base = `/api/bots/${encodeURIComponent(bot.id)}/channels`;
  const res = useResource(() => api<ChannelList>('GET', base), [bot.id]);
  const [adding, setAdding] = useState<Kind | null>(null);
  const [removing, setRemoving] = useState<ChannelView | null>(null);
  const [error, setError] = useState('');
  const remove = async (c: ChannelView) => {
    setError('');
    try { await api('DELETE', `${base}/${encodeURIComponent(c.id)}`); setRemoving(null); void res.reload(); } catch (e) { setError(describe(e)); }
  };
  return (
    <div class="channels">
      <section class="panel" aria-labelledby="channels-title">
        <h2 id="channels-title">{t('channels')}</h2>
        <p class="hint">{t('channelsHint')}</p>
        {error && !removing && <p class="form-error" role="alert">{error}</p>}
        <ResourceView res={res} id="channel-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noChannels')}</p>}>
          {(d) => (
            <ul class="doc-list">
              {d.data.map((c) => <ChannelRow c={c} writer={writer} onRemove={() => setRemoving(c)} />)}
            </ul>
          )}
        </ResourceView>
        {writer && !adding && (
          <p class="actions">
            {(['whatsapp', 'sms', 'push'] as Kind[]).map((k) => (
              <button id={`add-${k}`} type="button" class="secondary" onClick={() => setAdding(k)}>{t('connectKind', { kind: kindLabel(k) })}</button>
            ))}
          </p>
        )}
      </section>
      {adding && <ChannelForm key={adding} bot={bot} kind={adding} onDone={(added) => { setAdding(null); if (added) void res.reload(); }} />}
      {removing && (
        <Confirm id="remove-channel-dialog" title={t('disconnectTitle', { kind: kindLabel(removing.kind), address: removing.address })} confirm={t('disconnect')} danger error={error}
          onConfirm={() => void remove(removing)} onClose={() => { setRemoving(null); setError(''); }}>
          <p>{t('disconnectBody')}</p>
        </Confirm>
      )}
    </div>
  );
}

function ChannelRow({ c, writer, onRemove }: { c: ChannelView; writer: boolean; onRemove: () => void }) {
  const url = c.webhook_path ? `${location.origin}${c.webhook_path}` : null;
  const health = c.health;
  const when = (ms: number) => new Date(ms).toLocaleString();
  return (
    <li data-channel-id={c.id} data-kind={c.kind}>
      <div class="doc-head">
        <span class="name">{kindLabel(c.kind)}</span>
        <span>{c.address}</span>
        <span class="muted">{Object.entries(c.secret_hints).map(([k, v]) => `${k} ${v}`).join(' · ')}</span>
      </div>
      {url && (
        <p class="row">
          <span>{t('webhookUrlLabel')}</span> <code class="webhook-url">{url}</code> <CopyButton text={url} />
        </p>
      )}
      {health && (
        <p class="muted channel-health">
          {health.last_inbound_at ? t('lastInbound', { when: when(health.last_inbound_at) }) : t('noInboundYet')}
          {health.last_delivered_at ? ` · ${t('lastDelivered', { when: when(health.last_delivered_at) })}` : ''}
        </p>
      )}
      {health?.last_error && <p class="field-error channel-error">{t('lastError', { when: when(health.last_error.at), message: health.last_error.message })}</p>}
      {writer && <p class="actions"><button type="button" class="link danger-text remove-channel" onClick={onRemove}>{t('disconnect')}</button></p>}
    </li>
  );
}

function ChannelForm({ bot, kind, onDone }: { bot: Bot; kind: Kind; onDone: (added: boolean) => void }) {
  const fields = FIELDS()[kind];
  const form = useForm(fields.map((f) => f.name));
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const body: Record<string, unknown> = { kind };
    for (const f of fields) {
      const v = String(data.get(f.name) ?? '').trim();
      if (!v && f.optional) continue;
      if (f.name === 'service_account') {
        try { body[f.name] = JSON.parse(v); } catch { throw new ApiError(422, 'validation_failed', t('notJson'), 'service_account'); }
      } else body[f.name] = v;
    }
    await api('POST', `/api/bots/${encodeURIComponent(bot.id)}/channels`, body);
    onDone(true);
  });
  return (
    <form id={`channel-form-${kind}`} class="panel" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="channel-form-title">
      <h2 id="channel-form-title">{t('connectKind', { kind: kindLabel(kind) })}</h2>
      <p class="hint">{t(kind === 'whatsapp' ? 'waIntro' : kind === 'sms' ? 'smsIntro' : 'pushIntro')}</p>
      {fields.map((f) => (
        <Field form={form} name={f.name} label={f.optional ? `${f.label} ${t('optionalMark')}` : f.label} hint={f.hint}>
          {(p) => f.textarea
            ? <textarea {...p} rows={5} spellcheck={false} />
            : f.secret
              ? <input {...p} type="password" autocomplete="off" required={!f.optional} />
              : <input {...p} autocomplete="off" required={!f.optional} />}
        </Field>
      ))}
      {kind === 'push' && (
        <p>
          <label for="push-file">{t('pushFile')}</label>{' '}
          <input id="push-file" type="file" accept=".json,application/json" onChange={(e) => {
            const file = (e.target as HTMLInputElement).files?.[0];
            if (file) void file.text().then((text) => { (form.ref.current!.elements.namedItem('service_account') as HTMLTextAreaElement).value = text; });
          }} />
        </p>
      )}
      <p class="form-error" role="alert">{form.general}</p>
      <p class="actions">
        <button id="connect-channel" type="submit" disabled={form.busy}>{t('connect')}</button>
        <button type="button" class="secondary" onClick={() => onDone(false)}>{t('cancel')}</button>
      </p>
    </form>
  );
}
