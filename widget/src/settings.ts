// What the loader and the app share: the bot's public settings and how colours are picked.
import type { Appearance } from './protocol.gen';

/** `GET /v1/widget/bots/{bot}/settings` (gateway/src/widget_assets.rs). */
export interface PublicSettings {
  id: string;
  name: string;
  language: string;
  welcome_message?: string;
  appearance: Appearance;
}

export const DEFAULT_ACCENT = '#3b5bdb';

/** The accent colour if it is a valid `#rgb`/`#rrggbb`, with the text colour that reads on it. */
export function accent(color: string | null | undefined): { bg: string; fg: string } {
  const c = color && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color) ? color : DEFAULT_ACCENT;
  let h = c.slice(1);
  if (h.length === 3) h = h.replace(/./g, '$&$&');
  const [r, g, b] = [0, 2, 4].map((i) => {
    const v = parseInt(h.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return { bg: c, fg: lum > 0.179 ? '#111111' : '#ffffff' };
}

/**
 * Only https URLs (http ones from Parla itself, or on a page that is itself http, where they are
 * not mixed content) are ever put in src/href: never javascript:, data: and the like.
 */
export function safeUrl(url: string | null | undefined, base: string): string | null {
  if (!url) return null;
  try {
    const u = new URL(url, base);
    const httpOk = u.origin === new URL(base).origin || globalThis.location?.protocol === 'http:';
    if (u.protocol === 'https:' || (u.protocol === 'http:' && httpOk)) return u.href;
  } catch { /* not a URL */ }
  return null;
}

/**
 * Adds a stylesheet to the shadow root. A constructed stylesheet is not an inline `<style>`, so
 * a host page whose Content-Security-Policy forbids inline styles still styles the widget; a
 * `<style>` element is the fallback for browsers without constructable stylesheets.
 */
export function adoptCss(shadow: ShadowRoot, css: string): void {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    shadow.adoptedStyleSheets = [...shadow.adoptedStyleSheets, sheet];
    return;
  } catch { /* older browser */ }
  const style = document.createElement('style');
  style.textContent = css;
  shadow.prepend(style);
}
