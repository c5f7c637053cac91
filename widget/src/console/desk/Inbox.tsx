// The inbox (`#inbox`): the workspace's live conversations in triage order, as a listbox —
// Tab or the arrow keys move between them, Enter or Space opens one. Loading until the socket's
// first `inbox`, then the list or "No live conversations."; while the socket is down before
// that, says so with "Reconnect now".
import { useEffect, useState } from 'preact/hooks';
import type { Sender } from '../api.gen';
import { t } from '../i18n';
import { ago } from './format';
import { sortInbox, type DeskModel, type Entry, type Topic } from './model';

/** Redraws the calling view when the model changes `topics`. */
export function useTopics(model: DeskModel, ...topics: Topic[]): void {
  const [, redraw] = useState(0);
  useEffect(() => {
    const offs = topics.map((topic) => model.on(topic, () => redraw((n) => n + 1)));
    return () => { for (const off of offs) off(); };
  }, [model]);
}

/** Who wrote a message, as the desk names them. */
export const senderLabel = (s: Sender): string => t(s === 'user' ? 'senderVisitor' : s === 'bot' ? 'senderBot' : 'senderAgent');

const STATUS_WORD = { OPEN: 'convOpen', ESCALATED: 'convEscalated', ASSIGNED: 'convAssigned', RESOLVED: 'convResolved' } as const;

/** A conversation's status in a word (its badge, the pane's title). */
export const statusWord = (status: string | undefined): string =>
  status && status in STATUS_WORD ? t(STATUS_WORD[status as keyof typeof STATUS_WORD]) : (status ?? 'open').toLowerCase();

export function Inbox({ model }: { model: DeskModel }) {
  useTopics(model, 'inbox');
  const entries = sortInbox(model.inbox.values());
  const openId = model.open?.id;
  const meId = model.me?.id;
  const state = !model.inboxLoaded ? (model.offline ? 'error' : 'loading') : entries.length ? 'ready' : 'empty';

  /** Arrow keys, Home and End move the focus along the list. */
  const move = (e: KeyboardEvent) => {
    const options = [...(e.currentTarget as HTMLElement).querySelectorAll<HTMLElement>('[role="option"]')];
    const at = options.indexOf(document.activeElement as HTMLElement);
    const to = e.key === 'ArrowDown' ? Math.min(options.length - 1, at + 1) : e.key === 'ArrowUp' ? Math.max(0, at - 1)
      : e.key === 'Home' ? 0 : e.key === 'End' ? options.length - 1 : -1;
    if (to < 0 || !options.length) return;
    e.preventDefault();
    options[to].focus();
  };

  return (
    <div class="inbox-col">
      <ul id="inbox" role="listbox" aria-label={t('deskList')} data-state={state} aria-busy={state === 'loading' ? 'true' : undefined} onKeyDown={move}>
        {entries.map((e) => <Item key={e.conversation_id} e={e} selected={openId === e.conversation_id} meId={meId} model={model} />)}
      </ul>
      {state === 'loading' && <p class="empty" role="status">{t('deskLoading')}</p>}
      {state === 'empty' && <p class="empty">{t('noLiveConversations')}</p>}
      {state === 'error' && (
        <div class="empty load-error" role="alert">
          <p>{t('deskOffline')}</p>
          <button type="button" class="secondary" onClick={() => model.reconnectNow()}>{t('reconnectNow')}</button>
        </div>
      )}
    </div>
  );
}

function Item({ e, selected, meId, model }: { e: Entry; selected: boolean; meId: string | undefined; model: DeskModel }) {
  const badge = e.status === 'ASSIGNED'
    ? (e.assignee?.id === meId ? t('yours') : (e.assignee?.name || t('convAssigned')))
    : statusWord(e.status);
  const when = e.status === 'ESCALATED' && e.waiting_since ? t('waiting', { time: ago(e.waiting_since) }) : (e.source || '');
  const pick = () => model.select(e.conversation_id);
  return (
    <li
      role="option"
      tabIndex={0}
      data-conversation-id={e.conversation_id}
      data-status={e.status}
      aria-selected={selected}
      onClick={pick}
      onKeyDown={(ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); } }}
    >
      <span class="top">
        <span class="badge" data-status={e.status}>{badge}</span>
        <span>{when}</span>
        <span class="unread">{e.unread > 0 && !selected ? t('unreadN', { n: e.unread }) : ''}</span>
      </span>
      <span class="preview">{e.last_message ? `${senderLabel(e.last_message.sender)}: ${e.last_message.text}` : t('noMessagesYet')}</span>
    </li>
  );
}
