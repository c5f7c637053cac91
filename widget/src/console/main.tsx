// The console's entry: the language first (Italian is a chunk of its own), then the shell.
import { render } from 'preact';
import { App } from './app';
import { initialLang, setLang } from './i18n';

const lang = initialLang();
const ready = lang === 'en' ? Promise.resolve() : setLang(lang, false).catch(() => {});
void ready.then(() => {
  const root = document.getElementById('app')!;
  root.replaceChildren(); // the "Loading…" placeholder is the page's, not Preact's to reuse
  render(<App />, root);
});
