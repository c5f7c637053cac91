// The shell: the header (sections, who is signed in, the agent's presence, the language, sign
// out) and the section the route names. Signed out, a protected route shows the sign-in form and
// stays in the address bar, so signing in lands where the link pointed.
import type { ComponentType } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { AgentRef } from './api.gen';
import type { DeskHandle, DeskProps, DeskStatus } from './desk/Desk';
import { onLang, t } from './i18n';
import { canTakeChats, canWrite } from './roles';
import { go, useRoute } from './router';
import * as session from './session';
import { SignIn } from './auth/SignIn';
import { VerifyEmail } from './auth/VerifyEmail';
import { lazy } from './lazy';
import { LanguagePicker } from './ui/lang';

// Sections beyond the first view come in chunks of their own.
const Register = lazy(() => import('./auth/Register').then((m) => m.Register));
const Forgot = lazy(() => import('./auth/Password').then((m) => m.Forgot));
const Reset = lazy(() => import('./auth/Password').then((m) => m.Reset));
const AcceptInvitation = lazy(() => import('./auth/AcceptInvitation').then((m) => m.AcceptInvitation));
const Security = lazy(() => import('./account/Security').then((m) => m.Security));
const BotList = lazy(() => import('./bots/BotList').then((m) => m.BotList));
const NewBot = lazy(() => import('./bots/BotList').then((m) => m.NewBot));
const BotPage = lazy(() => import('./bots/BotPage').then((m) => m.BotPage));
const Workspace = lazy(() => import('./workspace/Workspace').then((m) => m.Workspace));
const Billing = lazy(() => import('./billing/Billing').then((m) => m.Billing));

/** Routes anyone may open. */
const OPEN = ['sign-in', 'register', 'verify-email', 'forgot-password', 'reset-password', 'accept-invitation'];
/** Sections drawn by the desk (`desk/Desk.tsx`, a chunk of its own). */
const DESK = ['inbox', 'dashboard'];
/** Routes that, signed in, lead to the member's first section. */
const LANDING = ['', 'sign-in', 'register', 'forgot-password'];
/** The header's sections. */
const SECTIONS = ['bots', 'inbox', 'dashboard', 'workspace', 'billing'] as const;

/** The header's status: the agent socket's, or the session's. */
type Status = DeskStatus | 'signed-out' | 'signed-in' | 'error';

export function App() {
  const route = useRoute();
  const [, setVersion] = useState(0);
  const [signedIn, setSignedIn] = useState(session.signedIn());
  const [why, setWhy] = useState<string | null>(null);
  const [me, setMe] = useState<session.Me | null>(null);
  const [meError, setMeError] = useState<string | null>(null);
  const [agent, setAgent] = useState<AgentRef | null>(null);
  // The sections show once the desk (the inbox and dashboard) is drawn, so a link to either
  // finds it there.
  const [deskReady, setDeskReady] = useState(false);
  // The desk (its chunk, the agent socket) is started at once on #inbox and #dashboard, and a
  // moment after the first view elsewhere (the agent goes online all the same): it stays off the
  // first view's critical path.
  const [deskWanted, setDeskWanted] = useState(false);
  const [status, setStatus] = useState<Status>('signed-out');

  useEffect(() => onLang(() => setVersion((v) => v + 1)), []);
  useEffect(() => session.onSession((inNow, reason) => {
    setSignedIn(inNow);
    if (!inNow) {
      setWhy(reason);
      setMe(null);
      setAgent(null);
      setDeskReady(false);
      setDeskWanted(false);
      setStatus('signed-out');
    } else {
      setWhy(null);
      // Signed in, before the desk's socket says more (it starts a moment after the first view).
      setStatus((s) => (s === 'signed-out' ? 'signed-in' : s));
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
  // The section the console opens on is fetched while it asks who is signed in.
  useEffect(() => {
    if (!signedIn) return;
    const first = { bots: route.path[1] === 'new' ? NewBot : route.path[1] ? BotPage : BotList, workspace: Workspace, billing: Billing, security: Security }[name];
    first?.preload();
  }, [signedIn]);
  // Signed in, the sign-in and registration forms have nothing to do: to the member's first
  // section — the bots for a workspace's writer while it has none, else the inbox for those who
  // take chats, else the dashboard.
  useEffect(() => {
    if (signedIn && me && name === 'inbox' && !canTakeChats(me.role)) { go('dashboard', true); return; }
    if (!signedIn || !me || !LANDING.includes(name)) return;
    if (!canTakeChats(me.role)) { go('dashboard', true); return; }
    if (!canWrite(me.role)) { go('inbox', true); return; }
    void session.api<{ data: unknown[] }>('GET', '/api/bots').then(
      (bots) => go(bots.data.length ? 'inbox' : 'bots', true),
      () => go('inbox', true),
    );
  }, [signedIn, me, name]);

  const header = (
    <header key="header">
      <h1>{t('title')}</h1>
      {signedIn && me && (deskReady || !DESK.includes(name)) && !LANDING.includes(name) && (
        <nav id="views" aria-label={t('views')}>
          {SECTIONS.filter((v) => v !== 'inbox' || canTakeChats(me.role)).map((v) => (
            <a id={`tab-${v}`} href={`#${v}`} aria-current={name === v ? 'page' : undefined}>{t(v)}</a>
          ))}
        </nav>
      )}
      {signedIn && me ? (
        <a id="me" href="#security" title={t('account')} aria-current={name === 'security' ? 'page' : undefined}>{agent?.name ?? me.name}</a>
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
      {!signedIn && <LanguagePicker />}
      <span id="status" role="status" data-state={status}>{statusWord(status)}</span>
      {signedIn && <button id="sign-out" type="button" class="secondary" onClick={() => void session.signOut()}>{t('signOut')}</button>}
    </header>
  );

  const deskRef = useRef<DeskHandle | null>(null);
  let body;
  const token = route.query.get('token');
  if (name === 'verify-email') {
    body = <VerifyEmail key="verify" token={token} signedIn={signedIn} onVerified={() => { if (signedIn) void session.fetchMe().then(setMe, () => {}); }} />;
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
  } else if (name === 'bots' && route.path[1] === 'new') {
    body = <NewBot key="new-bot" />;
  } else if (name === 'bots' && route.path[1]) {
    body = <BotPage key={`bot-${route.path[1]}`} me={me} id={route.path[1]} section={route.path[2] ?? ''} sub={route.path[3] ?? null} />;
  } else if (name === 'bots') {
    body = <BotList key="bots" me={me} />;
  } else if (name === 'workspace') {
    body = <Workspace key="workspace" me={me} section={route.path[1] ?? ''} />;
  } else if (name === 'billing') {
    body = <Billing key="billing" me={me} section={(route.path[1] ?? '').split('?')[0]} />;
  } else if (name === 'security') {
    body = <Security key="security" me={me} onChanged={() => void session.fetchMe().then(setMe, () => {})} />;
  } else {
    body = null;
  }
  useEffect(() => {
    if (!signedIn || !me || deskWanted) return;
    if (DESK.includes(name)) { setDeskWanted(true); return; }
    const timer = setTimeout(() => setDeskWanted(true), 1500);
    return () => clearTimeout(timer);
  }, [signedIn, me, name, deskWanted]);
  const showDesk = signedIn && me !== null && !OPEN.includes(name) && deskWanted;
  // The desk and dashboard fill the window and scroll inside; other sections scroll the page.
  const fill = showDesk && DESK.includes(name);
  useEffect(() => { document.getElementById('app')?.classList.toggle('fill', fill); }, [fill]);
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
          onReady={() => setDeskReady(true)}
        />
      )}
    </>
  );
}

interface DeskHostProps {
  agent: boolean;
  view: 'inbox' | 'dashboard' | null;
  deskRef: { current: DeskHandle | null };
  onStatus: (s: Status) => void;
  onAgent: (a: AgentRef) => void;
  onReady: () => void;
}

/** What the header says for the agent socket's state (in the console's language, at each render). */
function statusWord(state: Status): string {
  if (state === 'connected') return t('online');
  if (state === 'connecting') return t('connecting');
  if (state === 'viewer' || state === 'signed-in') return t('signedInViewer');
  if (state === 'error') return t('network');
  return t('signedOut');
}

/** The desk's chunk, loaded once: the desk draws when it is in. */
function DeskHost({ agent, view, deskRef, onStatus, onAgent, onReady }: DeskHostProps) {
  const [Desk, setDesk] = useState<ComponentType<DeskProps> | null>(null);
  useEffect(() => {
    let live = true;
    import('./desk/Desk').then(
      (module) => { if (live) setDesk(() => module.Desk); },
      () => { if (live) onStatus('error'); },
    );
    return () => { live = false; };
  }, []);
  if (!Desk) return null;
  return <Desk agent={agent} view={view} handle={deskRef} onStatus={onStatus} onAgent={onAgent} onReady={onReady} />;
}
