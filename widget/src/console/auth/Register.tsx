import { useState } from 'preact/hooks';
import { call } from '../http';
import { t } from '../i18n';
import { Field, useForm } from '../ui/form';

/** A new workspace and its owner; then the verification mail is on its way. */
export function Register() {
  const form = useForm(['name', 'email', 'password', 'company'], { email_taken: t('emailTaken') });
  const [done, setDone] = useState<string | null>(null);
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const body: Record<string, string> = {
      name: String(data.get('name')),
      email: String(data.get('email')),
      password: String(data.get('password')),
    };
    const company = String(data.get('company') ?? '').trim();
    if (company) body.company = company;
    await call('POST', '/api/auth/register', body);
    setDone(body.email.trim());
  });
  if (done !== null) {
    return (
      <main class="auth">
        <section id="register-done" class="card-form" aria-labelledby="done-title">
          <h1 id="done-title">{t('registeredTitle')}</h1>
          <p>{t('registered', { email: done })}</p>
          <p><a class="button" href="#sign-in">{t('toSignIn')}</a></p>
        </section>
      </main>
    );
  }
  return (
    <main class="auth">
      <form id="register-form" class="card-form" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="register-title">
        <h1 id="register-title">{t('registerTitle')}</h1>
        <Field form={form} name="name" label={t('name')}>
          {(p) => <input {...p} autocomplete="name" required maxLength={200} />}
        </Field>
        <Field form={form} name="email" label={t('email')}>
          {(p) => <input {...p} type="email" autocomplete="email" required />}
        </Field>
        <Field form={form} name="password" label={t('password')} hint={t('passwordHint')}>
          {(p) => <input {...p} type="password" autocomplete="new-password" required minLength={12} />}
        </Field>
        <Field form={form} name="company" label={t('company')}>
          {(p) => <input {...p} autocomplete="organization" maxLength={200} />}
        </Field>
        <p id="register-error" class="form-error" role="alert">{form.general}</p>
        <button id="register" type="submit" disabled={form.busy}>{form.busy ? t('registering') : t('register')}</button>
        <p class="switch">{t('haveAccount')} <a href="#sign-in">{t('signIn')}</a></p>
      </form>
    </main>
  );
}
