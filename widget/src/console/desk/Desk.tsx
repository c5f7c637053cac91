// The desk's chunk (loaded lazily by the shell, `../app.tsx`): the agent inbox and conversation
// pane (`#desk`) and the dashboard (`#dashboard`). The shell says which shows — either, or
// neither while another section is open: the agent socket stays open all the same (an agent on
// another section is still online) and the dashboard keeps its picks. The header's status and
// the agent's name go to the shell; the shell's presence picker comes here through `handle`.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { AgentRef, CannedList } from '../api.gen';
import * as session from '../session';
import { Conversation } from './Conversation';
import { Dashboard } from './Dashboard';
import { Inbox } from './Inbox';
import { DeskModel, type DeskStatus } from './model';

export type { DeskStatus };

export interface DeskHandle {
  /** Sets the agent's presence. */
  presence(status: 'online' | 'away'): void;
}

export interface DeskProps {
  /** Whether this member may take conversations (agents and up): only they open the socket. */
  agent: boolean;
  view: 'inbox' | 'dashboard' | null;
  handle: { current: DeskHandle | null };
  onStatus: (status: DeskStatus) => void;
  onAgent: (agent: AgentRef) => void;
  /** Called once the desk and dashboard are in the page. */
  onReady: () => void;
}

export function Desk({ agent, view, handle, onStatus, onAgent, onReady }: DeskProps) {
  const props = useRef({ onStatus, onAgent });
  props.current = { onStatus, onAgent };
  const [model] = useState(() => new DeskModel({
    agent,
    token: session.accessToken,
    refresh: session.refresh,
    loadCanned: () => session.api<CannedList>('GET', '/api/canned-responses').then((r) => r.data ?? []),
  }));
  useEffect(() => {
    let me: AgentRef | null = null;
    const offStatus = model.on('status', () => {
      props.current.onStatus(model.status);
      if (model.me && model.me !== me) { me = model.me; props.current.onAgent(me); }
    });
    const offRefreshed = session.onRefreshed((token) => model.reauth(token));
    model.start();
    props.current.onStatus(model.status);
    handle.current = { presence: (status) => model.presence(status) };
    onReady();
    return () => {
      offStatus();
      offRefreshed();
      model.stop();
      handle.current = null;
    };
  }, []);

  /** An unmatched message's "Open conversation": to the inbox, with it open. */
  const openInDesk = (id: string) => {
    history.pushState(null, '', '#inbox');
    dispatchEvent(new HashChangeEvent('hashchange')); // the shell's route follows
    model.select(id);
  };

  return (
    <>
      <main id="desk" hidden={view !== 'inbox'}>
        <Inbox model={model} />
        <Conversation model={model} />
      </main>
      <Dashboard shown={view === 'dashboard'} onOpen={openInDesk} />
    </>
  );
}
