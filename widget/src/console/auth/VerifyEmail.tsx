import { useEffect, useState } from 'preact/hooks';
import { call } from '../http';
import { t } from '../i18n';
import { describe } from '../ui/form';

type State = 'busy' | 'ok' | 'error';

/**
 * Opened from the verification mail: spends the token, then takes it out of the address bar;
 * `onVerified` lets a signed-in console read the account again.
 */
export function VerifyEmail({ token, signedIn, onVerified }: { token: string | null; signedIn: boolean; onVerified: () => void }) {
  const [state, setState] = useState<State>(token ? 'busy' : 'error');
  const [text, setText] = useState(token ? t('verifying') : t('noToken'));
  useEffect(() => {
    if (!token) return;
    // The token is spent (or refused): it leaves the address bar and the history either way.
    history.replaceState(history.state, '', `${location.pathname}#verify-email`);
    call('POST', '/api/auth/verify-email', { token }).then(
      () => { setState('ok'); setText(t('verified')); onVerified(); },
      (e) => { setState('error'); setText((e as { code?: string }).code === 'invalid_token' ? t('verifyFailed') : describe(e)); },
    );
  }, [token]);
  return (
    <main class="auth">
      <section class="card-form" aria-labelledby="verify-title">
        <h1 id="verify-title">{t('verifyTitle')}</h1>
        <p id="verify-result" data-state={state} role="status">{text}</p>
        {state !== 'busy' && <p><a class="button" href={signedIn ? '#' : '#sign-in'}>{t('continue')}</a></p>}
      </section>
    </main>
  );
}
