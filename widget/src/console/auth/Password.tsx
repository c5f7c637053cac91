// Forgot password (a link is mailed) and reset password (opened from that link).
import { useState } from 'preact/hooks';
import { call } from '../http';
import { t } from '../i18n';
import { Field, useForm } from '../ui/form';

export function Forgot() {
  const form = useForm(['email']);
  const [sent, setSent] = useState<string | null>(null);
  const submit = form.submit(async () => {
    const email = String(new FormData(form.ref.current!).get('email')).trim();
    await call('POST', '/api/auth/forgot-password', { email });
    setSent(email);
  });
  return (
    <main class="auth">
      <form id="forgot-form" class="card-form" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="forgot-title">
        <h1 id="forgot-title">{t('forgotTitle')}</h1>
        {sent !== null ? (
          <p id="forgot-sent" role="status">{t('forgotSent', { email: sent })}</p>
        ) : (
          <>
            <p>{t('forgotIntro')}</p>
            <Field form={form} name="email" label={t('email')}>
              {(p) => <input {...p} type="email" autocomplete="username" required />}
            </Field>
            <p id="forgot-error" class="form-error" role="alert">{form.general}</p>
            <button id="send-link" type="submit" disabled={form.busy}>{form.busy ? t('sending') : t('sendLink')}</button>
          </>
        )}
        <p class="switch"><a href="#sign-in">{t('toSignIn')}</a></p>
      </form>
    </main>
  );
}

/** Takes the mailed token out of the address bar at once; the form spends it. */
export function useLinkToken(route: string, token: string | null): string | null {
  const [kept] = useState(() => {
    if (token) history.replaceState(history.state, '', `${location.pathname}#${route}`);
    return token;
  });
  return kept;
}

export function Reset({ token }: { token: string | null }) {
  const kept = useLinkToken('reset-password', token);
  const form = useForm(['password'], { invalid_token: t('resetFailed') });
  const [done, setDone] = useState(false);
  const submit = form.submit(async () => {
    const password = String(new FormData(form.ref.current!).get('password'));
    await call('POST', '/api/auth/reset-password', { token: kept ?? '', password });
    setDone(true);
  });
  return (
    <main class="auth">
      <form id="reset-form" class="card-form" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="reset-title">
        <h1 id="reset-title">{t('resetTitle')}</h1>
        {done ? (
          <p id="reset-done" role="status">{t('resetDone')}</p>
        ) : kept ? (
          <>
            <Field form={form} name="password" label={t('newPassword')} hint={t('passwordHint')}>
              {(p) => <input {...p} type="password" autocomplete="new-password" required minLength={12} />}
            </Field>
            <p id="reset-error" class="form-error" role="alert">{form.general}</p>
            <button id="reset" type="submit" disabled={form.busy}>{t('resetDo')}</button>
          </>
        ) : (
          <p class="form-error" role="alert">{t('noToken')}</p>
        )}
        <p class="switch"><a href="#sign-in">{t('toSignIn')}</a>{!done && <> · <a href="#forgot-password">{t('sendLink')}</a></>}</p>
      </form>
    </main>
  );
}
