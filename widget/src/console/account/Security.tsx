// Two-step sign-in: enrol an authenticator (QR code from the otpauth URI, the key for typing),
// confirm a first code, then the recovery codes — shown once.
import { useState } from 'preact/hooks';
import { t } from '../i18n';
import { api, type Me } from '../session';
import { CopyButton } from '../ui/copy';
import { Field, useForm } from '../ui/form';
import { Qr } from '../ui/qr';
import { LanguagePicker } from '../ui/lang';

interface Enrollment { otpauth_url: string; secret: string }
interface Enabled { enabled: boolean; recovery_codes: string[] }

export function Security({ me, onChanged }: { me: Me; onChanged: () => void }) {
  const [enrollment, setEnrollment] = useState<Enrollment | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const start = useForm([]);
  const confirm = useForm(['code']);
  const resend = useForm([]);
  const [resent, setResent] = useState(false);
  const sendAgain = resend.submit(async () => {
    await api('POST', '/api/auth/resend-verification');
    setResent(true);
  });
  const begin = start.submit(async () => setEnrollment(await api<Enrollment>('POST', '/api/auth/totp/enroll')));
  const finish = confirm.submit(async () => {
    const code = String(new FormData(confirm.ref.current!).get('code')).trim();
    setCodes((await api<Enabled>('POST', '/api/auth/totp/confirm', { code })).recovery_codes);
  });
  return (
    <main class="page" aria-labelledby="security-title">
      <h1 id="security-title">{t('account')}</h1>
      <section class="panel" aria-labelledby="prefs-title">
        <h2 id="prefs-title">{t('preferences')}</h2>
        <p class="row"><span>{t('languageLabel')}</span> <LanguagePicker /></p>
      </section>
      <h2>{t('securityTitle')}</h2>
      {!me.email_verified && (
        <form id="verify-again" class="notice" ref={resend.ref} onSubmit={sendAgain}>
          <p role="status">{resent ? t('verificationResent', { email: me.email }) : t('emailUnverified')}</p>
          <p class="form-error" role="alert">{resend.general}</p>
          {!resent && <button id="resend-verification" type="submit" class="secondary" disabled={resend.busy}>{t('resendVerification')}</button>}
        </form>
      )}
      {codes ? (
        <section id="recovery" class="panel" aria-labelledby="recovery-title">
          <h2 id="recovery-title">{t('recoveryTitle')}</h2>
          <p>{t('recoveryIntro')}</p>
          <ol id="recovery-codes" class="codes">{codes.map((c) => <li>{c}</li>)}</ol>
          <p class="actions">
            <CopyButton id="copy-codes" text={codes.join('\n')} />
            <button id="codes-saved" type="button" onClick={() => { setCodes(null); setEnrollment(null); onChanged(); }}>{t('saved')}</button>
          </p>
        </section>
      ) : me.totp_enabled ? (
        <p id="totp-state" data-state="on" class="panel">{t('totpOn')}</p>
      ) : enrollment ? (
        <section class="panel" aria-labelledby="enrol-title">
          <h2 id="enrol-title">{t('totpStart')}</h2>
          <p>{t('totpScan')}</p>
          <div class="enrol">
            <Qr text={enrollment.otpauth_url} label={enrollment.otpauth_url} />
            <div>
              <p>{t('totpKey')}: <code id="totp-secret">{enrollment.secret}</code></p>
              <p><a id="totp-link" href={enrollment.otpauth_url}>{t('totpOpen')}</a></p>
            </div>
          </div>
          <form id="totp-form" ref={confirm.ref} onSubmit={finish} noValidate>
            <Field form={confirm} name="code" label={t('totpCode')}>
              {(p) => <input {...p} inputMode="numeric" autocomplete="one-time-code" required maxLength={12} />}
            </Field>
            <p class="form-error" role="alert">{confirm.general}</p>
            <button id="totp-confirm" type="submit" disabled={confirm.busy}>{t('totpConfirm')}</button>
          </form>
        </section>
      ) : (
        <form id="totp-start" class="panel" ref={start.ref} onSubmit={begin}>
          <p id="totp-state" data-state="off">{t('totpOff')}</p>
          <p class="form-error" role="alert">{start.general}</p>
          <button id="totp-enrol" type="submit" disabled={start.busy}>{t('totpStart')}</button>
        </form>
      )}
    </main>
  );
}
