// #billing[/marketplace|/selling]: the workspace's plan and this month's use of its limits,
// upgrades (Stripe Checkout) and the billing portal; the marketplace (browse, try, subscribe);
// selling a bot (payouts onboarding with Stripe Connect, the bot's listing and prices).
import { useState } from 'preact/hooks';
import type { BotList, ConnectView, Listing, LimitUse, MarketBot, MarketList, PlanList, RedirectView, Subscription, SubscriptionList, UsageReport } from '../api.gen';
import { CATEGORIES, categoryLabel } from '../bots/labels';
import { t } from '../i18n';
import { canWrite } from '../roles';
import { api, type Me } from '../session';
import { Confirm } from '../ui/dialog';
import { Field, describe, useForm } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';

const SECTIONS = [
  { path: '', word: 'plan' },
  { path: 'marketplace', word: 'marketplace' },
  { path: 'selling', word: 'selling' },
] as const;
const fmt = (n: number) => new Intl.NumberFormat().format(n);
const day = (ms: number | null | undefined) => (ms ? new Date(ms).toLocaleDateString() : '');
const money = (amount: number, currency: string) =>
  new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
/** Stripe's pages are on another site: the browser goes there, and comes back to #billing. */
const leave = (url: string) => window.location.assign(url);

export function Billing({ me, section }: { me: Me; section: string }) {
  return (
    <main class="page" aria-labelledby="billing-title">
      <h1 id="billing-title">{t('billing')}</h1>
      <nav class="tabs" aria-label={t('billingSections')}>
        {SECTIONS.map((s) => (
          <a id={`bill-tab-${s.path || 'plan'}`} href={`#billing${s.path ? `/${s.path}` : ''}`} aria-current={section === s.path ? 'page' : undefined}>{t(s.word)}</a>
        ))}
      </nav>
      {section === '' && <Plan me={me} />}
      {section === 'marketplace' && <Marketplace me={me} />}
      {section === 'selling' && <Selling me={me} />}
    </main>
  );
}

const limitLabel = (l: LimitUse['limit']) => ({
  bots: t('limitBots'), seats: t('limitSeats'), conversations_per_month: t('limitConversations'),
  llm_tokens_per_month: t('limitTokens'), documents: t('limitDocuments'), storage_mb: t('limitStorage'), channels: t('limitChannels'),
})[l];
const statusLabel = (s: Subscription['status']) => ({
  trialing: t('subTrialing'), active: t('subActive'), past_due: t('subPastDue'), unpaid: t('subUnpaid'),
  paused: t('subPaused'), canceled: t('subCanceled'), incomplete: t('subIncomplete'), incomplete_expired: t('subIncompleteExpired'),
})[s];
const perLabel = (interval: string) => (interval === 'year' ? t('perYear') : t('perMonth'));

function Plan({ me }: { me: Me }) {
  const admin = canWrite(me.role);
  const usage = useResource(() => api<UsageReport>('GET', '/api/billing/usage'), []);
  const plans = useResource(() => api<PlanList>('GET', '/api/billing/plans'), []);
  const subs = useResource(() => api<SubscriptionList>('GET', '/api/subscriptions'), []);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const [cancelling, setCancelling] = useState<Subscription | null>(null);
  const go = async (what: string, work: () => Promise<RedirectView>) => {
    setError(''); setBusy(what);
    try { leave((await work()).url); } catch (e) { setError(describe(e)); setBusy(''); }
  };
  const back = new URLSearchParams(location.hash.split('?')[1] ?? '').get('checkout');
  return (
    <>
      {back === 'success' && <p class="ok" role="status" id="checkout-back">{t('checkoutBack')}</p>}
      {error && <p class="form-error" role="alert" id="billing-error">{error}</p>}
      <section class="panel" aria-labelledby="plan-title">
        <ResourceView res={usage} id="usage">
          {(u) => (
            <>
              <h2 id="plan-title">{t('planNow', { plan: u.plan.name })}</h2>
              {u.subscription && (
                <p id="plan-subscription" class="muted" data-status={u.subscription.status}>
                  <span class="badge">{statusLabel(u.subscription.status)}</span>{' '}
                  {u.subscription.cancel_at_period_end
                    ? t('endsOn', { date: day(u.subscription.current_period_end) })
                    : u.subscription.current_period_end ? t('renewsOn', { date: day(u.subscription.current_period_end) }) : ''}
                </p>
              )}
              {!u.enforced && <p class="hint" id="not-enforced">{t('limitsNotEnforced')}</p>}
              <table class="usage" id="usage-table">
                <caption class="sr-only">{t('usageThisMonth', { month: u.month })}</caption>
                <thead><tr><th scope="col">{t('limit')}</th><th scope="col">{t('used')}</th><th scope="col" class="sr-only">{t('share')}</th></tr></thead>
                <tbody>
                  {u.usage.map((row) => {
                    const share = row.allowed ? Math.min(1, row.used / Math.max(1, row.allowed)) : 0;
                    return (
                      <tr data-limit={row.limit} data-full={row.allowed != null && row.used >= row.allowed ? 'true' : undefined}>
                        <th scope="row">{limitLabel(row.limit)}</th>
                        <td>{row.allowed == null ? t('usedOfUnlimited', { used: fmt(row.used) }) : t('usedOf', { used: fmt(row.used), allowed: fmt(row.allowed) })}</td>
                        <td class="bar">{row.allowed != null && <meter min={0} max={1} value={share} high={0.8} optimum={0} aria-label={limitLabel(row.limit)} />}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
              {admin && u.subscription && (
                <p class="actions">
                  <button type="button" class="secondary" id="open-portal" disabled={busy !== ''} onClick={() => void go('portal', () => api<RedirectView>('POST', '/api/billing/portal'))}>{t('managePayment')}</button>
                </p>
              )}
            </>
          )}
        </ResourceView>
      </section>
      <section class="panel" aria-labelledby="plans-title">
        <h2 id="plans-title">{t('plans')}</h2>
        <ResourceView res={plans} id="plans">
          {(p) => (
            <>
              {!p.checkout_available && <p class="hint" id="no-checkout">{t('noCheckout')}</p>}
              <ul class="offers">
                {p.data.map((plan) => {
                  const current = usage.data?.plan.id === plan.id;
                  return (
                    <li class="card plan" data-plan={plan.id} aria-current={current ? 'true' : undefined}>
                      <h3>{plan.name}</h3>
                      <p class="price">{plan.price_label || '—'}</p>
                      <ul class="limits">
                        {Object.entries(plan.limits).map(([k, v]) => <li>{limitLabel(k as LimitUse['limit'])}: {fmt(v as number)}</li>)}
                      </ul>
                      {plan.trial_days > 0 && !current && <p class="muted">{t('trialDays', { days: plan.trial_days })}</p>}
                      {current ? <span class="badge">{t('currentPlan')}</span>
                        : admin && plan.price && p.checkout_available && (
                          <button type="button" class="choose-plan" disabled={busy !== ''} onClick={() => void go(plan.id, () => api<RedirectView>('POST', '/api/billing/checkout', { plan: plan.id }))}>
                            {busy === plan.id ? t('opening') : t('choosePlan', { plan: plan.name })}
                          </button>
                        )}
                    </li>
                  );
                })}
              </ul>
            </>
          )}
        </ResourceView>
      </section>
      <section class="panel" aria-labelledby="subs-title">
        <h2 id="subs-title">{t('subscriptions')}</h2>
        <ResourceView res={subs} id="subscription-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noSubscriptions')}</p>}>
          {(d) => (
            <ul class="picklist">
              {d.data.map((s) => (
                <li data-subscription-id={s.id} data-status={s.status}>
                  <span>
                    <strong>{s.kind === 'workspace' ? t('planSubscription', { plan: s.plan }) : t('botSubscription')}</strong>{' '}
                    <span class="badge">{statusLabel(s.status)}</span>{' '}
                    <span class="muted">{s.cancel_at_period_end ? t('endsOn', { date: day(s.current_period_end) }) : day(s.current_period_end)}</span>
                    {s.kind === 'bot' && s.installed && <> · <a href={`#bots/${s.installed}`}>{t('openBot')}</a></>}
                  </span>
                  {admin && !s.cancel_at_period_end && !['canceled', 'incomplete_expired'].includes(s.status) && (
                    <button type="button" class="link danger-text cancel-sub" onClick={() => setCancelling(s)}>{t('cancelSubscription')}</button>
                  )}
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      {cancelling && (
        <Confirm id="cancel-dialog" title={t('cancelTitle')} confirm={t('cancelSubscription')} danger busy={busy === 'cancel'} error={error}
          onClose={() => { setCancelling(null); setError(''); }}
          onConfirm={() => void (async () => {
            setBusy('cancel'); setError('');
            try { await api('POST', `/api/subscriptions/${cancelling.id}/cancel`, {}); setCancelling(null); void subs.reload(); }
            catch (e) { setError(describe(e)); }
            setBusy('');
          })()}>
          <p>{t('cancelBody')}</p>
        </Confirm>
      )}
    </>
  );
}


function Marketplace({ me }: { me: Me }) {
  const admin = canWrite(me.role);
  const [query, setQuery] = useState({ q: '', category: '', sort: 'rating' });
  const list = useResource(() => {
    const p = new URLSearchParams();
    if (query.q) p.set('q', query.q);
    if (query.category) p.set('category', query.category);
    p.set('sort', query.sort);
    return api<MarketList>('GET', `/api/marketplace/bots?${p}`);
  }, [query.q, query.category, query.sort]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const subscribe = async (bot: MarketBot, price: string) => {
    setError(''); setBusy(price);
    try { leave((await api<RedirectView>('POST', '/api/marketplace/subscribe', { bot_id: bot.bot_id, price_id: price })).url); }
    catch (e) { setError(describe(e)); setBusy(''); }
  };
  return (
    <>
      <form id="market-search" class="row panel" role="search" onSubmit={(e) => {
        e.preventDefault();
        const data = new FormData(e.currentTarget as HTMLFormElement);
        setQuery({ q: String(data.get('q') ?? '').trim(), category: String(data.get('category') ?? ''), sort: String(data.get('sort') ?? 'rating') });
      }}>
        <label class="grow">{t('search')}<input name="q" type="search" defaultValue={query.q} /></label>
        <label>{t('category')}
          <select name="category">
            <option value="">{t('anyCategory')}</option>
            {CATEGORIES.map((c) => <option value={c}>{categoryLabel(c)}</option>)}
          </select>
        </label>
        <label>{t('sortBy')}
          <select name="sort">
            <option value="rating">{t('sortRating')}</option>
            <option value="installs">{t('sortInstalls')}</option>
            <option value="newest">{t('sortNewest')}</option>
          </select>
        </label>
        <button type="submit" id="market-go">{t('searchButton')}</button>
      </form>
      {error && <p class="form-error" role="alert" id="market-error">{error}</p>}
      <ResourceView res={list} id="market-list" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noMarketBots')}</p>}>
        {(d) => (
          <ul class="offers">
            {d.data.map((b) => (
              <li class="card" data-bot-id={b.bot_id}>
                <h2>{b.title}</h2>
                <p class="muted">{categoryLabel(b.category)} · {b.language.toUpperCase()} · {b.rating != null ? t('rated', { rating: b.rating.toFixed(1), n: b.ratings }) : t('notRated')} · {t('installs', { n: fmt(b.installs) })}</p>
                <p>{b.description}</p>
                {b.screenshots.length > 0 && <p class="shots">{b.screenshots.slice(0, 3).map((s) => <img src={s} alt="" loading="lazy" referrerpolicy="no-referrer" />)}</p>}
                {b.trial_days > 0 && <p class="muted">{t('trialDays', { days: b.trial_days })}</p>}
                <p class="actions">
                  {b.demo && <a class="button secondary" href={`/?bot=${encodeURIComponent(b.bot_id)}`} target="_blank" rel="noopener">{t('tryDemo')}</a>}
                  {admin && b.tenant_id !== me.tenant_id && b.prices.map((p) => (
                    <button type="button" class="subscribe" disabled={busy !== ''} onClick={() => void subscribe(b, p.id)}>
                      {t('subscribeFor', { price: money(p.amount, p.currency), interval: perLabel(p.interval) })}
                    </button>
                  ))}
                  {b.tenant_id === me.tenant_id && <span class="badge">{t('yourBot')}</span>}
                </p>
              </li>
            ))}
          </ul>
        )}
      </ResourceView>
    </>
  );
}

function Selling({ me }: { me: Me }) {
  const admin = canWrite(me.role);
  const connect = useResource(() => api<ConnectView>('GET', '/api/marketplace/connect'), []);
  const bots = useResource(() => api<BotList>('GET', '/api/bots'), []);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const onboard = async () => {
    setError(''); setBusy(true);
    try { leave((await api<RedirectView>('POST', '/api/marketplace/connect')).url); } catch (e) { setError(describe(e)); setBusy(false); }
  };
  return (
    <>
      <section class="panel" aria-labelledby="payouts-title">
        <h2 id="payouts-title">{t('payouts')}</h2>
        <ResourceView res={connect} id="payouts">
          {(c) => (
            <>
              <p id="payouts-state" data-ready={c.account?.charges_enabled ? 'true' : 'false'}>
                {c.account?.charges_enabled ? t('payoutsReady') : c.account ? t('payoutsPending') : t('payoutsNone')}
              </p>
              {admin && !c.account?.charges_enabled && <button type="button" id="start-payouts" disabled={busy} onClick={() => void onboard()}>{c.account ? t('continuePayouts') : t('setUpPayouts')}</button>}
              {error && <p class="form-error" role="alert">{error}</p>}
            </>
          )}
        </ResourceView>
      </section>
      <ResourceView res={bots} id="selling-bots" isEmpty={(d) => d.data.filter((b) => !b.installed_from).length === 0} empty={<p>{t('noBotsToSell')}</p>}>
        {(d) => <>{d.data.filter((b) => !b.installed_from).map((b) => <ListingForm key={b.id} botId={b.id} botName={b.name} admin={admin} />)}</>}
      </ResourceView>
    </>
  );
}

function ListingForm({ botId, botName, admin }: { botId: string; botName: string; admin: boolean }) {
  const held = useResource(() => api<Listing>('GET', `/api/bots/${botId}/listing`).catch((e) => {
    if (e?.status === 404) return null;
    throw e;
  }), [botId]);
  const form = useForm(['public', 'description', 'prices', 'trial_days']);
  const [saved, setSaved] = useState(false);
  const submit = form.submit(async () => {
    setSaved(false);
    const data = new FormData(form.ref.current!);
    const amount = Math.round(Number(String(data.get('amount') ?? '').replace(',', '.')) * 100);
    const body = {
      public: data.get('public') === 'on',
      description: String(data.get('description') ?? '').trim(),
      prices: amount > 0 ? [{ amount, currency: String(data.get('currency')), interval: String(data.get('interval')) }] : [],
      trial_days: Number(data.get('trial_days') || 0),
    };
    held.set(await api<Listing>('PUT', `/api/bots/${botId}/listing`, body));
    setSaved(true);
  });
  const id = `listing-${botId}`;
  return (
    <section class="panel" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{botName}</h2>
      {held.state === 'loading' && held.data === null ? <p class="muted" role="status">{t('loading')}</p> : (
        <form id={id} class="listing-form" ref={form.ref} onSubmit={submit} onInput={() => setSaved(false)} noValidate>
          <fieldset disabled={!admin}>
            <label class="check"><input name="public" type="checkbox" defaultChecked={held.data?.public ?? false} /> {t('listPublicly')}</label>
            <Field form={form} name="description" label={t('listingDescription')}>
              {(p) => <textarea {...p} rows={3} maxLength={4000} defaultValue={held.data?.description ?? ''} />}
            </Field>
            <fieldset class="row" aria-describedby={`${id}-price-hint`}>
              <legend>{t('price')}</legend>
              <label>{t('amount')}<input name="amount" inputMode="decimal" defaultValue={held.data?.prices[0] ? String(held.data.prices[0].amount / 100) : ''} /></label>
              <label>{t('currency')}<select name="currency">{['eur', 'usd', 'gbp', 'chf'].map((c) => <option value={c} selected={held.data?.prices[0]?.currency === c}>{c.toUpperCase()}</option>)}</select></label>
              <label>{t('interval')}<select name="interval"><option value="month">{t('perMonth')}</option><option value="year" selected={held.data?.prices[0]?.interval === 'year'}>{t('perYear')}</option></select></label>
            </fieldset>
            <p class="hint" id={`${id}-price-hint`}>{t('priceHint')}</p>
            <p class="form-error" role="alert">{form.errors.prices}</p>
            <Field form={form} name="trial_days" label={t('trialDaysLabel')}>
              {(p) => <input {...p} type="number" min={0} max={90} defaultValue={String(held.data?.trial_days ?? 0)} />}
            </Field>
          </fieldset>
          <p class="form-error" role="alert">{form.general}</p>
          {admin && (
            <p class="actions">
              <button type="submit" class="save-listing" disabled={form.busy}>{t('saveListing')}</button>
              <span role="status" class="ok">{saved ? t('saved_') : ''}</span>
            </p>
          )}
        </form>
      )}
    </section>
  );
}
