// The pane (`#pane`): the open conversation's head (take over, hand back, resolve), its thread
// (`#thread`: messages, the bot's answer as it streams, notes, events), the notice line, the
// reply box with canned responses (`/shortcut`: Tab or Enter takes the highlighted one, the
// arrows move) and the internal note.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { CannedResponse, Resolution } from '../api.gen';
import { t } from '../i18n';
import { senderLabel, statusWord, useTopics } from './Inbox';
import type { DeskModel, ThreadItem } from './model';

const RESOLUTIONS: { value: Resolution; word: 'resResolved' | 'resUnresolved' | 'resEscalated' | 'resAbandoned' }[] = [
  { value: 'RESOLVED', word: 'resResolved' },
  { value: 'UNRESOLVED', word: 'resUnresolved' },
  { value: 'ESCALATED', word: 'resEscalated' },
  { value: 'ABANDONED', word: 'resAbandoned' },
];
/** Canned responses offered at once. */
const CANNED_SHOWN = 6;

export function Conversation({ model }: { model: DeskModel }) {
  useTopics(model, 'open', 'status');
  const open = model.open;
  const e = open?.entry ?? {};
  const mine = model.mine;
  const resolution = useRef<HTMLSelectElement>(null);
  const csat = useRef<HTMLInputElement>(null);

  let title = t('pickConversation');
  if (open) {
    const state = e.status === 'ASSIGNED'
      ? (e.assignee?.id === model.me?.id ? t('withYou') : e.assignee?.name ? t('withName', { name: e.assignee.name }) : t('withAgent'))
      : statusWord(e.status ?? 'OPEN');
    title = t('conversationTitle', { id: open.id.slice(-6), state });
  }
  const heldElsewhere = e.status === 'ASSIGNED' && !mine;
  const closed = !open || e.status === 'RESOLVED';
  const notice = model.notice;

  return (
    <section id="pane" aria-label={t('deskPane')}>
      <div id="pane-head">
        <h2 id="pane-title">{title}</h2>
        <button id="claim" type="button" disabled={!open || mine} onClick={() => model.claim()}>
          {heldElsewhere ? (e.assignee?.name ? t('heldBy', { name: e.assignee.name }) : t('heldByAgent')) : t('takeOver')}
        </button>
        <button id="release" type="button" class="secondary" disabled={!mine} onClick={() => model.release()}>{t('handBack')}</button>
        <span class="resolve-group">
          <label for="resolution" class="sr-only">{t('resolution')}</label>
          <select id="resolution" ref={resolution} disabled={closed}>
            {RESOLUTIONS.map((r) => <option value={r.value}>{t(r.word)}</option>)}
          </select>
          <label class="check"><input id="csat" type="checkbox" ref={csat} /> {t('askRating')}</label>
          <button
            id="resolve"
            type="button"
            class="secondary"
            disabled={closed}
            onClick={() => model.resolve((resolution.current?.value ?? 'RESOLVED') as Resolution, csat.current?.checked ?? false)}
          >{t('resolve')}</button>
        </span>
      </div>
      <Thread model={model} />
      <p id="notice" role="status">{notice ? ('word' in notice ? t(notice.word) : notice.text) : ''}</p>
      <Composer model={model} mine={mine} hasOpen={open !== null} />
      <NoteForm model={model} disabled={!open} />
    </section>
  );
}

function Thread({ model }: { model: DeskModel }) {
  const ref = useRef<HTMLDivElement>(null);
  const open = model.open;
  // Every addition scrolls to the end, as a chat does.
  useLayoutEffect(() => {
    const el = ref.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [model.scrollTick]);
  return (
    <div id="thread" ref={ref} role="log" aria-live="polite" aria-label={t('threadLabel')} tabIndex={0}>
      {open ? open.items.map((item) => <Item key={item.key} item={item} />) : <p class="empty">{t('noConversationOpen')}</p>}
    </div>
  );
}

function Item({ item }: { item: ThreadItem }) {
  switch (item.kind) {
    case 'msg':
      return (
        <div class="msg" data-sender={item.sender} data-seq={item.seq}>
          <span class="who">{senderLabel(item.sender)}</span><span class="text">{item.text}</span>
        </div>
      );
    case 'stream':
      return (
        <div class="msg streaming" data-sender={item.sender}>
          <span class="who">{senderLabel(item.sender)}</span><span class="text">{item.text}</span>
        </div>
      );
    case 'note':
      return <div class="msg note">{t('noteBy', { name: item.author, text: item.text })}</div>;
    case 'event':
      return <p class="event">{t(item.word, { name: item.name ?? '' })}</p>;
  }
}

/** The canned responses a `/shortcut` being typed matches (none once a space is typed). */
export function cannedMatches(canned: CannedResponse[], value: string): CannedResponse[] {
  if (!value.startsWith('/') || value.includes(' ')) return [];
  return canned.filter((c) => `/${c.shortcut}`.startsWith(value)).slice(0, CANNED_SHOWN);
}

function Composer({ model, mine, hasOpen }: { model: DeskModel; mine: boolean; hasOpen: boolean }) {
  useTopics(model, 'canned');
  const [value, setValue] = useState('');
  const [pick, setPick] = useState(0);
  const reply = useRef<HTMLTextAreaElement>(null);
  const form = useRef<HTMLFormElement>(null);
  const matches = cannedMatches(model.canned, value);
  const picked = Math.min(pick, Math.max(0, matches.length - 1));

  // The agent picked a conversation: the reply box takes the focus (if they may write).
  useEffect(() => { if (model.focusTick) reply.current?.focus(); }, [model.focusTick]);

  const put = (text: string) => {
    setValue(text);
    if (reply.current) reply.current.value = text;
    if (cannedMatches(model.canned, text).length === 0) setPick(0);
  };
  const submit = (ev: Event) => {
    ev.preventDefault();
    if (!model.reply(reply.current?.value ?? '')) return;
    put('');
  };
  const keydown = (ev: KeyboardEvent) => {
    // What the box holds now (a render may not have caught up with the last keystroke).
    const now = (ev.currentTarget as HTMLTextAreaElement).value;
    const shown = cannedMatches(model.canned, now);
    const at = Math.min(pick, Math.max(0, shown.length - 1));
    if (shown.length && (ev.key === 'Tab' || (ev.key === 'Enter' && !ev.shiftKey))) {
      ev.preventDefault();
      put(shown[at].text);
      return;
    }
    if (shown.length && (ev.key === 'ArrowDown' || ev.key === 'ArrowUp')) {
      ev.preventDefault();
      setPick((at + (ev.key === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length);
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      form.current?.requestSubmit();
    }
  };
  const input = (ev: Event) => {
    const text = (ev.currentTarget as HTMLTextAreaElement).value;
    setValue(text);
    if (cannedMatches(model.canned, text).length === 0) setPick(0);
    model.typed();
  };

  const placeholder = !hasOpen ? t('replyIdle') : mine ? t('replyMine') : t('replyLocked');
  return (
    <form id="composer" ref={form} autocomplete="off" onSubmit={submit}>
      <label for="reply" class="sr-only">{t('reply')}</label>
      <textarea
        id="reply"
        ref={reply}
        rows={1}
        maxLength={4000}
        placeholder={placeholder}
        disabled={!mine}
        value={value}
        onInput={input}
        onKeyDown={keydown}
        aria-controls={matches.length ? 'canned' : undefined}
        aria-activedescendant={matches.length ? `canned-${picked}` : undefined}
      />
      <button id="send" type="submit" disabled={!mine}>{t('send')}</button>
      <ul id="canned" role="listbox" aria-label={t('canned')} hidden={!matches.length}>
        {matches.map((c, i) => (
          <li
            id={`canned-${i}`}
            role="option"
            aria-selected={i === picked}
            data-text={c.text}
            onMouseDown={(ev) => { ev.preventDefault(); put(c.text); }}
          >{`/${c.shortcut} — ${c.text}`}</li>
        ))}
      </ul>
    </form>
  );
}

function NoteForm({ model, disabled }: { model: DeskModel; disabled: boolean }) {
  const note = useRef<HTMLInputElement>(null);
  const submit = (ev: Event) => {
    ev.preventDefault();
    if (note.current && model.note(note.current.value)) note.current.value = '';
  };
  return (
    <form id="note-form" autocomplete="off" onSubmit={submit}>
      <label for="note" class="sr-only">{t('internalNote')}</label>
      <input id="note" ref={note} placeholder={t('notePlaceholder')} disabled={disabled} />
      <button id="add-note" type="submit" class="secondary" disabled={disabled}>{t('addNote')}</button>
    </form>
  );
}
