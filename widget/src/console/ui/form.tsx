// Forms: each input says its own error (the field an API refusal names, `details.field`, or a
// code the console knows belongs to a field), the rest goes to the form's alert line.
import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { ApiError } from '../http';
import { t } from '../i18n';

/** Codes whose field the API does not name. */
const CODE_FIELDS: Record<string, string> = {
  email_taken: 'email', totp_required: 'totp', invalid_totp: 'totp', shortcut_taken: 'shortcut',
  intent_name_taken: 'name', form_id_taken: 'response.content.form_id',
};

export interface FormState {
  /** Errors by field name. */
  errors: Record<string, string>;
  /** The error no field owns. */
  general: string;
  busy: boolean;
  /** Runs `work`, showing what it throws where it belongs. */
  submit: (work: () => Promise<void>) => (e: Event) => Promise<void>;
}

/** The message shown for an error nobody else explains. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('network');
    if (e.status === 429 && e.retryAfter) return t('tooMany', { seconds: e.retryAfter });
    return e.message;
  }
  return t('error', { message: String((e as Error)?.message ?? e) });
}

/** The field of `names` an error belongs to: its own, else the longest dotted prefix. */
export function fieldOf(e: unknown, names: string[]): string | null {
  if (!(e instanceof ApiError)) return null;
  const field = e.field ?? CODE_FIELDS[e.code] ?? null;
  if (!field) return null;
  if (names.includes(field)) return field;
  const owner = names.filter((n) => field.startsWith(`${n}.`)).sort((a, b) => b.length - a.length)[0];
  return owner ?? null;
}

export function useForm(names: string[], messages: Record<string, string> = {}): FormState & { ref: { current: HTMLFormElement | null } } {
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState('');
  const [busy, setBusy] = useState(false);
  const ref = useRef<HTMLFormElement>(null);
  const submit = (work: () => Promise<void>) => async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setErrors({});
    setGeneral('');
    try {
      await work();
    } catch (err) {
      // The fields named up front, and every named input the form holds now (editors add theirs).
      const present = Array.from(ref.current?.elements ?? [], (el) => (el as HTMLInputElement).name).filter(Boolean);
      const field = fieldOf(err, [...names, ...present]);
      const text = (err instanceof ApiError && messages[err.code]) || describe(err);
      if (field) {
        setErrors({ [field]: text });
        // Focus the input that is wrong, once it shows its error.
        setTimeout(() => ref.current?.querySelector<HTMLElement>(`[name="${CSS.escape(field)}"]`)?.focus(), 0);
      } else {
        setGeneral(text);
      }
    } finally {
      setBusy(false);
    }
  };
  return { errors, general, busy, submit, ref };
}

/** What a field's input is given: its id and name, and its error state for screen readers. */
export interface FieldInputProps {
  id: string;
  name: string;
  'aria-invalid'?: 'true';
  'aria-describedby'?: string;
}

interface FieldProps {
  form: FormState;
  name: string;
  label: string;
  hint?: string;
  children: (props: FieldInputProps) => ComponentChildren;
}

/** A labelled input with its hint and error, wired for screen readers. */
export function Field({ form, name, label, hint, children }: FieldProps) {
  const id = name.replace(/[.[\]]+/g, '-').replace(/-$/, '');
  const error = form.errors[name];
  const describedBy = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children({ id, name, 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': describedBy })}
      {hint && <p id={`${id}-hint`} class="hint">{hint}</p>}
      {error && <p id={`${id}-error`} class="field-error">{error}</p>}
    </div>
  );
}
