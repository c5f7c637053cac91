// The loader: what `<script src=".../widget.js" data-bot="BOT_ID" async>` runs on the host page.
// It draws the launcher at once, inside a Shadow DOM (no CSS in or out), reads the bot's public
// settings, and pulls the rest of the widget (app.js) only on first open — or right away, in idle
// time, when this browser already has a conversation with the bot (to resume it and count
// unread messages). Options, as data-* attributes on the script tag:
//   data-bot (required), data-open ("true": open at once), data-lang ("en", "it"),
//   data-position ("bottom-right", "bottom-left"), data-server (Parla's base URL; default: the
//   script's own origin).
import { accent, adoptCss, type PublicSettings } from './settings';
import { fmt, pickLang, words } from './i18n';
import type { AppHandle, AppOptions } from './app';
import { openEarly, storageKey, type EarlySocket } from './early';

declare const __APP_HASH__: string;

const LAUNCHER_CSS = `
:host{all:initial!important;display:block!important;position:static!important;visibility:visible!important;opacity:1!important;--parla-accent:#3b5bdb;--parla-on-accent:#fff}
.launcher{position:fixed;bottom:20px;right:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;padding:0;margin:0;cursor:pointer;
 background:var(--parla-accent);color:var(--parla-on-accent);box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;
 transition:transform .15s ease;font:600 14px/1 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.left .launcher{right:auto;left:20px}
.launcher:hover{transform:scale(1.06)}
.launcher:focus-visible{outline:3px solid #e67700;outline-offset:3px}
.launcher svg{width:28px;height:28px;fill:currentColor}
.launcher .x{display:none}
.open .launcher .x{display:block}.open .launcher .bubble{display:none}
.badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;padding:0 6px;box-sizing:border-box;border-radius:11px;background:#c92a2a;color:#fff;
 font:700 12px/22px system-ui,sans-serif;text-align:center;border:2px solid #fff}
.badge[hidden]{display:none}
@media (max-width:520px){.open .launcher{display:none}}
@media (prefers-reduced-motion:reduce){.launcher{transition:none}.launcher:hover{transform:none}}
`;

const ICON_BUBBLE = '<svg class="bubble" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3C6.5 3 2 6.8 2 11.5c0 2.4 1.2 4.6 3.1 6.1L4 21.5l4.6-2.3c1.1.3 2.2.5 3.4.5 5.5 0 10-3.8 10-8.5S17.5 3 12 3z"/></svg>';
const ICON_X = '<svg class="x" viewBox="0 0 24 24" aria-hidden="true"><path d="M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7 2.9 18.3 9.2 12 2.9 5.7 4.3 4.3l6.3 6.3 6.3-6.3z"/></svg>';

function boot(): void {
  const script = (document.currentScript as HTMLScriptElement | null)
    ?? document.querySelector<HTMLScriptElement>('script[data-bot][src*="widget.js"]');
  const bot = script?.dataset.bot;
  if (!script || !bot) { console.warn('parla widget: the script tag needs data-bot="BOT_ID"'); return; }
  const base = new URL(script.dataset.server || script.src, location.href).origin;
  const w = (window as unknown as { __parlaWidgets?: Record<string, unknown> });
  w.__parlaWidgets ??= {};
  if (w.__parlaWidgets[bot]) return; // embedded twice: one widget
  w.__parlaWidgets[bot] = true;

  const host = document.createElement('div');
  host.id = `parla-widget-${bot}`;
  host.setAttribute('data-parla-widget', '');
  const shadow = host.attachShadow({ mode: 'open' });
  const root = document.createElement('div');
  root.className = 'root';
  const launcher = document.createElement('button');
  launcher.type = 'button';
  launcher.className = 'launcher';
  launcher.id = 'launcher';
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', 'panel');
  launcher.setAttribute('aria-haspopup', 'dialog');
  launcher.innerHTML = ICON_BUBBLE + ICON_X;
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.id = 'badge';
  badge.hidden = true;
  launcher.append(badge);
  root.append(launcher);
  adoptCss(shadow, LAUNCHER_CSS);
  shadow.append(root);

  let lang = pickLang(script.dataset.lang, navigator.language);
  let t = words(lang);
  let title = t.chat;
  let unread = 0;
  const label = () => launcher.setAttribute('aria-label',
    `${launcher.getAttribute('aria-expanded') === 'true' ? t.close : t.open}: ${title}${unread ? ` (${fmt(t.unread, { n: unread })})` : ''}`);
  label();
  if (script.dataset.position === 'bottom-left') root.classList.add('left');
  (document.body || document.documentElement).append(host);

  let settings: PublicSettings | null = null;
  /** The server refused this page or bot: no widget at all, no socket. */
  let refused = false;
  const settingsReady: Promise<PublicSettings | null> = fetch(`${base}/v1/widget/bots/${encodeURIComponent(bot)}/settings`, { credentials: 'omit' })
    .then(async (r) => {
      if (r.ok) return (await r.json()) as PublicSettings;
      const body = await r.json().catch(() => null) as { error?: { code?: string } } | null;
      console.warn(`parla widget: ${body?.error?.code ?? r.status}`);
      if (r.status === 403 || r.status === 404) { refused = true; host.remove(); } // this page may not chat with this bot
      return null;
    })
    .catch(() => null)
    .then((s) => {
      settings = s;
      if (s) {
        lang = pickLang(script.dataset.lang, s.language, navigator.language);
        t = words(lang);
        title = s.appearance.title || s.name || t.chat;
        const { bg, fg } = accent(s.appearance.color);
        host.style.setProperty('--parla-accent', bg);
        root.style.setProperty('--parla-accent', bg);
        root.style.setProperty('--parla-on-accent', fg);
        if (!script.dataset.position && s.appearance.position === 'bottom-left') root.classList.add('left');
        label();
      }
      return s;
    });

  let app: Promise<AppHandle> | null = null;
  let isOpen = false;
  const setUnread = (n: number) => {
    unread = n;
    badge.hidden = n === 0;
    badge.textContent = n > 9 ? '9+' : String(n);
    badge.setAttribute('aria-hidden', 'true'); // the launcher's label says it
    label();
  };
  const load = (): Promise<AppHandle> => {
    if (app) return app;
    // The socket opens as soon as the settings say this page may chat, while app.js is still
    // downloading; a refused page opens none.
    const earlyReady: Promise<EarlySocket | null> = settingsReady.then((s) => (s ? openEarly(base, bot) : null));
    const loading = Promise.all([import(/* @vite-ignore */ `${base}/widget/app.js?v=${__APP_HASH__}`) as Promise<typeof import('./app')>, earlyReady])
      .then(([mod, early]) => {
        if (refused) throw new Error('this page may not embed this bot');
        const opts: AppOptions = {
          shadow, root, base, botId: bot, settings, lang: script.dataset.lang ?? null, early,
          onUnread: setUnread,
          onClose: () => toggle(false, true),
        };
        return mod.mount(opts);
      });
    app = loading;
    loading.catch((e) => {
      if (!refused) console.warn('parla widget: could not load', e);
      void earlyReady.then((early) => early?.ws.close());
      app = null; // the next open tries again
    });
    return loading;
  };
  const toggle = (open: boolean, focusLauncher = false) => {
    isOpen = open;
    root.classList.toggle('open', open);
    launcher.setAttribute('aria-expanded', String(open));
    label();
    void load().then((a) => {
      if (isOpen !== open) return;
      if (open) a.open(); else a.close();
      if (!open && focusLauncher) launcher.focus();
    }, () => { /* said by load() */ });
  };
  launcher.addEventListener('click', () => toggle(!isOpen));

  if (script.dataset.open === 'true') toggle(true);
  else if (hasConversation(bot)) {
    // A returning visitor: connect quietly, so replies that came meanwhile show as unread.
    const idle = (window as unknown as { requestIdleCallback?: (f: () => void) => void }).requestIdleCallback ?? ((f: () => void) => setTimeout(f, 200));
    idle(() => { load().catch(() => { /* said by load() */ }); });
  }
}

function hasConversation(bot: string): boolean {
  try { return !!JSON.parse(localStorage.getItem(storageKey(bot)) || '{}').conversation_id; } catch { return false; }
}

boot();
