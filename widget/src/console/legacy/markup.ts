// The desk's and the dashboard's markup, as the hand-written console had it (static: no user
// data, so `innerHTML` is safe). `desk.js` finds its elements by these ids.
export const MARKUP = `
<main id="desk" hidden>
  <ul id="inbox" role="listbox" aria-label="Conversations"></ul>
  <section id="pane" aria-label="Conversation">
    <div id="pane-head">
      <h2 id="pane-title">Pick a conversation</h2>
      <button id="claim" type="button" disabled>Take over</button>
      <button id="release" type="button" class="secondary" disabled>Hand back to the bot</button>
      <label for="resolution" class="sr-only">Resolution</label>
      <select id="resolution" disabled>
        <option value="RESOLVED">Resolved</option><option value="UNRESOLVED">Unresolved</option>
        <option value="ESCALATED">Escalated</option><option value="ABANDONED">Abandoned</option>
      </select>
      <label class="check"><input id="csat" type="checkbox"> ask for a rating</label>
      <button id="resolve" type="button" class="secondary" disabled>Resolve</button>
    </div>
    <div id="thread" role="log" aria-live="polite" tabindex="0"><p class="empty">No conversation open.</p></div>
    <p id="notice" role="status"></p>
    <form id="composer" autocomplete="off">
      <label for="reply" class="sr-only">Reply</label>
      <textarea id="reply" rows="1" maxlength="4000" placeholder="Take over to reply · type / for canned responses" disabled></textarea>
      <button id="send" type="submit" disabled>Send</button>
      <ul id="canned" role="listbox" aria-label="Canned responses"></ul>
    </form>
    <form id="note-form" autocomplete="off">
      <label for="note" class="sr-only">Internal note</label>
      <input id="note" placeholder="Internal note (never shown to the visitor)" disabled>
      <button id="add-note" type="submit" class="secondary" disabled>Add note</button>
    </form>
  </section>
</main>

<main id="dashboard" hidden aria-labelledby="dash-title" data-state="idle">
  <div class="dash-bar">
    <h2 id="dash-title">Dashboard</h2>
    <label>Bot <select id="dash-bot"><option value="">All bots</option></select></label>
    <label>Range
      <select id="dash-range">
        <option value="24h">Last 24 hours</option>
        <option value="7d" selected>Last 7 days</option>
        <option value="30d">Last 30 days</option>
      </select>
    </label>
    <button id="dash-refresh" type="button" class="secondary">Refresh</button>
    <button id="export-csv" type="button" class="secondary">Export CSV</button>
    <button id="export-json" type="button" class="secondary">Export JSON</button>
  </div>
  <p id="dash-meta" aria-live="polite"></p>
  <p id="dash-error" role="alert"></p>
  <section aria-labelledby="kpi-title">
    <h3 id="kpi-title" class="sr-only">Key numbers</h3>
    <ul id="kpis" class="kpis"></ul>
  </section>
  <div class="cards">
    <section class="card" aria-labelledby="series-title">
      <h3 id="series-title">Conversations and messages over time</h3>
      <div class="legend" aria-hidden="true">
        <span><span class="swatch" style="background: var(--series-conversations)"></span>Conversations</span>
        <span><span class="swatch" style="background: var(--series-messages)"></span>Messages</span>
      </div>
      <div id="series-chart" class="chart"></div>
    </section>
    <section class="card" aria-labelledby="channel-title">
      <h3 id="channel-title">By channel</h3>
      <div class="legend" aria-hidden="true">
        <span><span class="swatch" style="background: var(--series-conversations)"></span>Conversations</span>
        <span><span class="swatch" style="background: var(--series-messages)"></span>Messages</span>
      </div>
      <div id="channel-chart" class="chart"></div>
    </section>
  </div>
  <div class="cards">
    <section class="card" aria-labelledby="intents-title">
      <h3 id="intents-title">Intents</h3>
      <table id="intents" class="intents">
        <thead><tr><th scope="col">Intent</th><th scope="col">Bot</th><th scope="col" class="num">Hits</th><th scope="col">Avg confidence</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section class="card" aria-labelledby="unmatched-title">
      <h3 id="unmatched-title">Unmatched messages <span id="unmatched-total" class="count"></span></h3>
      <ol id="unmatched"></ol>
    </section>
  </div>
</main>
`;
