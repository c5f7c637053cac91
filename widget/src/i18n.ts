// The widget's words, in English and Italian. Placeholders: {name}, {n}, {s}.
const en = {
  chat: 'Chat',
  open: 'Open chat',
  close: 'Close chat',
  unread: '{n} unread',
  placeholder: 'Type a message…',
  send: 'Send',
  hint: 'Enter sends, Shift+Enter adds a new line. Escape closes the chat.',
  messages: 'Messages',
  connecting: 'Connecting…',
  connected: 'Online',
  offline: 'Offline, retrying in {s} s',
  unavailable: 'Chat unavailable',
  sending: 'Sending…',
  seen: 'Seen',
  you: 'You',
  agent: 'Agent',
  typing: '{name} is typing…',
  joined: '{name} joined the conversation.',
  teamMember: 'A team member',
  back: 'You are chatting with {name} again.',
  download: 'Download {name}',
  submit: 'Send',
  submitted: 'Sent',
  required: 'required',
  err_rate_limited: 'You are sending messages too fast; retrying shortly.',
  err_tenant_at_capacity: 'This chat is busy right now; retrying shortly.',
  err_bot_unavailable: 'This chat is not available right now.',
  err_bot_not_found: 'This chat does not exist.',
  err_invalid_form: 'The form was not accepted; please check it and send it again.',
  err_origin_not_allowed: 'This chat is not available on this site.',
  err_internal: 'Something went wrong on our side; retrying.',
  err_invalid_text: 'That message could not be sent (empty or too long).',
  err_frame_too_large: 'That message is too large to send.',
  tooLong: 'Messages can be at most {n} characters.',
};
export type Words = typeof en;

const it: Words = {
  chat: 'Chat',
  open: 'Apri la chat',
  close: 'Chiudi la chat',
  unread: '{n} non letti',
  placeholder: 'Scrivi un messaggio…',
  send: 'Invia',
  hint: 'Invio manda il messaggio, Maiusc+Invio va a capo. Esc chiude la chat.',
  messages: 'Messaggi',
  connecting: 'Connessione…',
  connected: 'In linea',
  offline: 'Non in linea, nuovo tentativo tra {s} s',
  unavailable: 'Chat non disponibile',
  sending: 'Invio…',
  seen: 'Visto',
  you: 'Tu',
  agent: 'Operatore',
  typing: '{name} sta scrivendo…',
  joined: '{name} si è unito alla conversazione.',
  teamMember: 'Un operatore',
  back: 'Stai di nuovo parlando con {name}.',
  download: 'Scarica {name}',
  submit: 'Invia',
  submitted: 'Inviato',
  required: 'obbligatorio',
  err_rate_limited: 'Stai inviando messaggi troppo in fretta; riprovo tra poco.',
  err_tenant_at_capacity: 'La chat è molto occupata; riprovo tra poco.',
  err_bot_unavailable: 'Questa chat non è disponibile al momento.',
  err_bot_not_found: 'Questa chat non esiste.',
  err_invalid_form: 'Il modulo non è stato accettato: controllalo e invialo di nuovo.',
  err_origin_not_allowed: 'Questa chat non è disponibile su questo sito.',
  err_internal: 'Qualcosa è andato storto da parte nostra; riprovo.',
  err_invalid_text: 'Impossibile inviare il messaggio (vuoto o troppo lungo).',
  err_frame_too_large: 'Il messaggio è troppo grande.',
  tooLong: 'I messaggi possono avere al massimo {n} caratteri.',
};

const LANGS: Record<string, Words> = { en, it };

/** The first of the candidates the widget speaks (`it-IT` counts as `it`); English otherwise. */
export function pickLang(...candidates: (string | null | undefined)[]): string {
  for (const c of candidates) {
    const l = c?.toLowerCase().split(/[-_]/)[0];
    if (l && LANGS[l]) return l;
  }
  return 'en';
}

export function words(lang: string): Words { return LANGS[lang] ?? en; }

export function fmt(s: string, vars: Record<string, string | number>): string {
  return s.replace(/\{(\w+)\}/g, (_, k: string) => String(vars[k] ?? ''));
}
