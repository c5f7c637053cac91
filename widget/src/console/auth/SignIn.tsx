import { useState } from 'preact/hooks';
import { call } from '../http';
import { t } from '../i18n';
import { begin } from '../session';
import { Field, useForm } from '../ui/form';

interface Issued { access_token: string; refresh_token: string; expires_in: number }

/** The sign-in form; `why` says why the last session ended. */
export function SignIn({ why }: { why: string | null }) {
  const form = useForm(['email', 'password', 'totp']);
  const [needTotp, setNeedTotp] = useState(false);
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const body: Record<string, string> = { email: String(data.get('email')), password: String(data.get('password')) };
    const totp = String(data.get('totp') ?? '').trim();
    if (totp) body.totp = totp;
    try {
      begin(await call<Issued>('POST', '/api/auth/login', body));
    } catch (e) {
      if ((e as { code?: string }).code === 'totp_required') setNeedTotp(true);
      throw e;
    }
  });
  const general = form.general || (!form.busy && why) || '';
  return (
    <main class="auth">
      <form id="login" ref={form.ref} onSubmit={submit} autocomplete="on" noValidate aria-labelledby="login-title">
        <h1 id="login-title">{t('signInTitle')}</h1>
        <Field form={form} name="email" label={t('email')}>
          {(p) => <input {...p} type="email" autocomplete="username" required />}
        </Field>
        <Field form={form} name="password" label={t('password')}>
          {(p) => <input {...p} type="password" autocomplete="current-password" required />}
        </Field>
        {(needTotp || form.errors.totp) && (
          <Field form={form} name="totp" label={t('totp')} hint={t('totpNeeded')}>
            {(p) => <input {...p} inputMode="numeric" autocomplete="one-time-code" autoFocus />}
          </Field>
        )}
        <p id="login-error" class="form-error" role="alert">{general}</p>
        <button id="sign-in" type="submit" disabled={form.busy}>{form.busy ? t('signingIn') : t('signIn')}</button>
        <p class="switch"><a id="to-forgot" href="#forgot-password">{t('forgot')}</a></p>
        <p class="switch">{t('noAccount')} <a id="to-register" href="#register">{t('createAccount')}</a></p>
      </form>
    </main>
  );
}
