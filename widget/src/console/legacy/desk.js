// The agent desk and the dashboard: the console's first two sections, written before the
// console had a build (by hand, on the DOM). The shell (`../app.tsx`) owns the session, the
// header and the route; this draws into its own container and tells the shell what the header
// shows (status, the agent's name) through `ctx`. `desk.d.ts` types it for the shell.
import { MARKUP } from './markup';

export function startDesk(root, ctx) {
  root.innerHTML = MARKUP;
  const $ = (id) => document.getElementById(id);
  const WS_URL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/agent/ws';
  let me = null;        // {id, name}
  let ws = null, attempt = 0, stopped = false, retryTimer = null;
  const inbox = new Map();   // conversation_id -> entry
  let open = null;           // {id, lastSeq, streams: Map}
  let canned = [], cannedPick = 0;

  const setStatus = (text, state) => ctx.setStatus(text, state);
  function notice(text) { $('notice').textContent = text || ''; }
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  // The shell re-authenticates the socket with each new token (`reauth`).
  const refresh = () => ctx.refresh().catch(() => {});

  // ---- the socket ---------------------------------------------------------------------------
  function start() {
    stopped = false;
    // Viewers have no desk: the agent socket is for agents and up.
    if (ctx.agent) connect(); else setStatus('signed in', 'viewer');
    if (ctx.agent) authed('/api/canned-responses').then((res) => res.json()).then((r) => { canned = r.data || []; }).catch(() => {});
  }
  function connect() {
    if (stopped) return;
    setStatus('connecting…', 'connecting');
    ws = new WebSocket(WS_URL);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: ctx.token() }));
    ws.onmessage = (ev) => { if (stopped) return; let f; try { f = JSON.parse(ev.data); } catch (_) { return; } handle(f); };
    ws.onclose = () => {
      if (stopped) return;
      setStatus('reconnecting…', 'connecting');
      const delay = Math.min(30000, 500 * 2 ** attempt++) * (0.5 + Math.random());
      retryTimer = setTimeout(connect, delay);
    };
  }
  const send = (frame) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame)); };

  function handle(f) {
    switch (f.type) {
      case 'welcome':
        attempt = 0; me = f.agent;
        ctx.setAgent(f.agent);
        setStatus('online', 'connected');
        if (open) { const id = open.id; open = null; select(id); }
        break;
      case 'inbox':
        inbox.clear();
        for (const e of f.conversations) inbox.set(e.conversation_id, e);
        renderInbox(); break;
      case 'inbox_update': {
        const prev = inbox.get(f.conversation_id) || { conversation_id: f.conversation_id, unread: 0, last_seq: 0 };
        const next = { ...prev, ...f };
        if (f.last_message) {
          next.last_message = { seq: f.last_message.seq, sender: f.last_message.sender, text: f.last_message.text.slice(0, 140) };
          next.last_seq = f.last_message.seq;
        }
        next.unread = Math.max(0, (next.last_seq || 0) - (next.agent_read_seq || 0));
        if (next.status === 'RESOLVED') inbox.delete(f.conversation_id); else inbox.set(f.conversation_id, next);
        renderInbox();
        if (open && open.id === f.conversation_id) { Object.assign(open.entry, next); renderControls(); }
        break;
      }
      case 'subscribed':
        if (!open || open.id !== f.conversation_id) break;
        open.entry = f.conversation; renderControls();
        for (const n of f.notes) addNote(n);
        break;
      case 'message': if (isOpen(f)) addMessage(f.message); break;
      case 'stream_start':
        if (isOpen(f)) {
          const el = bubble(f.sender, ''); el.classList.add('streaming');
          $('thread').append(el); open.streams.set(f.stream_id, el); scroll();
        }
        break;
      case 'token': if (isOpen(f)) { const el = open.streams.get(f.stream_id); if (el) { el.querySelector('.text').append(f.delta); scroll(); } } break;
      case 'stream_end':
        if (isOpen(f)) { const el = open.streams.get(f.stream_id); if (el) el.remove(); open.streams.delete(f.stream_id); addMessage(f.message); }
        break;
      case 'stream_cancelled':
        if (isOpen(f)) { const el = open.streams.get(f.stream_id); if (el) el.remove(); open.streams.delete(f.stream_id); event('The bot\u2019s answer was withdrawn.'); }
        break;
      case 'handoff': if (isOpen(f)) event(f.to === 'human' ? `${f.agent?.name || 'An agent'} took over.` : 'Back with the bot.'); break;
      case 'handling': if (isOpen(f)) { Object.assign(open.entry, f.handling); renderControls(); } break;
      case 'note': if (isOpen(f)) addNote(f.note); break;
      case 'typing': if (isOpen(f) && f.sender === 'user') notice(f.on ? 'The visitor is typing…' : ''); break;
      case 'ack': break;
      case 'error':
        if (['token_expired', 'token_invalid', 'token_revoked'].includes(f.code)) { refresh(); break; }
        notice(f.message || f.code);
        break;
      default: break;
    }
  }
  const isOpen = (f) => open && f.conversation_id === open.id;

  // ---- the inbox ----------------------------------------------------------------------------
  const RANK = { ESCALATED: 0, ASSIGNED: 1, OPEN: 2 };
  function renderInbox() {
    const list = $('inbox'); list.replaceChildren();
    const entries = [...inbox.values()].sort((a, b) => (RANK[a.status] ?? 3) - (RANK[b.status] ?? 3)
      || (a.status === 'ESCALATED' ? (a.waiting_since || 0) - (b.waiting_since || 0) : (b.last_message?.created_at || b.started_at || 0) - (a.last_message?.created_at || a.started_at || 0)));
    if (!entries.length) { const li = document.createElement('li'); li.className = 'empty'; li.textContent = 'No live conversations.'; list.append(li); return; }
    for (const e of entries) {
      const li = document.createElement('li');
      li.setAttribute('role', 'option'); li.tabIndex = 0;
      li.dataset.conversationId = e.conversation_id; li.dataset.status = e.status;
      li.setAttribute('aria-selected', String(open?.id === e.conversation_id));
      const top = document.createElement('span'); top.className = 'top';
      const badge = document.createElement('span'); badge.className = 'badge'; badge.dataset.status = e.status;
      badge.textContent = e.status === 'ASSIGNED' ? (e.assignee?.id === me?.id ? 'yours' : (e.assignee?.name || 'assigned')) : e.status.toLowerCase();
      const when = document.createElement('span');
      when.textContent = e.status === 'ESCALATED' && e.waiting_since ? `waiting ${ago(e.waiting_since)}` : (e.source || '');
      const unread = document.createElement('span'); unread.className = 'unread';
      unread.textContent = e.unread > 0 && open?.id !== e.conversation_id ? `${e.unread} new` : '';
      top.append(badge, when, unread);
      const preview = document.createElement('span'); preview.className = 'preview';
      preview.textContent = e.last_message ? `${label(e.last_message.sender)}: ${e.last_message.text}` : 'No messages yet';
      li.append(top, preview);
      li.addEventListener('click', () => select(e.conversation_id));
      li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(e.conversation_id); } });
      list.append(li);
    }
  }
  function ago(ms) { const s = Math.max(0, Math.round((Date.now() - ms) / 1000)); return s < 60 ? `${s}s` : `${Math.round(s / 60)}m`; }
  const label = (s) => s === 'user' ? 'Visitor' : s === 'bot' ? 'Bot' : 'Agent';

  // ---- one conversation ------------------------------------------------------------------------
  function select(id) {
    if (open && open.id === id) return;
    if (open) send({ type: 'unsubscribe', conversation_id: open.id });
    open = { id, lastSeq: 0, streams: new Map(), entry: inbox.get(id) || { status: 'OPEN' } };
    $('thread').replaceChildren(); notice('');
    send({ type: 'subscribe', conversation_id: id, last_seq: 0 });
    renderInbox(); renderControls();
    $('reply').focus();
  }
  function renderControls() {
    const e = open?.entry || {};
    if (open) {
      const state = e.status === 'ASSIGNED' ? `with ${e.assignee?.id === me?.id ? 'you' : (e.assignee?.name || 'an agent')}`
        : (e.status || 'open').toLowerCase();
      $('pane-title').textContent = `Conversation ${open.id.slice(-6)} · ${state}`;
    }
    const mine = e.status === 'ASSIGNED' && e.assignee?.id === me?.id;
    $('claim').disabled = !open || mine;
    $('claim').textContent = e.status === 'ASSIGNED' && !mine ? `Held by ${e.assignee?.name || 'an agent'}` : 'Take over';
    $('release').disabled = !mine;
    $('resolve').disabled = $('resolution').disabled = !open || e.status === 'RESOLVED';
    $('reply').disabled = $('send').disabled = !mine;
    $('note').disabled = $('add-note').disabled = !open;
    $('reply').placeholder = mine ? 'Reply to the visitor · / for canned responses' : 'Take over to reply';
  }
  function bubble(sender, text) {
    const el = document.createElement('div'); el.className = 'msg'; el.dataset.sender = sender;
    const who = document.createElement('span'); who.className = 'who'; who.textContent = label(sender);
    const body = document.createElement('span'); body.className = 'text'; body.textContent = text;
    el.append(who, body); return el;
  }
  function addMessage(m) {
    if (m.seq <= open.lastSeq) return;
    open.lastSeq = m.seq;
    const el = bubble(m.sender, m.text); el.dataset.seq = m.seq;
    $('thread').append(el); scroll();
    markReadSoon();
  }
  // One `read` for a burst of messages (a replay, a stream of answers), not one each: every
  // read is a write on the server.
  let readTimer = null;
  function markReadSoon() {
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      if (open && document.visibilityState === 'visible') send({ type: 'read', conversation_id: open.id, seq: open.lastSeq });
    }, 400);
  }
  function addNote(n) {
    const el = document.createElement('div'); el.className = 'msg note';
    el.textContent = `Note by ${n.author.name}: ${n.text}`; $('thread').append(el); scroll();
  }
  function event(text) { const el = document.createElement('p'); el.className = 'event'; el.textContent = text; $('thread').append(el); scroll(); }
  function scroll() { const t = $('thread'); t.scrollTop = t.scrollHeight; }

  $('claim').addEventListener('click', () => send({ type: 'claim', conversation_id: open.id, ref: 'claim' }));
  $('release').addEventListener('click', () => send({ type: 'release', conversation_id: open.id, ref: 'release' }));
  $('resolve').addEventListener('click', () => send({ type: 'resolve', conversation_id: open.id, resolution: $('resolution').value, csat: $('csat').checked, ref: 'resolve' }));
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('reply').value.trim();
    if (!text || !open) return;
    send({ type: 'message', conversation_id: open.id, client_msg_id: uuid(), text, ref: 'reply' });
    $('reply').value = ''; renderCanned(); send({ type: 'typing', conversation_id: open.id, on: false });
  });
  $('reply').addEventListener('keydown', (e) => {
    const shown = [...$('canned').children];
    if (shown.length && (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey && $('reply').value.startsWith('/') && !$('reply').value.includes(' ')))) {
      e.preventDefault(); $('reply').value = shown[cannedPick].dataset.text; renderCanned(); return;
    }
    if (shown.length && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault(); cannedPick = (cannedPick + (e.key === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length; renderCanned(); return;
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('composer').requestSubmit(); }
  });
  let typingTimer = null;
  $('reply').addEventListener('input', () => {
    renderCanned();
    if (!open) return;
    if (!typingTimer) send({ type: 'typing', conversation_id: open.id, on: true });
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingTimer = null; send({ type: 'typing', conversation_id: open.id, on: false }); }, 3000);
  });
  function renderCanned() {
    const list = $('canned'); list.replaceChildren();
    const v = $('reply').value;
    if (!v.startsWith('/') || v.includes(' ')) { cannedPick = 0; return; }
    const matches = canned.filter((c) => ('/' + c.shortcut).startsWith(v)).slice(0, 6);
    cannedPick = Math.min(cannedPick, Math.max(0, matches.length - 1));
    matches.forEach((c, i) => {
      const li = document.createElement('li'); li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === cannedPick)); li.dataset.text = c.text;
      li.textContent = `/${c.shortcut} — ${c.text}`;
      li.addEventListener('mousedown', (e) => { e.preventDefault(); $('reply').value = c.text; renderCanned(); });
      list.append(li);
    });
  }
  $('note-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('note').value.trim();
    if (!text || !open) return;
    send({ type: 'note', conversation_id: open.id, text, ref: 'note' }); $('note').value = '';
  });
  const pinger = setInterval(() => { send({ type: 'ping' }); if (inbox.size) renderInbox(); }, 20000);

  // ---- views: the desk and the dashboard -------------------------------------------------------
  // The shell says which shows (`#inbox`, `#dashboard`, or neither for its other sections). The
  // agent socket stays open either way: an agent on another section is still online.
  let shown = null;
  function show(view) {
    if (view === shown) return;
    shown = view;
    $('desk').hidden = view !== 'inbox'; $('dashboard').hidden = view !== 'dashboard';
    if (view === 'dashboard') loadDashboard();
  }

  // ---- the dashboard -----------------------------------------------------------------------------
  // Reads /api/analytics/* (any member may) for the picked bot and range and draws it: tiles,
  // two hand-written SVG charts, the intents and the unmatched messages. Times are UTC, the
  // counters' grain.
  const HOUR = 3600000, DAY = 24 * HOUR;
  const RANGES = {
    '24h': { span: DAY, interval: 'hour', label: 'last 24 hours, by hour' },
    '7d': { span: 7 * DAY, interval: 'day', label: 'last 7 days, by day' },
    '30d': { span: 30 * DAY, interval: 'day', label: 'last 30 days, by day' },
  };
  const NONE = '\u2014';
  const intFmt = new Intl.NumberFormat('en-US');
  const num = (n) => intFmt.format(n);
  const pct = (r) => r == null ? NONE : `${Math.round(r * 1000) / 10}%`;
  const plural = (n, one, many = one + 's') => `${num(n)} ${n === 1 ? one : many}`;
  function duration(ms) {
    if (ms == null) return NONE;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.round(ms / 1000);
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  const sentimentText = (v) => v == null ? NONE : `${v > 0 ? '+' : ''}${v.toFixed(2)}`;
  const utc = (opts) => new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', ...opts });
  const dayFmt = utc({ day: 'numeric', month: 'short' });
  const hourFmt = utc({ hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const whenFmt = utc({ day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const slotName = (start, interval) => interval === 'hour' ? whenFmt.format(start) : dayFmt.format(start);

  const bots = new Map();   // bot id -> name, from GET /api/bots
  let dashGen = 0;          // the latest load; an older answer arriving late is dropped
  let dashData = null;      // {overview, series, intents} last drawn
  let dashQuery = '';       // from, to and bot_id of the last load (the export uses them too)

  /** The picked range as whole slots: the current hour (or UTC day) is the last one. */
  function pickedRange() {
    const r = RANGES[$('dash-range').value] || RANGES['7d'];
    const grain = r.interval === 'hour' ? HOUR : DAY;
    const to = Math.floor(Date.now() / grain) * grain + grain;
    return { ...r, from: to - r.span, to };
  }
  /** A GET with the bearer token; one retry after a refresh when the token has expired. */
  async function authed(path) {
    let res;
    try { res = await ctx.authed(path); } catch (_) { throw new Error('network error'); }
    if (!ctx.token()) throw new Error('your session ended; sign in again');
    if (!res.ok) {
      const json = await res.json().catch(() => ({}));
      throw Object.assign(new Error(json.error?.message || res.statusText || 'request failed'), { status: res.status, code: json.error?.code });
    }
    return res;
  }
  const describe = (err) => err.status
    ? `${err.message} (HTTP ${err.status}${err.code ? `, ${err.code}` : ''}).`
    : `the server could not be reached (${err.message}).`;

  async function loadDashboard() {
    const gen = ++dashGen;
    const board = $('dashboard');
    const r = pickedRange(), bot = $('dash-bot').value;
    const q = new URLSearchParams({ from: r.from, to: r.to });
    if (bot) q.set('bot_id', bot);
    dashQuery = q.toString();
    board.dataset.state = 'loading'; board.setAttribute('aria-busy', 'true');
    $('dash-error').textContent = '';
    try {
      const json = (path) => authed(path).then((res) => res.json());
      const [botList, overview, series, intents] = await Promise.all([
        json('/api/bots'),
        json(`/api/analytics/overview?${q}`),
        json(`/api/analytics/conversations?${q}&interval=${r.interval}`),
        json(`/api/analytics/intents?${q}&unmatched_limit=20`),
      ]);
      if (gen !== dashGen) return;
      fillBots(botList.data || []);
      dashData = { overview, series, intents, label: r.label };
      renderDashboard();
      board.dataset.key = `${bot}|${$('dash-range').value}`;
      board.dataset.state = 'ready';
    } catch (err) {
      if (gen !== dashGen) return;
      board.dataset.state = 'error';
      $('dash-error').textContent = `Could not load the dashboard: ${describe(err)}`;
    } finally {
      if (gen === dashGen) board.removeAttribute('aria-busy');
    }
  }
  function fillBots(list) {
    const sel = $('dash-bot'), keep = sel.value;
    bots.clear();
    for (const b of list) bots.set(b.id, b.name);
    sel.replaceChildren(new Option('All bots', ''), ...list.map((b) => new Option(b.name, b.id)));
    sel.value = bots.has(keep) ? keep : '';
  }
  const botName = (id) => bots.get(id) || id;

  function renderDashboard() {
    const { overview: o, series, intents, label } = dashData;
    const who = o.bot_id ? botName(o.bot_id) : 'all bots';
    const span = series.interval === 'hour' ? `${whenFmt.format(o.from)} to ${whenFmt.format(o.to)}`
      : `${dayFmt.format(o.from)} to ${dayFmt.format(o.to - DAY)}`;
    $('dash-meta').textContent = `${who} · ${label} · ${span} (UTC)`;
    renderKpis(o);
    renderCharts(true);
    renderIntents(intents);
    renderUnmatched(intents);
  }

  function renderKpis(o) {
    const m = o.messages, t = o.llm_tokens, asked = o.intents_matched + o.intents_unmatched;
    const tiles = [
      ['conversations', 'Conversations', num(o.conversations), 'started in the range'],
      ['messages', 'Messages', num(m.total), `${num(m.visitor)} visitor · ${num(m.bot)} bot · ${num(m.agent)} agent`],
      ['active_visitors', 'Active visitors', num(o.active_visitors), 'who wrote, once a day'],
      ['visitors_online', 'Visitors online', o.visitors_online == null ? NONE : num(o.visitors_online),
        o.visitors_online == null ? (o.bot_id ? 'shown for all bots' : 'not counted in a cluster') : 'widget open now'],
      ['resolution_rate', 'Resolution rate', pct(o.resolution_rate), `${num(o.resolutions.resolved)} resolved`],
      ['escalation_rate', 'Escalation rate', pct(o.escalation_rate), `${plural(o.handovers, 'handover')} to people`],
      ['avg_first_response', 'Avg first response', duration(o.avg_first_response_ms), 'to a visitor\u2019s first message'],
      ['avg_duration', 'Avg duration', duration(o.avg_duration_ms), 'start to resolution'],
      ['sentiment', 'Sentiment', sentimentText(o.sentiment), 'visitors, \u22121 to +1'],
      ['csat', 'CSAT', o.csat.average == null ? NONE : `${o.csat.average.toFixed(1)} / 5`, plural(o.csat.responses, 'response')],
      ['llm_tokens', 'LLM tokens', num(t.prompt + t.completion), `${num(t.prompt)} prompt · ${num(t.completion)} completion`],
      ['match_rate', 'Intent match rate', pct(o.match_rate), `${num(o.intents_matched)} of ${plural(asked, 'visitor message')}`],
    ];
    $('kpis').replaceChildren(...tiles.map(([key, name, value, sub]) => {
      const li = document.createElement('li'); li.className = 'kpi'; li.dataset.kpi = key;
      for (const [cls, text] of [['label', name], ['value', value], ['sub', sub]]) {
        const span = document.createElement('span'); span.className = cls; span.textContent = text; li.append(span);
      }
      return li;
    }));
  }

  // ---- the charts: plain SVG, drawn at the box's width (redrawn when it changes) -----------------
  const SVG = 'http://www.w3.org/2000/svg';
  function svg(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (parent) parent.append(el);
    return el;
  }
  function svgTitle(parent, text) { svg('title', {}, parent).textContent = text; }
  /** An axis from 0 in 1-2-5 steps, about `ticks` of them; at least 0..ticks for all zeros. */
  function scale(max, ticks = 4) {
    if (!(max > 0)) return { step: 1, top: ticks };
    const raw = max / ticks, mag = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(1, [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw));
    return { step, top: Math.ceil(max / step) * step };
  }
  function noData(box, text) {
    const p = document.createElement('p'); p.className = 'no-data'; p.textContent = text; box.append(p);
  }
  const drawnWidths = new Map();
  function renderCharts(force) {
    // Stopped, or the page is going away (a reload tears the document down under the observers).
    if (stopped || !root.isConnected || !dashData || $('dashboard').hidden) return;
    for (const [id, draw] of [['series-chart', () => renderSeries(dashData.series)], ['channel-chart', () => renderChannels(dashData.series.by_channel)]]) {
      const w = $(id).clientWidth;
      if (force || drawnWidths.get(id) !== w) { drawnWidths.set(id, w); draw(); }
    }
  }
  const observers = ['series-chart', 'channel-chart'].map((id) => {
    const o = new ResizeObserver(() => renderCharts(false)); o.observe($(id)); return o;
  });

  function renderSeries(series) {
    const box = $('series-chart'); box.replaceChildren();
    const pts = series.points, n = pts.length, hourly = series.interval === 'hour';
    const W = Math.max(260, box.clientWidth || 600), H = 230, m = { l: 42, r: 12, t: 10, b: 28 };
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const { step, top } = scale(Math.max(0, ...pts.map((p) => Math.max(p.messages, p.conversations))));
    const y = (v) => m.t + ph - (v / top) * ph;
    const slot = pw / Math.max(1, n), cx = (i) => m.l + slot * (i + 0.5);
    const conversations = pts.reduce((a, p) => a + p.conversations, 0);
    const messages = pts.reduce((a, p) => a + p.messages, 0);
    const busiest = pts.reduce((b, p) => (p.messages > (b?.messages ?? 0) ? p : b), null);
    const unit = hourly ? 'hour' : 'day';
    const summary = n === 0 ? 'No intervals in this range.'
      : `Conversations and messages by ${unit}, ${plural(n, unit)} from ${slotName(pts[0].start, series.interval)} to `
        + `${slotName(pts[n - 1].start, series.interval)} UTC: ${plural(conversations, 'conversation')} and ${plural(messages, 'message')} in all`
        + (busiest ? `; busiest ${slotName(busiest.start, series.interval)} with ${plural(busiest.messages, 'message')}.` : '.');
    const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, 'data-points': n });
    // Grid and the value axis.
    const axis = svg('g', { 'aria-hidden': 'true' }, root);
    for (let v = 0; v <= top; v += step) {
      svg('line', { class: v ? 'grid' : 'axis', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }, axis);
      svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, axis).textContent = num(v);
    }
    // Time labels, far enough apart not to collide: hours on round steps (midnight shows the
    // date), days counted back from the latest.
    const wanted = Math.ceil(58 / slot);
    const every = hourly ? [1, 2, 3, 4, 6, 12, 24].find((k) => k >= wanted) || 24 : Math.max(1, wanted);
    for (let i = 0; i < n; i++) {
      const start = pts[i].start;
      if (hourly ? new Date(start).getUTCHours() % every !== 0 : (n - 1 - i) % every !== 0) continue;
      const text = hourly && new Date(start).getUTCHours() !== 0 ? hourFmt.format(start) : dayFmt.format(start);
      svg('line', { class: 'axis', x1: cx(i), x2: cx(i), y1: m.t + ph, y2: m.t + ph + 4 }, axis);
      svg('text', { x: cx(i), y: H - 8, 'text-anchor': 'middle' }, axis).textContent = text;
    }
    // One group per interval: its tooltip, a hover area and the messages bar.
    const bars = svg('g', { class: 'points' }, root);
    const bw = Math.max(1, Math.min(28, slot * 0.62));
    pts.forEach((p, i) => {
      const g = svg('g', { class: 'pt', 'data-start': p.start, 'data-conversations': p.conversations, 'data-messages': p.messages }, bars);
      svgTitle(g, `${slotName(p.start, series.interval)} UTC: ${plural(p.conversations, 'conversation')}, ${plural(p.messages, 'message')}`);
      svg('rect', { class: 'hit', x: m.l + slot * i, y: m.t, width: slot, height: ph, fill: 'transparent' }, g);
      svg('rect', { x: cx(i) - bw / 2, y: y(p.messages), width: bw, height: m.t + ph - y(p.messages), class: 'bar s-msg', rx: Math.min(2, bw / 4) }, g);
    });
    // The conversations line over the bars; decoration only (the groups carry the numbers).
    if (n) {
      const over = svg('g', { 'aria-hidden': 'true', 'pointer-events': 'none' }, root);
      svg('path', { d: pts.map((p, i) => `${i ? 'L' : 'M'}${cx(i).toFixed(1)},${y(p.conversations).toFixed(1)}`).join(''),
        class: 's-line' }, over);
      if (slot >= 7) {
        pts.forEach((p, i) => svg('circle', { cx: cx(i), cy: y(p.conversations), r: 3.2, class: 's-dot' }, over));
      }
    }
    box.append(root);
    if (!messages && !conversations) noData(box, 'No conversations or messages in this range.');
  }

  function renderChannels(byChannel) {
    const box = $('channel-chart'); box.replaceChildren();
    const rows = Object.entries(byChannel || {}).sort((a, b) => b[1].messages - a[1].messages || a[0].localeCompare(b[0]));
    if (!rows.length) { noData(box, 'No conversations on any channel in this range.'); return; }
    const W = Math.max(220, box.clientWidth || 300), row = 46, m = { l: 78, r: 40, t: 6, b: 24 };
    const H = m.t + rows.length * row + m.b, pw = W - m.l - m.r;
    const { step, top } = scale(Math.max(0, ...rows.map(([, c]) => Math.max(c.messages, c.conversations))), 3);
    const x = (v) => m.l + (v / top) * pw;
    const summary = `Conversations and messages by channel: ${rows.map(([ch, c]) => `${ch} ${plural(c.conversations, 'conversation')}, ${plural(c.messages, 'message')}`).join('; ')}.`;
    const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary });
    const axis = svg('g', { 'aria-hidden': 'true' }, root);
    for (let v = 0; v <= top; v += step) {
      svg('line', { class: v ? 'grid' : 'axis', x1: x(v), x2: x(v), y1: m.t, y2: H - m.b }, axis);
      svg('text', { x: x(v), y: H - 8, 'text-anchor': 'middle' }, axis).textContent = num(v);
    }
    rows.forEach(([channel, c], i) => {
      const y0 = m.t + i * row + 6, h = 14;
      const g = svg('g', { class: 'bar', 'data-channel': channel, 'data-conversations': c.conversations, 'data-messages': c.messages }, root);
      svgTitle(g, `${channel}: ${plural(c.conversations, 'conversation')}, ${plural(c.messages, 'message')}`);
      svg('rect', { class: 'hit', x: 0, y: y0 - 4, width: W, height: row - 4, fill: 'transparent' }, g);
      svg('text', { x: m.l - 8, y: y0 + h + 4, 'text-anchor': 'end', class: 'name' }, g).textContent = channel;
      [[c.conversations, 's-conv', y0], [c.messages, 's-msg', y0 + h + 2]].forEach(([v, cls, yy]) => {
        svg('rect', { class: cls, x: m.l, y: yy, width: Math.max(v ? 2 : 0, x(v) - m.l), height: h, rx: 2 }, g);
        svg('text', { x: x(v) + 4, y: yy + h - 3 }, g).textContent = num(v);
      });
    });
    box.append(root);
  }

  function renderIntents(report) {
    const body = $('intents').tBodies[0]; body.replaceChildren();
    const cell = (tr, text, cls) => { const td = tr.insertCell(); if (cls) td.className = cls; if (text != null) td.textContent = text; return td; };
    if (!report.intents.length) {
      const tr = body.insertRow(); const td = cell(tr, 'No intent matched a visitor message in this range.', 'muted'); td.colSpan = 4;
      return;
    }
    for (const it of report.intents) {
      const tr = body.insertRow(); tr.dataset.intent = it.intent; tr.dataset.botId = it.bot_id;
      cell(tr, it.intent); cell(tr, botName(it.bot_id)); cell(tr, num(it.hits), 'num hits');
      const conf = cell(tr, null, 'confidence');
      const meter = document.createElement('span'); meter.className = 'meter'; meter.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span'); fill.style.width = `${Math.round((it.avg_confidence || 0) * 100)}%`;
      meter.append(fill); conf.append(meter, pct(it.avg_confidence));
    }
  }

  function renderUnmatched(report) {
    const list = $('unmatched'); list.replaceChildren();
    const shown = report.unmatched.length, total = report.unmatched_total;
    $('unmatched-total').textContent = shown < total ? `(newest ${num(shown)} of ${num(total)})` : `(${num(total)})`;
    if (!shown) {
      const li = document.createElement('li'); li.className = 'muted';
      li.textContent = 'No unmatched visitor messages in this range.'; list.append(li); return;
    }
    for (const u of report.unmatched) {
      const li = document.createElement('li'); li.dataset.conversationId = u.conversation_id; li.dataset.seq = u.seq;
      const text = document.createElement('span'); text.className = 'text'; text.textContent = `\u201C${u.text}\u201D`;
      const meta = document.createElement('span'); meta.className = 'meta';
      const when = document.createElement('time'); when.dateTime = new Date(u.created_at).toISOString();
      when.textContent = `${whenFmt.format(u.created_at)} UTC`;
      const bot = document.createElement('span'); bot.textContent = botName(u.bot_id);
      const open = document.createElement('button'); open.type = 'button'; open.className = 'link';
      open.textContent = 'Open conversation';
      open.setAttribute('aria-label', `Open conversation ${u.conversation_id.slice(-6)} in the inbox`);
      open.addEventListener('click', () => openInDesk(u.conversation_id));
      meta.append(when, bot, open);
      li.append(text, meta); list.append(li);
    }
  }
  function openInDesk(id) {
    history.pushState(null, '', '#inbox');
    dispatchEvent(new HashChangeEvent('hashchange')); // the shell's route follows
    show('inbox');
    select(id);
  }

  async function exportAs(format) {
    const button = $(`export-${format}`);
    button.disabled = true; $('dash-error').textContent = '';
    try {
      const res = await authed(`/api/analytics/export?${dashQuery}&format=${format}`);
      const blob = await res.blob();
      const given = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') || '')?.[1];
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = (given || `parla-analytics.${format}`).replace(/:/g, '-');
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    } catch (err) {
      $('dash-error').textContent = `Could not export: ${describe(err)}`;
    } finally {
      button.disabled = false;
    }
  }
  $('dash-bot').addEventListener('change', loadDashboard);
  $('dash-range').addEventListener('change', loadDashboard);
  $('dash-refresh').addEventListener('click', loadDashboard);
  $('export-csv').addEventListener('click', () => exportAs('csv'));
  $('export-json').addEventListener('click', () => exportAs('json'));

  start();
  return {
    show,
    presence(status) { send({ type: 'presence', status }); },
    reauth(token) { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: 'auth', token })); },
    stop() {
      // Whatever is in flight finds the desk gone: loads are dropped, the charts stop redrawing.
      stopped = true; dashGen++; clearTimeout(retryTimer); clearInterval(pinger); clearTimeout(readTimer); clearTimeout(typingTimer);
      for (const o of observers) o.disconnect();
      if (ws) ws.close();
      root.replaceChildren();
    },
  };
}
