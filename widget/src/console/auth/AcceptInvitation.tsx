// Opened from an invitation mail: the invited person names themselves, picks a password, and
// is signed in to the workspace that invited them.
import { call } from '../http';
import { t } from '../i18n';
import { begin, signOut } from '../session';
import { Field, useForm } from '../ui/form';
import { useLinkToken } from './Password';

interface Account { email: string }
interface Issued { access_token: string; refresh_token: string; expires_in: number }

export function AcceptInvitation({ token }: { token: string | null }) {
  const kept = useLinkToken('accept-invitation', token);
  const form = useForm(['name', 'password'], {
    invalid_token: t('verifyFailed'), invitation_void: t('invitationVoid'), email_taken: t('emailTaken'),
  });
  const submit = form.submit(async () => {
    const data = new FormData(form.ref.current!);
    const password = String(data.get('password'));
    const account = await call<Account>('POST', '/api/auth/accept-invitation', { token: kept ?? '', name: String(data.get('name')), password });
    const issued = await call<Issued>('POST', '/api/auth/login', { email: account.email, password });
    await signOut(); // whoever was signed in here (revoked on the server too), the new member is now
    begin(issued);
    location.hash = '';
  });
  return (
    <main class="auth">
      <form id="accept-form" class="card-form" ref={form.ref} onSubmit={submit} noValidate aria-labelledby="accept-title">
        <h1 id="accept-title">{t('acceptTitle')}</h1>
        {kept ? (
          <>
            <p>{t('acceptIntro')}</p>
            <Field form={form} name="name" label={t('name')}>
              {(p) => <input {...p} autocomplete="name" required maxLength={200} />}
            </Field>
            <Field form={form} name="password" label={t('password')} hint={t('passwordHint')}>
              {(p) => <input {...p} type="password" autocomplete="new-password" required minLength={12} />}
            </Field>
            <p id="accept-error" class="form-error" role="alert">{form.general}</p>
            <button id="accept" type="submit" disabled={form.busy}>{t('acceptDo')}</button>
          </>
        ) : (
          <p class="form-error" role="alert">{t('noToken')}</p>
        )}
      </form>
    </main>
  );
}
