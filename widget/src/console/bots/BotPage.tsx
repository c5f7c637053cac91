// #bots/ID[/section]: one bot — its status and actions, and its sections as tabs.
import { useState } from 'preact/hooks';
import type { Bot } from '../api.gen';
import { t } from '../i18n';
import { lazy } from '../lazy';
import { canWrite } from '../roles';
import { go } from '../router';
import { api, type Me } from '../session';
import { Confirm } from '../ui/dialog';
import { describe } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';
import { statusLabel } from './labels';
import { BotSettings } from './BotSettings';

const Intents = lazy(() => import('./Intents').then((m) => m.Intents));
const Knowledge = lazy(() => import('./Knowledge').then((m) => m.Knowledge));
const Appearance = lazy(() => import('./Appearance').then((m) => m.Appearance));
const Channels = lazy(() => import('./Channels').then((m) => m.Channels));
const TryIt = lazy(() => import('./TryIt').then((m) => m.TryIt));

const SECTIONS = [
  { path: '', word: 'settings' },
  { path: 'intents', word: 'intents' },
  { path: 'knowledge', word: 'knowledge' },
  { path: 'try', word: 'tryIt' },
  { path: 'appearance', word: 'appearance' },
  { path: 'channels', word: 'channels' },
] as const;

export function BotPage({ me, id, section, sub }: { me: Me; id: string; section: string; sub: string | null }) {
  const res = useResource(() => api<Bot>('GET', `/api/bots/${encodeURIComponent(id)}`), [id]);
  const writer = canWrite(me.role);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [deleting, setDeleting] = useState(false);

  const act = async (what: 'publish' | 'pause') => {
    setBusy(true);
    setError('');
    try {
      res.set(await api<Bot>('POST', `/api/bots/${encodeURIComponent(id)}/${what}`));
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    setBusy(true);
    setError('');
    try {
      await api('DELETE', `/api/bots/${encodeURIComponent(id)}`);
      go('bots');
    } catch (e) {
      setError(describe(e));
      setBusy(false);
    }
  };

  return (
    <main class="page wide" aria-labelledby="bot-title">
      <p class="crumbs"><a href="#bots">{t('bots')}</a></p>
      <ResourceView res={res} id="bot">
        {(bot) => (
          <>
            <div class="page-head">
              <h1 id="bot-title">{bot.name}</h1>
              <span id="bot-status" class="status" data-status={bot.status}>{statusLabel(bot.status)}</span>
              {writer && (
                <span class="actions">
                  {bot.status === 'ACTIVE' ? (
                    <button id="pause-bot" type="button" class="secondary" disabled={busy} onClick={() => void act('pause')}>{t('pause')}</button>
                  ) : (
                    <button id="publish-bot" type="button" disabled={busy} onClick={() => void act('publish')}>{t('publish')}</button>
                  )}
                  <button id="delete-bot" type="button" class="secondary danger-text" disabled={busy} onClick={() => setDeleting(true)}>{t('delete')}</button>
                </span>
              )}
            </div>
            {error && !deleting && <p class="form-error" role="alert">{error}</p>}
            <nav class="tabs" aria-label={t('botSections')}>
              {SECTIONS.map((s) => (
                <a id={`bot-tab-${s.path || 'settings'}`} href={`#bots/${bot.id}${s.path ? `/${s.path}` : ''}`} aria-current={section === s.path ? 'page' : undefined}>{t(s.word)}</a>
              ))}
            </nav>
            {section === '' && <BotSettings bot={bot} writer={writer} onSaved={res.set} />}
            {section === 'intents' && <Intents bot={bot} writer={writer} selected={sub} />}
            {section === 'knowledge' && <Knowledge bot={bot} writer={writer} />}
            {section === 'try' && <TryIt bot={bot} writer={writer} />}
            {section === 'appearance' && <Appearance bot={bot} writer={writer} onSaved={res.set} />}
            {section === 'channels' && <Channels bot={bot} writer={writer} />}
            {deleting && (
              <Confirm
                id="delete-dialog"
                title={t('deleteBotTitle', { name: bot.name })}
                confirm={t('deleteForGood')}
                danger
                busy={busy}
                error={error}
                onConfirm={() => void remove()}
                onClose={() => { setDeleting(false); setError(''); }}
              >
                <p>{t('deleteBotBody')}</p>
              </Confirm>
            )}
          </>
        )}
      </ResourceView>
    </main>
  );
}
