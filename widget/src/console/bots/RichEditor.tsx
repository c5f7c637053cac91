// The rich part of an answer: an image, a file, a card, a carousel of cards or a form. Each input
// is named by the path the API names in a refusal (`response.content.cards[1].title`), so an
// error lands on its input.
import type { Card, FormField, FormInput, RichContent } from '../api.gen';
import { t } from '../i18n';
import { Field, type FormState } from '../ui/form';

type Kind = RichContent['type'] | 'none';
const KINDS: Kind[] = ['none', 'image', 'file', 'card', 'carousel', 'form'];
const INPUTS: FormInput[] = ['text', 'email', 'phone', 'number', 'textarea'];
const P = 'response.content';

const blankCard = (): Card => ({ title: '', buttons: [] });

function fresh(kind: Kind): RichContent | null {
  switch (kind) {
    case 'image': return { type: 'image', url: '' };
    case 'file': return { type: 'file', url: '', name: '' };
    case 'card': return { type: 'card', ...blankCard() };
    case 'carousel': return { type: 'carousel', cards: [blankCard(), blankCard()] };
    case 'form': return { type: 'form', form_id: '', fields: [{ name: '', label: '', input: 'text', required: true }] };
    default: return null;
  }
}

/** Drops empty optional values, so the API sees what was filled in. */
export function cleanContent(c: RichContent | null): RichContent | null {
  if (!c) return null;
  const opt = (v: string | null | undefined) => (v && v.trim() ? v : undefined);
  const card = (k: Card): Card => ({
    title: k.title,
    ...(opt(k.subtitle) ? { subtitle: k.subtitle } : {}),
    ...(opt(k.image_url) ? { image_url: k.image_url } : {}),
    buttons: k.buttons.map((b) => (opt(b.url) ? { label: b.label, url: b.url } : { label: b.label, payload: b.payload ?? b.label })),
  });
  switch (c.type) {
    case 'image': return { type: 'image', url: c.url, ...(opt(c.alt) ? { alt: c.alt } : {}) };
    case 'file': return { type: 'file', url: c.url, name: c.name };
    case 'card': return { type: 'card', ...card(c) };
    case 'carousel': return { type: 'carousel', cards: c.cards.map(card) };
    case 'form': return { type: 'form', form_id: c.form_id, fields: c.fields, ...(opt(c.submit_label) ? { submit_label: c.submit_label } : {}) };
  }
}

interface Props { form: FormState; value: RichContent | null; onChange: (c: RichContent | null) => void; disabled: boolean }

export function RichEditor({ form, value, onChange, disabled }: Props) {
  const kind: Kind = value?.type ?? 'none';
  const text = (name: string, label: string, v: string | null | undefined, set: (s: string) => void, type: 'text' | 'url' = 'text') => (
    <Field form={form} name={name} label={label}>
      {(p) => type === 'url'
        ? <input {...p} type="url" value={v ?? ''} disabled={disabled} onInput={(e) => set((e.target as HTMLInputElement).value)} />
        : <input {...p} value={v ?? ''} disabled={disabled} onInput={(e) => set((e.target as HTMLInputElement).value)} />}
    </Field>
  );
  const cardEditor = (at: string, card: Card, set: (c: Card) => void) => (
    <div class="card-editor">
      {text(`${at}.title`, t('cardTitle'), card.title, (title) => set({ ...card, title }))}
      {text(`${at}.subtitle`, t('cardSubtitle'), card.subtitle, (subtitle) => set({ ...card, subtitle }))}
      {text(`${at}.image_url`, t('imageUrl'), card.image_url, (image_url) => set({ ...card, image_url }), 'url')}
      {card.buttons.map((b, i) => (
        <div class="row">
          {text(`${at}.buttons[${i}].label`, t('buttonLabel'), b.label, (label) => set({ ...card, buttons: card.buttons.map((x, j) => (j === i ? { ...x, label } : x)) }))}
          {text(`${at}.buttons[${i}].url`, t('buttonUrl'), b.url, (url) => set({ ...card, buttons: card.buttons.map((x, j) => (j === i ? { ...x, url } : x)) }), 'url')}
          <button type="button" class="link" disabled={disabled} onClick={() => set({ ...card, buttons: card.buttons.filter((_, j) => j !== i) })}>{t('remove')}</button>
        </div>
      ))}
      {card.buttons.length < 3 && <button type="button" class="secondary small" disabled={disabled} onClick={() => set({ ...card, buttons: [...card.buttons, { label: '' }] })}>{t('addButton')}</button>}
    </div>
  );
  let body = null;
  if (value?.type === 'image') {
    body = <>{text(`${P}.url`, t('imageUrl'), value.url, (url) => onChange({ ...value, url }), 'url')}{text(`${P}.alt`, t('altText'), value.alt, (alt) => onChange({ ...value, alt }))}</>;
  } else if (value?.type === 'file') {
    body = <>{text(`${P}.url`, t('fileUrl'), value.url, (url) => onChange({ ...value, url }), 'url')}{text(`${P}.name`, t('fileName'), value.name, (name) => onChange({ ...value, name }))}</>;
  } else if (value?.type === 'card') {
    body = cardEditor(P, value, (c) => onChange({ ...c, type: 'card' }));
  } else if (value?.type === 'carousel') {
    body = (
      <>
        {value.cards.map((c, i) => (
          <fieldset class="sub">
            <legend>{t('cardN', { n: i + 1 })}</legend>
            {cardEditor(`${P}.cards[${i}]`, c, (next) => onChange({ ...value, cards: value.cards.map((x, j) => (j === i ? next : x)) }))}
            {value.cards.length > 1 && <button type="button" class="link" disabled={disabled} onClick={() => onChange({ ...value, cards: value.cards.filter((_, j) => j !== i) })}>{t('removeCard')}</button>}
          </fieldset>
        ))}
        {value.cards.length < 10 && <button type="button" class="secondary small" disabled={disabled} onClick={() => onChange({ ...value, cards: [...value.cards, blankCard()] })}>{t('addCard')}</button>}
      </>
    );
  } else if (value?.type === 'form') {
    const setField = (i: number, f: FormField) => onChange({ ...value, fields: value.fields.map((x, j) => (j === i ? f : x)) });
    body = (
      <>
        {text(`${P}.form_id`, t('formId'), value.form_id, (form_id) => onChange({ ...value, form_id }))}
        {text(`${P}.submit_label`, t('submitLabel'), value.submit_label, (submit_label) => onChange({ ...value, submit_label }))}
        {value.fields.map((f, i) => (
          <fieldset class="sub row">
            <legend>{t('fieldN', { n: i + 1 })}</legend>
            {text(`${P}.fields[${i}].name`, t('fieldName'), f.name, (name) => setField(i, { ...f, name }))}
            {text(`${P}.fields[${i}].label`, t('fieldLabel'), f.label, (label) => setField(i, { ...f, label }))}
            <Field form={form} name={`${P}.fields[${i}].input`} label={t('fieldInput')}>
              {(p) => <select {...p} disabled={disabled} onChange={(e) => setField(i, { ...f, input: (e.target as HTMLSelectElement).value as FormInput })}>{INPUTS.map((k) => <option value={k} selected={k === f.input}>{k}</option>)}</select>}
            </Field>
            <label class="check"><input type="checkbox" checked={f.required ?? false} disabled={disabled} onChange={(e) => setField(i, { ...f, required: (e.target as HTMLInputElement).checked })} /> {t('required')}</label>
            {value.fields.length > 1 && <button type="button" class="link" disabled={disabled} onClick={() => onChange({ ...value, fields: value.fields.filter((_, j) => j !== i) })}>{t('remove')}</button>}
          </fieldset>
        ))}
        <button type="button" class="secondary small" disabled={disabled} onClick={() => onChange({ ...value, fields: [...value.fields, { name: '', label: '', input: 'text', required: false }] })}>{t('addField')}</button>
      </>
    );
  }
  return (
    <fieldset class="rich">
      <legend>{t('richContent')}</legend>
      <Field form={form} name={P} label={t('richKind')}>
        {(p) => (
          <select {...p} disabled={disabled} onChange={(e) => onChange(fresh((e.target as HTMLSelectElement).value as Kind))}>
            {KINDS.map((k) => <option value={k} selected={k === kind}>{t(`rich_${k}`)}</option>)}
          </select>
        )}
      </Field>
      {body}
    </fieldset>
  );
}
