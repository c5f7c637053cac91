// The dashboard (`#dashboard`): /api/analytics/* (any member may read them) for the picked bot
// and range — tiles, two SVG charts, the intents and the unmatched messages — loaded each time
// it is shown and on every change (an older answer arriving late is dropped), with CSV and JSON
// exports downloaded through the bearer token. `data-state` (idle, loading, ready, error),
// `data-key` (bot|range of what is drawn) and `aria-busy` say where a load stands.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { BotList, IntentReport, Overview, RetentionSettings, Series, WorkspaceView } from '../api.gen';
import { t } from '../i18n';
import * as session from '../session';
import type { Words } from '../words/en';
import { ChannelChart, SeriesChart } from './charts';
import { DAY, HOUR, NONE, count, duration, num, pct, score, sentiment, utc } from './format';

type RangeKey = '24h' | '7d' | '30d';
const RANGES: Record<RangeKey, { span: number; interval: 'hour' | 'day'; option: keyof Words; label: keyof Words }> = {
  '24h': { span: DAY, interval: 'hour', option: 'last24h', label: 'range24h' },
  '7d': { span: 7 * DAY, interval: 'day', option: 'last7d', label: 'range7d' },
  '30d': { span: 30 * DAY, interval: 'day', option: 'last30d', label: 'range30d' },
};
/** Unmatched messages listed at most. */
const UNMATCHED_SHOWN = 20;

interface Data { overview: Overview; series: Series; intents: IntentReport; range: RangeKey; retention: RetentionSettings | null }

/** Why a request failed: the API's refusal, or a word of ours (the network, a lost session). */
class LoadError extends Error {
  constructor(readonly word: keyof Words | null, message: string, readonly status = 0, readonly code: string | null = null) {
    super(message);
  }
}

/** A failure in a sentence: the server's message with its status, or that it was not reached. */
function reason(err: unknown): string {
  if (err instanceof LoadError && err.status) return `${err.message} (HTTP ${err.status}${err.code ? `, ${err.code}` : ''}).`;
  const message = err instanceof LoadError && err.word ? t(err.word) : String((err as Error)?.message ?? err);
  return t('unreachable', { message });
}

/** A GET with the session's bearer token (one retry after a refresh when it has expired). */
async function authed(path: string): Promise<Response> {
  let res: Response;
  try { res = await session.authed(path); } catch { throw new LoadError('networkError', 'network error'); }
  if (!session.accessToken()) throw new LoadError('sessionEndedShort', 'your session ended; sign in again');
  if (!res.ok) {
    const json = (await res.json().catch(() => ({}))) as { error?: { message?: string; code?: string } };
    const message = json.error?.message || res.statusText;
    throw new LoadError(message ? null : 'requestFailed', message || t('requestFailed'), res.status, json.error?.code ?? null);
  }
  return res;
}
const json = <T,>(path: string): Promise<T> => authed(path).then((res) => res.json() as Promise<T>);

/** The picked range as whole slots: the current hour (or UTC day) is the last one. */
function rangeOf(key: RangeKey): { from: number; to: number; interval: 'hour' | 'day' } {
  const r = RANGES[key] ?? RANGES['7d'];
  const grain = r.interval === 'hour' ? HOUR : DAY;
  const to = Math.floor(Date.now() / grain) * grain + grain;
  return { from: to - r.span, to, interval: r.interval };
}

type Failure = { kind: 'load' | 'export'; err: unknown };

export function Dashboard({ shown, onOpen }: { shown: boolean; onOpen: (conversationId: string) => void }) {
  const [bot, setBot] = useState('');
  const [range, setRange] = useState<RangeKey>('7d');
  const [bots, setBots] = useState<{ id: string; name: string }[]>([]);
  const [state, setState] = useState<'idle' | 'loading' | 'ready' | 'error'>('idle');
  const [busy, setBusy] = useState(false);
  const [drawnKey, setDrawnKey] = useState<string | undefined>(undefined);
  const [data, setData] = useState<Data | null>(null);
  const [failure, setFailure] = useState<Failure | null>(null);
  const [exporting, setExporting] = useState<Record<string, boolean>>({});
  /** The latest load; an older answer arriving late is dropped. */
  const generation = useRef(0);
  /** from, to and bot_id of the last load (the exports use them too). */
  const query = useRef('');

  const load = async (botId: string, rangeKey: RangeKey) => {
    const mine = ++generation.current;
    const r = rangeOf(rangeKey);
    const q = new URLSearchParams({ from: String(r.from), to: String(r.to) });
    if (botId) q.set('bot_id', botId);
    query.current = q.toString();
    setState('loading');
    setBusy(true);
    setFailure(null);
    try {
      const [botList, overview, series, intents, workspace] = await Promise.all([
        json<BotList>('/api/bots'),
        json<Overview>(`/api/analytics/overview?${q}`),
        json<Series>(`/api/analytics/conversations?${q}&interval=${r.interval}`),
        json<IntentReport>(`/api/analytics/intents?${q}&unmatched_limit=${UNMATCHED_SHOWN}`),
        // The retention policy, said under the numbers; the dashboard draws without it.
        json<WorkspaceView>('/api/workspace').catch(() => null),
      ]);
      if (mine !== generation.current) return;
      const list = (botList.data ?? []).map((b) => ({ id: b.id, name: b.name }));
      setBots(list);
      if (botId && !list.some((b) => b.id === botId)) setBot('');
      setData({ overview, series, intents, range: rangeKey, retention: workspace?.retention ?? null });
      setDrawnKey(`${botId}|${rangeKey}`);
      setState('ready');
    } catch (err) {
      if (mine !== generation.current) return;
      setState('error');
      setFailure({ kind: 'load', err });
    } finally {
      if (mine === generation.current) setBusy(false);
    }
  };

  // Loaded each time it is shown; whatever is in flight when it goes away is dropped.
  useEffect(() => { if (shown) void load(bot, range); }, [shown]);
  useEffect(() => () => { generation.current++; }, []);

  const exportAs = async (format: 'csv' | 'json') => {
    setExporting((e) => ({ ...e, [format]: true }));
    setFailure(null);
    try {
      const res = await authed(`/api/analytics/export?${query.current}&format=${format}`);
      const blob = await res.blob();
      const given = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') || '')?.[1];
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = (given || `parla-analytics.${format}`).replace(/:/g, '-');
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    } catch (err) {
      setFailure({ kind: 'export', err });
    } finally {
      setExporting((e) => ({ ...e, [format]: false }));
    }
  };

  const botName = (id: string) => bots.find((b) => b.id === id)?.name || id;
  const error = failure ? t(failure.kind === 'load' ? 'dashLoadFailed' : 'exportFailed', { reason: reason(failure.err) }) : '';

  let meta = '';
  if (data) {
    const o = data.overview;
    const hourly = data.series.interval === 'hour';
    meta = t('dashMeta', {
      who: o.bot_id ? botName(o.bot_id) : t('allBotsLower'),
      range: t(RANGES[data.range].label),
      from: utc(hourly ? 'when' : 'day', o.from),
      to: utc(hourly ? 'when' : 'day', hourly ? o.to : o.to - DAY),
    });
  } else if (state === 'loading') {
    meta = t('loading');
  }

  return (
    <main
      id="dashboard"
      hidden={!shown}
      aria-labelledby="dash-title"
      data-state={state}
      data-key={drawnKey}
      aria-busy={busy ? 'true' : undefined}
    >
      <div class="dash-bar">
        <h2 id="dash-title">{t('dashboard')}</h2>
        <label>{t('dashBot')}
          <select id="dash-bot" value={bot} onChange={(e) => { const v = (e.target as HTMLSelectElement).value; setBot(v); void load(v, range); }}>
            <option value="">{t('allBots')}</option>
            {bots.map((b) => <option value={b.id}>{b.name}</option>)}
          </select>
        </label>
        <label>{t('dashRange')}
          <select id="dash-range" value={range} onChange={(e) => { const v = (e.target as HTMLSelectElement).value as RangeKey; setRange(v); void load(bot, v); }}>
            {(Object.keys(RANGES) as RangeKey[]).map((k) => <option value={k}>{t(RANGES[k].option)}</option>)}
          </select>
        </label>
        <button id="dash-refresh" type="button" class="secondary" onClick={() => void load(bot, range)}>{t('refresh')}</button>
        <button id="export-csv" type="button" class="secondary" disabled={exporting.csv} onClick={() => void exportAs('csv')}>{t('exportCsv')}</button>
        <button id="export-json" type="button" class="secondary" disabled={exporting.json} onClick={() => void exportAs('json')}>{t('exportJson')}</button>
      </div>
      <p id="dash-meta" aria-live="polite">{meta}</p>
      {data?.retention && (
        <p id="dash-retention" class="hint">
          {t('retentionPolicy', { conversations: keptFor(data.retention.conversation_days), unmatched: keptFor(data.retention.unmatched_days) })}
        </p>
      )}
      <p id="dash-error" role="alert">{error}</p>
      <section aria-labelledby="kpi-title">
        <h3 id="kpi-title" class="sr-only">{t('keyNumbers')}</h3>
        <ul id="kpis" class="kpis">{data && <Kpis o={data.overview} />}</ul>
      </section>
      <div class="cards">
        <section class="card" aria-labelledby="series-title">
          <h3 id="series-title">{t('seriesTitle')}</h3>
          <Legend />
          <SeriesChart series={data ? data.series : null} />
        </section>
        <section class="card" aria-labelledby="channel-title">
          <h3 id="channel-title">{t('byChannel')}</h3>
          <Legend />
          <ChannelChart byChannel={data ? data.series.by_channel : null} />
        </section>
      </div>
      <div class="cards">
        <section class="card" aria-labelledby="intents-title">
          <h3 id="intents-title">{t('intents')}</h3>
          <Intents report={data?.intents ?? null} botName={botName} />
        </section>
        <section class="card" aria-labelledby="unmatched-title">
          <h3 id="unmatched-title">{t('unmatchedTitle')} <span id="unmatched-total" class="count">{data ? unmatchedCount(data.intents) : ''}</span></h3>
          <Unmatched report={data?.intents ?? null} botName={botName} onOpen={onOpen} />
        </section>
      </div>
    </main>
  );
}

function Legend() {
  return (
    <div class="legend" aria-hidden="true">
      <span><span class="swatch s-conv" />{t('kpiConversations')}</span>
      <span><span class="swatch s-msg" />{t('kpiMessages')}</span>
    </div>
  );
}

function Kpis({ o }: { o: Overview }) {
  const m = o.messages, tokens = o.llm_tokens, asked = o.intents_matched + o.intents_unmatched;
  const tiles: [string, keyof Words, string, string][] = [
    ['conversations', 'kpiConversations', num(o.conversations), t('kpiConversationsSub')],
    ['messages', 'kpiMessages', num(m.total), t('kpiMessagesSub', { visitor: num(m.visitor), bot: num(m.bot), agent: num(m.agent) })],
    ['active_visitors', 'kpiActive', num(o.active_visitors), t('kpiActiveSub')],
    ['visitors_online', 'kpiOnline', o.visitors_online == null ? NONE : num(o.visitors_online),
      o.visitors_online == null ? t(o.bot_id ? 'kpiOnlineBot' : 'kpiOnlineCluster') : t('kpiOnlineSub')],
    ['resolution_rate', 'kpiResolution', pct(o.resolution_rate), t('kpiResolutionSub', { n: num(o.resolutions.resolved) })],
    ['escalation_rate', 'kpiEscalation', pct(o.escalation_rate), count(o.handovers, 'handovers1', 'handoversN')],
    ['avg_first_response', 'kpiFirstResponse', duration(o.avg_first_response_ms), t('kpiFirstResponseSub')],
    ['avg_duration', 'kpiDuration', duration(o.avg_duration_ms), t('kpiDurationSub')],
    ['sentiment', 'kpiSentiment', sentiment(o.sentiment), t('kpiSentimentSub')],
    ['csat', 'kpiCsat', o.csat.average == null ? NONE : score(o.csat.average), count(o.csat.responses, 'responses1', 'responsesN')],
    ['llm_tokens', 'kpiTokens', num(tokens.prompt + tokens.completion), t('kpiTokensSub', { prompt: num(tokens.prompt), completion: num(tokens.completion) })],
    ['match_rate', 'kpiMatch', pct(o.match_rate), asked === 1 ? t('matchOf1', { matched: num(o.intents_matched) }) : t('matchOfN', { matched: num(o.intents_matched), n: num(asked) })],
  ];
  return (
    <>
      {tiles.map(([key, label, value, sub]) => (
        <li class="kpi" data-kpi={key}>
          <span class="label">{t(label)}</span>
          <span class="value">{value}</span>
          <span class="sub">{sub}</span>
        </li>
      ))}
    </>
  );
}

function Intents({ report, botName }: { report: IntentReport | null; botName: (id: string) => string }) {
  return (
    <table id="intents" class="intents">
      <thead>
        <tr>
          <th scope="col">{t('colIntent')}</th>
          <th scope="col">{t('colBot')}</th>
          <th scope="col" class="num">{t('colHits')}</th>
          <th scope="col">{t('colConfidence')}</th>
        </tr>
      </thead>
      <tbody>
        {report && !report.intents.length && <tr><td class="muted" colSpan={4}>{t('noIntentHits')}</td></tr>}
        {report?.intents.map((it) => (
          <tr data-intent={it.intent} data-bot-id={it.bot_id}>
            <td>{it.intent}</td>
            <td>{botName(it.bot_id)}</td>
            <td class="num hits">{num(it.hits)}</td>
            <td class="confidence">
              <span class="meter" aria-hidden="true"><span style={{ width: `${Math.round((it.avg_confidence || 0) * 100)}%` }} /></span>
              {pct(it.avg_confidence)}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const unmatchedCount = (r: IntentReport) => r.unmatched.length < r.unmatched_total
  ? t('unmatchedNewest', { shown: num(r.unmatched.length), total: num(r.unmatched_total) })
  : `(${num(r.unmatched_total)})`;

function Unmatched({ report, botName, onOpen }: { report: IntentReport | null; botName: (id: string) => string; onOpen: (id: string) => void }) {
  return (
    <ol id="unmatched">
      {report && !report.unmatched.length && <li class="muted">{t('noUnmatchedRange')}</li>}
      {report?.unmatched.map((u) => (
        <li data-conversation-id={u.conversation_id} data-seq={u.seq}>
          <span class="text">{`\u201C${u.text}\u201D`}</span>
          <span class="meta">
            <time dateTime={new Date(u.created_at).toISOString()}>{`${utc('when', u.created_at)} UTC`}</time>
            <span>{botName(u.bot_id)}</span>
            <button
              type="button"
              class="link"
              aria-label={t('openConversationIn', { id: u.conversation_id.slice(-6) })}
              onClick={() => onOpen(u.conversation_id)}
            >{t('openConversation')}</button>
          </span>
        </li>
      ))}
    </ol>
  );
}

/** A retention period as the dashboard says it. */
function keptFor(days: number | null | undefined): string {
  return days == null ? t('retentionForever') : t('retentionDays', { n: days });
}
