// The shell: the header (sections, who is signed in, the agent's presence, the language, sign
// out) and the section the route names. Signed out, a protected route shows the sign-in form and
// stays in the address bar, so signing in lands where the link pointed.
import { useEffect, useRef, useState } from 'preact/hooks';
import { currentLang, onLang, setLang, t, type Lang } from './i18n';
import type { Agent, Desk } from './legacy/desk';
import { go, useRoute } from './router';
import * as session from './session';
import { SignIn } from './auth/SignIn';
import { VerifyEmail } from './auth/VerifyEmail';
import { lazy } from './lazy';

// Sections beyond the first view come in chunks of their own.
const Register = lazy(() => import('./auth/Register').then((m) => m.Register));
const Forgot = lazy(() => import('./auth/Password').then((m) => m.Forgot));
const Reset = lazy(() => import('./auth/Password').then((m) => m.Reset));
const AcceptInvitation = lazy(() => import('./auth/AcceptInvitation').then((m) => m.AcceptInvitation));
const Security = lazy(() => import('./account/Security').then((m) => m.Security));

/** Routes anyone may open. */
const OPEN = ['sign-in', 'register', 'verify-email', 'forgot-password', 'reset-password', 'accept-invitation'];
/** Sections drawn by the desk (`legacy/desk.js`). */
const DESK = ['inbox', 'dashboard'];

interface Status { text: string; state: string }

export function App() {
  const route = useRoute();
  const [, setVersion] = useState(0);
  const [signedIn, setSignedIn] = useState(session.signedIn());
  const [why, setWhy] = useState<string | null>(null);
  const [me, setMe] = useState<session.Me | null>(null);
  const [meError, setMeError] = useState<string | null>(null);
  const [agent, setAgent] = useState<Agent | null>(null);
  const [status, setStatus] = useState<Status>({ text: t('signedOut'), state: 'signed-out' });

  useEffect(() => onLang(() => setVersion((v) => v + 1)), []);
  useEffect(() => session.onSession((inNow, reason) => {
    setSignedIn(inNow);
    if (!inNow) {
      setWhy(reason);
      setMe(null);
      setAgent(null);
      setStatus({ text: t('signedOut'), state: 'signed-out' });
    } else {
      setWhy(null);
    }
  }), []);
  useEffect(() => {
    if (!signedIn || me) return;
    let live = true;
    setMeError(null);
    session.fetchMe().then((m) => { if (live) setMe(m); }, (e) => { if (live) setMeError(String(e?.message ?? e)); });
    return () => { live = false; };
  }, [signedIn, me]);

  const name = route.path[0] ?? '';
  // Signed in, the sign-in and registration forms have nothing to do: to the inbox.
  useEffect(() => {
    if (signedIn && ['', 'sign-in', 'register', 'forgot-password'].includes(name)) go('inbox', true);
  }, [signedIn, name]);

  const header = (
    <header key="header">
      <h1>{t('title')}</h1>
      {signedIn && me && (
        <nav id="views" aria-label={t('views')}>
          {DESK.map((v) => (
            <a id={`tab-${v}`} href={`#${v}`} aria-current={name === v ? 'page' : undefined}>{t(v as 'inbox' | 'dashboard')}</a>
          ))}
        </nav>
      )}
      {signedIn && me ? (
        <a id="me" href="#security" title={t('security')} aria-current={name === 'security' ? 'page' : undefined}>{agent?.name ?? me.name}</a>
      ) : <span id="me" />}
      {agent && (
        <>
          <label for="presence" class="sr-only">{t('presence')}</label>
          <select id="presence" onChange={(e) => deskRef.current?.presence((e.target as HTMLSelectElement).value as 'online' | 'away')}>
            <option value="online">{t('online')}</option>
            <option value="away">{t('away')}</option>
          </select>
        </>
      )}
      <span class="lang">
        <label for="lang" class="sr-only">{t('language')}</label>
        <select id="lang" value={currentLang()} onChange={(e) => void setLang((e.target as HTMLSelectElement).value as Lang)}>
          <option value="en">English</option>
          <option value="it">Italiano</option>
        </select>
      </span>
      <span id="status" role="status" data-state={status.state}>{status.text}</span>
      {signedIn && <button id="sign-out" type="button" class="secondary" onClick={() => void session.signOut()}>{t('signOut')}</button>}
    </header>
  );

  const deskRef = useRef<Desk | null>(null);
  let body;
  const token = route.query.get('token');
  if (name === 'verify-email') {
    body = <VerifyEmail key="verify" token={token} signedIn={signedIn} />;
  } else if (name === 'reset-password') {
    body = <Reset key="reset" token={token} />;
  } else if (name === 'accept-invitation') {
    body = <AcceptInvitation key="accept" token={token} />;
  } else if (!signedIn && name === 'forgot-password') {
    body = <Forgot key="forgot" />;
  } else if (!signedIn) {
    body = name === 'register' ? <Register key="register" /> : <SignIn key="sign-in" why={why} />;
  } else if (!me) {
    body = <main key="loading" class="auth"><p class="boot" role={meError ? 'alert' : 'status'}>{meError ?? t('loading')}</p></main>;
  } else if (name === 'security') {
    body = <Security key="security" me={me} onChanged={() => void session.fetchMe().then(setMe, () => {})} />;
  } else {
    body = null;
  }
  const showDesk = signedIn && me !== null && !OPEN.includes(name);
  return (
    <>
      {header}
      {body}
      {showDesk && (
        <DeskHost
          key="desk"
          agent={me!.role !== 'viewer'}
          view={DESK.includes(name) ? (name as 'inbox' | 'dashboard') : null}
          deskRef={deskRef}
          onStatus={setStatus}
          onAgent={setAgent}
        />
      )}
    </>
  );
}

interface DeskHostProps {
  agent: boolean;
  view: 'inbox' | 'dashboard' | null;
  deskRef: { current: Desk | null };
  onStatus: (s: Status) => void;
  onAgent: (a: Agent) => void;
}

/** The desk's container: rendered once, then the desk draws in it (Preact never diffs inside). */
function DeskHost({ agent, view, deskRef, onStatus, onAgent }: DeskHostProps) {
  const root = useRef<HTMLDivElement>(null);
  useEffect(() => {
    let desk: Desk | null = null;
    let off = () => {};
    void import('./legacy/desk').then(({ startDesk }) => {
      if (!root.current) return;
      desk = startDesk(root.current, {
        agent,
        token: session.accessToken,
        refresh: session.refresh,
        authed: (path) => session.authed(path),
        setStatus: (text, state) => onStatus({ text, state }),
        setAgent: onAgent,
      });
      deskRef.current = desk;
      desk.show(viewRef.current);
      off = session.onRefreshed((token) => desk?.reauth(token));
    });
    return () => { off(); desk?.stop(); deskRef.current = null; };
  }, []);
  const viewRef = useRef(view);
  viewRef.current = view;
  useEffect(() => { deskRef.current?.show(view); }, [view]);
  return <div id="desk-root" ref={root} />;
}
