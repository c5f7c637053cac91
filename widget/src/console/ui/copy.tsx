import { useState } from 'preact/hooks';
import { t } from '../i18n';

/** Copies `text` to the clipboard; says so for a moment. */
export function CopyButton({ text, id }: { text: string; id?: string }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard permission: the text stays on the page, selectable.
      return;
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return <button id={id} type="button" class="secondary" onClick={() => void copy()}>{done ? t('copied') : t('copy')}</button>;
}
