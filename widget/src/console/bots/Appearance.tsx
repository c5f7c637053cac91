// #bots/ID/appearance: how the widget looks and where it may appear — title, colour, corner,
// avatar, allowed sites — previewed live by the widget itself; then the snippet to paste.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Bot, WidgetPosition } from '../api.gen';
import { t } from '../i18n';
import { api } from '../session';
import { CopyButton } from '../ui/copy';
import { Field, useForm } from '../ui/form';

const DEFAULT_COLOR = '#3b5bdb';
const HEX = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i;

export function Appearance({ bot, writer, onSaved }: { bot: Bot; writer: boolean; onSaved: (b: Bot) => void }) {
  const form = useForm(['appearance.title', 'appearance.color', 'appearance.position', 'appearance.avatar_url', 'integration.allowed_origins']);
  const a = bot.appearance ?? {};
  const [title, setTitle] = useState(a.title ?? '');
  const [color, setColor] = useState(a.color ?? DEFAULT_COLOR);
  const [position, setPosition] = useState<WidgetPosition>(a.position ?? 'bottom-right');
  const [avatar, setAvatar] = useState(a.avatar_url ?? '');
  const [origins, setOrigins] = useState((bot.integration?.allowed_origins ?? []).join('\n'));
  const [saved, setSaved] = useState(false);
  const submit = form.submit(async () => {
    setSaved(false);
    const opt = (v: string) => (v.trim() ? v.trim() : null);
    onSaved(await api<Bot>('PATCH', `/api/bots/${encodeURIComponent(bot.id)}`, {
      appearance: { title: opt(title), color: opt(color), position, avatar_url: opt(avatar) },
      integration: { allowed_origins: origins.split('\n').map((o) => o.trim()).filter(Boolean) },
    }));
    setSaved(true);
  });
  const snippet = `<script src="${location.origin}/widget.js" data-bot="${bot.id}" async></script>`;
  const off = !writer;
  return (
    <div class="intent-editor">
      <div>
        <form id="appearance-form" class="panel" ref={form.ref} onSubmit={submit} onInput={() => setSaved(false)} noValidate aria-label={t('appearance')}>
          <Field form={form} name="appearance.title" label={t('widgetTitle')} hint={t('widgetTitleHint')}>
            {(p) => <input {...p} value={title} disabled={off} maxLength={100} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />}
          </Field>
          <Field form={form} name="appearance.color" label={t('color')} hint={t('colorHint')}>
            {(p) => (
              <span class="row">
                <input {...p} value={color} disabled={off} maxLength={7} onInput={(e) => setColor((e.target as HTMLInputElement).value)} />
                <input type="color" aria-label={t('colorPicker')} value={HEX.test(color) && color.length === 7 ? color : DEFAULT_COLOR} disabled={off} onInput={(e) => { setColor((e.target as HTMLInputElement).value); setSaved(false); }} />
              </span>
            )}
          </Field>
          <Field form={form} name="appearance.position" label={t('position')}>
            {(p) => (
              <select {...p} disabled={off} onChange={(e) => setPosition((e.target as HTMLSelectElement).value as WidgetPosition)}>
                <option value="bottom-right" selected={position === 'bottom-right'}>{t('bottomRight')}</option>
                <option value="bottom-left" selected={position === 'bottom-left'}>{t('bottomLeft')}</option>
              </select>
            )}
          </Field>
          <Field form={form} name="appearance.avatar_url" label={t('avatar')} hint={t('avatarHint')}>
            {(p) => <input {...p} type="url" value={avatar} disabled={off} placeholder="https://" onInput={(e) => setAvatar((e.target as HTMLInputElement).value)} />}
          </Field>
          <Field form={form} name="integration.allowed_origins" label={t('origins')} hint={t('originsHint')}>
            {(p) => <textarea {...p} rows={3} value={origins} disabled={off} placeholder="https://www.example.com" onInput={(e) => setOrigins((e.target as HTMLTextAreaElement).value)} />}
          </Field>
          <p class="form-error" role="alert">{form.general}</p>
          {writer && (
            <p class="actions">
              <button id="save-appearance" type="submit" disabled={form.busy}>{t('save')}</button>
              <span id="appearance-saved" role="status" class="ok">{saved ? t('savedCache') : ''}</span>
            </p>
          )}
        </form>
        <section class="panel" aria-labelledby="install-title">
          <h2 id="install-title">{t('install')}</h2>
          <p>{t('installHint')}</p>
          <pre id="snippet" class="snippet" tabIndex={0}>{snippet}</pre>
          <p class="actions"><CopyButton id="copy-snippet" text={snippet} /></p>
          {bot.status !== 'ACTIVE' && <p class="notice">{t('installDraft')}</p>}
        </section>
      </div>
      <WidgetPreview bot={bot} title={title} color={color} position={position} avatar={avatar} />
    </div>
  );
}

/** The widget as visitors will see it with these settings (its launcher drawn beside it). */
function WidgetPreview({ bot, title, color, position, avatar }: { bot: Bot; title: string; color: string; position: WidgetPosition; avatar: string }) {
  const host = useRef<HTMLDivElement>(null);
  const key = JSON.stringify([title, color, position, avatar, bot.name, bot.config.welcome_message]);
  useEffect(() => {
    let stop = () => {};
    let live = true;
    const timer = setTimeout(() => {
      void import('../preview').then(({ showPreview }) => {
        if (!live || !host.current) return;
        const appearance = { title: title.trim() || null, color: HEX.test(color) ? color : null, position, avatar_url: avatar.trim() || null };
        const settings = { id: bot.id, name: bot.name, language: bot.language, appearance, welcome_message: bot.config.welcome_message ?? undefined };
        stop = showPreview(host.current, settings, []);
      });
    }, 150);
    return () => { live = false; clearTimeout(timer); stop(); };
  }, [key]);
  return (
    <section class="preview" aria-labelledby="look-title">
      <h2 id="look-title">{t('preview')}</h2>
      <div id="appearance-preview" ref={host} class="preview-box" />
      <div class={`launcher-row ${position}`}>
        <span class="launcher" style={{ background: HEX.test(color) ? color : DEFAULT_COLOR }} aria-hidden="true" />
      </div>
    </section>
  );
}
