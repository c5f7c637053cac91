// #bots/ID/try: a test chat with the bot — the real widget on the real socket, in a preview
// conversation (a draft or paused bot answers; the console's origin need not be allowed; it
// counts in no analytics and reaches no agent) — and beside it, for each answer, what produced
// it: the intent and its confidence, the documents it came from, or the fallback.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Bot, ConversationDetail, Message } from '../api.gen';
import { t } from '../i18n';
import { accessToken, api } from '../session';
import { describe } from '../ui/form';

interface Opened { conversation_id: string; resume_token: string }
type Source = { document_id: string; title: string };
type Traced = Pick<Message, 'seq' | 'text' | 'intent' | 'confidence'> & { sources?: Source[] };

export function TryIt({ bot, writer }: { bot: Bot; writer: boolean }) {
  const host = useRef<HTMLDivElement>(null);
  const [chat, setChat] = useState<Opened | null>(null);
  const [trace, setTrace] = useState<Traced[]>([]);
  const [error, setError] = useState('');
  const [generation, setGeneration] = useState(0);

  // A preview conversation, opened afresh on each Restart (the last one is deleted).
  useEffect(() => {
    if (!writer) return;
    let live = true;
    setError('');
    setTrace([]);
    let opened: Opened | null = null;
    api<Opened>('POST', '/api/conversations', { bot_id: bot.id, preview: true }).then(
      (o) => { opened = o; if (live) setChat(o); else forget(o); },
      (e) => { if (live) setError(describe(e)); },
    );
    // Leaving the pane (or restarting) deletes the test chat: previews are not kept.
    return () => { live = false; if (opened) forget(opened); };
  }, [bot.id, generation]);

  useEffect(() => (chat ? forgetOnExit(chat) : undefined), [chat]);

  useEffect(() => {
    if (!chat || !host.current) return;
    let stop = () => {};
    let live = true;
    const explain = (seq: number) => {
      api<ConversationDetail>('GET', `/api/conversations/${encodeURIComponent(chat.conversation_id)}?after_seq=${seq - 1}&limit=1`).then(
        (d) => {
          const m = d.messages[0] as (Message & { sources?: Source[] }) | undefined;
          if (live && m) setTrace((list) => (list.some((x) => x.seq === m.seq) ? list : [...list, m].sort((a, b) => a.seq - b.seq)));
        },
        () => {},
      );
    };
    void import('../preview').then(({ showLive }) => {
      if (!live || !host.current) return;
      const settings = { id: bot.id, name: bot.name, language: bot.language, appearance: bot.appearance ?? {}, welcome_message: bot.config.welcome_message ?? undefined };
      // Answers are the bot's messages after the visitor's (not the greeting).
      let previous: string | null = null;
      stop = showLive(host.current, settings, chat, (m) => {
        if (m.sender === 'bot' && previous === 'user') explain(m.seq);
        previous = m.sender;
      });
    });
    return () => { live = false; stop(); };
  }, [chat]);

  const restart = () => {
    setChat(null);
    setGeneration((g) => g + 1);
  };

  if (!writer) return <p class="panel">{t('tryWriters')}</p>;
  return (
    <div class="intent-editor">
      <section class="panel" aria-labelledby="trace-title">
        <div class="page-head">
          <h2 id="trace-title">{t('whyAnswers')}</h2>
          <span class="actions"><button id="restart-chat" type="button" class="secondary" onClick={restart}>{t('restart')}</button></span>
        </div>
        <p class="hint">{t('tryHint')}</p>
        {error && <p class="form-error" role="alert">{error}</p>}
        <ol id="try-trace" class="picklist" aria-live="polite">
          {trace.map((m) => (
            <li data-seq={m.seq} data-intent={m.intent ?? ''} data-confidence={m.confidence ?? ''} data-sources={(m.sources ?? []).map((s) => s.title).join('|')}>
              <span class="text">{m.text.length > 120 ? `${m.text.slice(0, 117)}…` : m.text}</span>
              <span class="muted">{why(m)}</span>
            </li>
          ))}
        </ol>
        {trace.length === 0 && <p class="muted">{t('tryEmpty')}</p>}
      </section>
      <section class="preview" aria-labelledby="try-title">
        <h2 id="try-title">{t('testChat')}</h2>
        <div id="try-chat" ref={host} class="preview-box" />
      </section>
    </div>
  );
}

function forget(chat: Opened): void {
  void api('DELETE', `/api/conversations/${encodeURIComponent(chat.conversation_id)}`).catch(() => {});
}

/** Closing the tab deletes the test chat too (a request that outlives the page). */
function forgetOnExit(chat: Opened): () => void {
  const gone = () => {
    const token = accessToken();
    if (!token) return;
    void fetch(`/api/conversations/${encodeURIComponent(chat.conversation_id)}`, {
      method: 'DELETE', keepalive: true, headers: { authorization: `Bearer ${token}` },
    }).catch(() => {});
  };
  addEventListener('pagehide', gone);
  return () => removeEventListener('pagehide', gone);
}

function why(m: Traced): string {
  if (m.intent) return t('byIntent', { intent: m.intent, confidence: Math.round((m.confidence ?? 1) * 100) });
  if (m.sources?.length) return t('fromDocs', { titles: m.sources.map((s) => s.title).join(', ') });
  return t('byFallback');
}
