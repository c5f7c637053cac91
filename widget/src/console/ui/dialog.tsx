// A modal confirmation (`<dialog>`): focus moves in, Escape or Cancel closes it and focus goes
// back where it was.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { t } from '../i18n';

interface Props {
  id: string;
  title: string;
  children: ComponentChildren;
  confirm: string;
  danger?: boolean;
  busy?: boolean;
  error?: string;
  onConfirm: () => void;
  onClose: () => void;
}

export function Confirm({ id, title, children, confirm, danger, busy, error, onConfirm, onClose }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const back = document.activeElement as HTMLElement | null;
    const dialog = ref.current!;
    dialog.showModal();
    const cancel = (e: Event) => { e.preventDefault(); onClose(); };
    dialog.addEventListener('cancel', cancel);
    return () => {
      dialog.removeEventListener('cancel', cancel);
      if (dialog.open) dialog.close();
      // The opener may have been drawn again meanwhile (a refresh of its page): then its
      // namesake takes the focus — found now, or once the page has finished drawing.
      const restore = () => {
        const opener = back?.isConnected ? back : back?.id ? document.getElementById(back.id) : null;
        opener?.focus();
        return opener != null;
      };
      if (!restore() || document.activeElement === document.body) requestAnimationFrame(() => { restore(); });
    };
  }, []);
  return (
    <dialog id={id} ref={ref} aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{title}</h2>
      {children}
      {error && <p class="form-error" role="alert">{error}</p>}
      <p class="actions">
        <button type="button" class="secondary" onClick={onClose}>{t('cancel')}</button>
        <button type="button" class={danger ? 'danger' : undefined} disabled={busy} onClick={onConfirm} id={`${id}-confirm`}>{confirm}</button>
      </p>
    </dialog>
  );
}
