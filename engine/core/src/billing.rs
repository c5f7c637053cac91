//! Billing: which plan a workspace is on, what it has used, refusals past its limits, the
//! checkout and portal, and the payment provider's events applied from the store's queue.
//!
//! - **Limits** are checked where the work happens: the admin API asks [`Billing::ensure_room`]
//!   before creating a bot, inviting, connecting a channel or storing a document; a new
//!   conversation is counted with [`Billing::admit_conversation`] (atomically within the
//!   limit, however many race for the last one); the reply path asks
//!   [`Billing::llm_budget`]. With `[billing] enforce = false` usage is counted and nothing is
//!   refused.
//! - **The plan in force** comes from the workspace's subscriptions (see
//!   [`parla_domain::billing::Plans::in_force`]), cached per tenant for a few seconds: the chat
//!   path reads no subscription per message, and a change reaches every node within
//!   [`PLAN_TTL`].
//! - **Events** are verified and stored by the webhook before it answers, then applied here,
//!   oldest first, by one task per node woken by each arrival (and every few seconds, so a
//!   restart or a failed attempt resumes). Applying is idempotent and order-independent: a
//!   subscription is written only from an event not older than the one it was written from,
//!   and an invoice or checkout event re-reads its subscription from the provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parla_domain::billing::{
    CheckoutRequest, EventObject, Limit, PaymentError, Payments, Plan, Plans, ProviderEvent,
    ProviderSubscription, StoredEvent, Subscription, SubscriptionKind, SubscriptionStatus,
};
use parla_domain::model::{Account, Tenant, TenantId, month_of, now_ms};
use parla_domain::store::{Store, StoreError};
use serde::Serialize;

use crate::EngineError;

/// How long a tenant's plan is trusted from cache: a plan change reaches every node within it.
pub const PLAN_TTL: Duration = Duration::from_secs(3);

/// The usage meter of conversations started.
pub const CONVERSATIONS: &str = "conversations";

/// Events applied per round of the queue.
const BATCH: usize = 64;

/// A periodic round of billing work.
#[derive(Debug, Clone, Copy)]
enum Round {
    /// Live subscriptions re-read from the provider.
    Reconcile,
    /// Metered usage reported.
    Meters,
}

/// What billing needs from configuration.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub plans: Plans,
    pub enforce: bool,
    /// The platform's share of a marketplace sale, in percent.
    pub platform_fee_percent: f64,
}

/// Why a billing operation failed, as the admin API tells it.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("no plan {0:?}")]
    UnknownPlan(String),
    #[error("the plan {0:?} is not sold")]
    NotForSale(String),
    #[error("this workspace has no billing account yet: subscribe to a plan first")]
    NoCustomer,
    #[error(transparent)]
    Payments(#[from] PaymentError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for BillingError {
    fn from(e: StoreError) -> Self {
        Self::Engine(e.into())
    }
}

/// One limit's use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LimitUse {
    pub limit: Limit,
    pub used: u64,
    /// The plan's ceiling; absent when unlimited.
    pub allowed: Option<u64>,
}

/// What `GET /api/billing/usage` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The calendar month (UTC) the monthly limits count, `YYYY-MM`.
    pub month: String,
    pub plan: Plan,
    /// Whether limits refuse work on this server (`[billing] enforce`).
    pub enforced: bool,
    pub usage: Vec<LimitUse>,
    /// The workspace's plan subscription, if it has one (any status).
    pub subscription: Option<Subscription>,
}

/// Billing, shared by the engine and the admin API.
pub struct Billing {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: BillingConfig,
    payments: Option<Arc<dyn Payments>>,
    plans: parking_lot::Mutex<HashMap<TenantId, (Instant, Plan)>>,
    /// Installed bots' subscriptions in force, by (buyer, subscription), cached.
    pub(crate) entitlements: parking_lot::Mutex<HashMap<(TenantId, String), (Instant, bool)>>,
    /// Listings' ratings (mean CSAT, count), cached.
    #[allow(clippy::type_complexity)]
    pub(crate) ratings:
        parking_lot::Mutex<HashMap<parla_domain::model::BotId, (Instant, (Option<f32>, u64))>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Billing {
    /// Billing that counts and refuses nothing, without a payment provider (tests, tools).
    pub fn unlimited(store: Arc<dyn Store>) -> Arc<Self> {
        let config =
            BillingConfig { plans: Plans::unlimited(), enforce: false, platform_fee_percent: 0.0 };
        Self::new(store, config, None)
    }

    pub fn new(
        store: Arc<dyn Store>,
        config: BillingConfig,
        payments: Option<Arc<dyn Payments>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            payments,
            plans: parking_lot::Mutex::new(HashMap::new()),
            entitlements: parking_lot::Mutex::new(HashMap::new()),
            ratings: parking_lot::Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn plans(&self) -> &Plans {
        &self.config.plans
    }

    pub fn enforced(&self) -> bool {
        self.config.enforce
    }

    /// The payment provider, when one is configured.
    pub fn payments(&self) -> Result<&Arc<dyn Payments>, PaymentError> {
        self.payments.as_ref().ok_or(PaymentError::NotConfigured)
    }

    /// The plan in force for `tenant` now (cached for [`PLAN_TTL`]).
    pub async fn plan_of(&self, tenant: &TenantId) -> Result<Plan, EngineError> {
        if let Some((at, plan)) = self.plans.lock().get(tenant)
            && at.elapsed() < PLAN_TTL
        {
            return Ok(plan.clone());
        }
        let subscriptions = self.store.list_subscriptions(tenant).await?;
        let plan = self.config.plans.in_force(&subscriptions, now_ms()).clone();
        self.plans.lock().insert(tenant.clone(), (Instant::now(), plan.clone()));
        Ok(plan)
    }

    /// How much of `limit` the tenant uses now (this month, for the monthly ones).
    pub async fn used(&self, tenant: &TenantId, limit: Limit) -> Result<u64, EngineError> {
        let store = &self.store;
        let month = month_of(now_ms());
        Ok(match limit {
            Limit::Bots => store.list_bots(tenant).await?.len() as u64,
            Limit::Seats => {
                let now = now_ms();
                let members = store.list_accounts(tenant).await?.len();
                let invited = store.list_invitations(tenant).await?;
                (members + invited.iter().filter(|i| i.expires_at > now).count()) as u64
            }
            Limit::ConversationsPerMonth | Limit::LlmTokensPerMonth => {
                self.used_in(tenant, limit, &month).await?
            }
            Limit::Documents => self.documents(tenant).await?.0,
            Limit::StorageMb => self.documents(tenant).await?.1.div_ceil(1 << 20),
            Limit::Channels => {
                let mut count = 0u64;
                for bot in store.list_bots(tenant).await? {
                    count += store.list_channels(tenant, &bot.id).await?.len() as u64;
                }
                count
            }
        })
    }

    /// How much of a monthly limit the tenant used in `month` (`YYYY-MM`); 0 for the others.
    pub(crate) async fn used_in(
        &self,
        tenant: &TenantId,
        limit: Limit,
        month: &str,
    ) -> Result<u64, EngineError> {
        Ok(match limit {
            Limit::ConversationsPerMonth => {
                let usage = self.store.usage(tenant, month).await?;
                usage.into_iter().find(|(m, _)| m == CONVERSATIONS).map_or(0, |(_, n)| n)
            }
            Limit::LlmTokensPerMonth => self.store.token_usage(tenant, month).await?,
            _ => 0,
        })
    }

    /// The tenant's knowledge-base documents and their bytes, across its bots.
    async fn documents(&self, tenant: &TenantId) -> Result<(u64, u64), EngineError> {
        let (mut count, mut bytes) = (0u64, 0u64);
        for bot in self.store.list_bots(tenant).await? {
            for doc in self.store.list_documents(tenant, &bot.id).await? {
                count += 1;
                bytes = bytes.saturating_add(doc.size_bytes);
            }
        }
        Ok((count, bytes))
    }

    /// Refuses with `plan_limit_reached` when adding `adding` of `limit` would pass the plan's
    /// ceiling (only when limits are enforced). Storage is `adding` bytes.
    pub async fn ensure_room(
        &self,
        tenant: &TenantId,
        limit: Limit,
        adding: u64,
    ) -> Result<(), EngineError> {
        if !self.config.enforce {
            return Ok(());
        }
        let Some(allowed) = self.plan_of(tenant).await?.limit(limit) else { return Ok(()) };
        let fits = match limit {
            // In bytes: the upload's own size against the plan's MiB.
            Limit::StorageMb => {
                let bytes = self.documents(tenant).await?.1;
                bytes.saturating_add(adding) <= allowed.saturating_mul(1 << 20)
            }
            _ => self.used(tenant, limit).await?.saturating_add(adding) <= allowed,
        };
        if fits { Ok(()) } else { Err(EngineError::PlanLimitReached(limit)) }
    }

    /// Counts a conversation about to start against this month's limit: refused with
    /// `plan_limit_reached` when the month's conversations are used up (enforced), counted
    /// atomically otherwise. Returns the month counted in, for [`Billing::unadmit`].
    pub async fn admit_conversation(&self, tenant: &TenantId) -> Result<String, EngineError> {
        let month = month_of(now_ms());
        let limit = if self.config.enforce {
            self.plan_of(tenant).await?.limit(Limit::ConversationsPerMonth)
        } else {
            None
        };
        match self.store.count_within(tenant, &month, CONVERSATIONS, 1, limit).await? {
            Some(_) => Ok(month),
            None => Err(EngineError::PlanLimitReached(Limit::ConversationsPerMonth)),
        }
    }

    /// Takes back a count of [`Billing::admit_conversation`] whose conversation was not
    /// started (it existed already: a retry, or a race another start won).
    pub async fn unadmit(&self, tenant: &TenantId, month: &str) {
        if let Err(e) = self.store.uncount(tenant, month, CONVERSATIONS, 1).await {
            tracing::warn!(error = %e, "could not take back a conversation count");
        }
    }

    /// The LLM tokens the tenant may use this month: the least of its own budget and (when
    /// enforced) its plan's; `None` when unlimited.
    pub async fn llm_budget(&self, tenant: &Tenant) -> Option<u64> {
        let plan = if self.config.enforce {
            match self.plan_of(&tenant.id).await {
                Ok(plan) => plan.limit(Limit::LlmTokensPerMonth),
                // Without the plan, the smallest: a store hiccup never opens the LLM up.
                Err(_) => self.config.plans.default_plan().limit(Limit::LlmTokensPerMonth),
            }
        } else {
            None
        };
        match (plan, tenant.monthly_token_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every limit's use this month, with the plan and its subscription.
    pub async fn usage(&self, tenant: &TenantId) -> Result<UsageReport, EngineError> {
        let plan = self.plan_of(tenant).await?;
        let mut usage = Vec::new();
        for limit in Limit::ALL {
            usage.push(LimitUse {
                limit,
                used: self.used(tenant, limit).await?,
                allowed: plan.limit(limit),
            });
        }
        let subscriptions = self.store.list_subscriptions(tenant).await?;
        let subscription = subscriptions
            .into_iter()
            .filter(|s| matches!(s.kind, SubscriptionKind::Workspace { .. }))
            .max_by_key(|s| (s.in_force(now_ms(), self.config.plans.grace_ms), s.updated_at));
        Ok(UsageReport {
            month: month_of(now_ms()),
            plan,
            enforced: self.config.enforce,
            usage,
            subscription,
        })
    }

    /// The workspace's customer at the provider, created on first need (of racing first
    /// calls, one customer: the same idempotency key, and the store keeps the first).
    pub async fn customer_of(&self, buyer: &Account) -> Result<String, BillingError> {
        let tenant = &buyer.tenant_id;
        if let Some(customer) = self.store.customer(tenant).await? {
            return Ok(customer);
        }
        let key = format!("parla-customer-{tenant}");
        let payments = self.payments()?;
        let created = payments.create_customer(tenant, &buyer.email, &buyer.name, &key).await?;
        Ok(self.store.set_customer_once(tenant, &created).await?)
    }

    /// Opens a checkout for the workspace's plan `plan`; returns the page's URL. The plan
    /// changes when the provider's events say the subscription started, never on the redirect.
    pub async fn checkout_plan(
        &self,
        buyer: &Account,
        plan: &str,
        return_url: &str,
    ) -> Result<String, BillingError> {
        let found =
            self.config.plans.get(plan).ok_or_else(|| BillingError::UnknownPlan(plan.into()))?;
        let price = found.price.clone().ok_or_else(|| BillingError::NotForSale(plan.into()))?;
        let customer = self.customer_of(buyer).await?;
        let tenant = buyer.tenant_id.clone();
        let metadata = BTreeMap::from([
            ("tenant_id".to_owned(), tenant.to_string()),
            ("kind".to_owned(), "workspace".to_owned()),
            ("plan".to_owned(), found.id.clone()),
        ]);
        let request = CheckoutRequest {
            customer,
            price,
            trial_days: found.trial_days,
            tenant,
            metadata,
            success_url: format!("{return_url}?checkout=success"),
            cancel_url: format!("{return_url}?checkout=canceled"),
            transfer: None,
            idempotency_key: format!("parla-checkout-{}", uuid::Uuid::new_v4()),
        };
        Ok(self.payments()?.checkout(&request).await?)
    }

    /// Opens the provider's portal for the workspace (invoices, card, cancel); returns its URL.
    pub async fn portal(
        &self,
        tenant: &TenantId,
        return_url: &str,
    ) -> Result<String, BillingError> {
        let customer = self.store.customer(tenant).await?.ok_or(BillingError::NoCustomer)?;
        Ok(self.payments()?.portal(&customer, return_url).await?)
    }

    /// Stores a verified event for processing and wakes the processor: whether it is new (a
    /// redelivery is acknowledged and not applied twice).
    pub async fn receive(&self, event: &ProviderEvent, payload: &str) -> Result<bool, StoreError> {
        let stored = StoredEvent {
            id: event.id.clone(),
            kind: event.kind.clone(),
            created: event.created,
            received_at: now_ms(),
            payload: payload.to_owned(),
        };
        let new = self.store.record_event(&stored).await?;
        self.wake.notify_one();
        Ok(new)
    }

    /// Applies the events waiting in the store, oldest first: how many were applied. One that
    /// fails for a passing reason (the provider unreachable) stays queued for the next round;
    /// one that cannot be read is dropped with a warning.
    pub async fn process_pending(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        for stored in self.store.pending_events(BATCH).await? {
            let Ok(payments) = self.payments() else { break };
            let outcome = match payments.read_event(&stored.payload) {
                Ok(event) => self.apply(&event).await,
                Err(e) => {
                    tracing::warn!(event = %stored.id, error = %e, "dropping an unreadable event");
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => {
                    self.store.finish_event(&stored.id).await?;
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!(event = %stored.id, kind = %stored.kind, error = %e, "event not applied yet; will retry");
                }
            }
        }
        Ok(applied)
    }

    /// Runs [`Billing::process_pending`] on every arrival and every `every` (a restart's
    /// backlog, retries), until the runtime stops.
    pub fn spawn_processor(self: &Arc<Self>, every: Duration) {
        let billing = self.clone();
        tokio::spawn(async move {
            loop {
                // Round after round while whole batches come (a backlog), then wait.
                loop {
                    match billing.process_pending().await {
                        Ok(n) if n >= BATCH => continue,
                        Ok(n) if n > 0 => tracing::debug!(events = n, "billing events applied"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "billing events: the store failed"),
                    }
                    break;
                }
                let _ = tokio::time::timeout(every, billing.wake.notified()).await;
            }
        });
    }

    /// Re-reads every live subscription from the provider and applies it as of now: an event
    /// Parla missed (a webhook endpoint down longer than Stripe retries) is repaired. Returns
    /// how many were read.
    pub async fn reconcile(&self) -> Result<usize, BillingError> {
        let payments = self.payments()?.clone();
        let mut read = 0;
        for held in self.store.live_subscriptions().await? {
            match payments.subscription(&held.id).await {
                Ok(now) => {
                    read += 1;
                    self.apply_subscription_of(&now, now_ms() / 1000, Some(&held)).await?;
                }
                Err(e) => {
                    tracing::warn!(subscription = %held.id, error = %e, "reconciliation could not read it")
                }
            }
        }
        Ok(read)
    }

    /// Runs [`Billing::reconcile`] every `every`, until the runtime stops.
    pub fn spawn_reconciliation(self: &Arc<Self>, every: Duration) {
        self.spawn_rounds(every, Round::Reconcile);
    }

    /// Runs [`Billing::report_usage`] every `every`, until the runtime stops.
    pub fn spawn_metering(self: &Arc<Self>, every: Duration) {
        self.spawn_rounds(every, Round::Meters);
    }

    fn spawn_rounds(self: &Arc<Self>, every: Duration, round: Round) {
        let billing = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let done = match round {
                    Round::Reconcile => billing.reconcile().await,
                    Round::Meters => billing.report_usage().await,
                };
                match done {
                    Ok(n) => tracing::debug!(?round, n, "billing round done"),
                    Err(e) => tracing::warn!(?round, error = %e, "billing round failed"),
                }
            }
        });
    }

    /// What one event means for Parla.
    async fn apply(&self, event: &ProviderEvent) -> Result<(), BillingError> {
        match &event.what {
            EventObject::Subscription(sub) => self.apply_subscription(sub, event.created).await,
            EventObject::Invoice { subscription: Some(id), .. }
            | EventObject::Checkout { subscription: Some(id), .. } => {
                if let EventObject::Checkout {
                    reference: Some(tenant), customer: Some(c), ..
                } = &event.what
                {
                    self.store.set_customer_once(&TenantId::from(tenant.as_str()), c).await?;
                }
                // Re-read: the subscription as it is now is newer than any event about it.
                let now = self.payments()?.subscription(id).await?;
                self.apply_subscription(&now, now_ms() / 1000).await
            }
            EventObject::Checkout { reference: Some(tenant), customer: Some(c), .. } => {
                self.store.set_customer_once(&TenantId::from(tenant.as_str()), c).await?;
                Ok(())
            }
            EventObject::Account {
                id,
                tenant,
                charges_enabled,
                payouts_enabled,
                details_submitted,
            } => {
                let flags = (*charges_enabled, *payouts_enabled, *details_submitted);
                self.apply_account(tenant.as_deref(), id, flags).await
            }
            _ => Ok(()),
        }
    }

    /// Writes a subscription as of `created` (Unix seconds), unless a newer event wrote it.
    async fn apply_subscription(
        &self,
        sub: &ProviderSubscription,
        created: i64,
    ) -> Result<(), BillingError> {
        self.apply_subscription_of(sub, created, None).await
    }

    /// As [`Billing::apply_subscription`], with what Parla holds of it (reconciliation): its
    /// tenant and kind stand where the provider's copy lacks Parla's marks.
    async fn apply_subscription_of(
        &self,
        sub: &ProviderSubscription,
        created: i64,
        known: Option<&Subscription>,
    ) -> Result<(), BillingError> {
        let marked = sub.metadata.get("tenant_id").map(|t| TenantId::from(t.as_str()));
        let Some(tenant) = marked.or_else(|| known.map(|k| k.tenant_id.clone())) else {
            tracing::warn!(subscription = %sub.id, "a subscription without Parla's tenant mark; ignored");
            return Ok(());
        };
        let held = self.store.get_subscription(&tenant, &sub.id).await?;
        let kind = match (sub.metadata.get("kind").map(String::as_str), &held) {
            (Some("bot"), _) => SubscriptionKind::Bot {
                listing: sub.metadata.get("listing").map_or("", String::as_str).into(),
                installed: held.as_ref().and_then(|h| match &h.kind {
                    SubscriptionKind::Bot { installed, .. } => installed.clone(),
                    SubscriptionKind::Workspace { .. } => None,
                }),
            },
            // Without Parla's marks (a copy re-read from the provider), what Parla holds.
            (None, Some(h)) if matches!(h.kind, SubscriptionKind::Bot { .. }) => h.kind.clone(),
            _ => {
                let plans = &self.config.plans;
                let plan =
                    sub.price.as_deref().and_then(|p| plans.by_price(p)).map(|p| p.id.clone());
                let held_plan = held.as_ref().and_then(|h| match &h.kind {
                    SubscriptionKind::Workspace { plan } => Some(plan.clone()),
                    SubscriptionKind::Bot { .. } => None,
                });
                let plan = plan.or_else(|| sub.metadata.get("plan").cloned()).or(held_plan);
                SubscriptionKind::Workspace { plan: plan.unwrap_or_default() }
            }
        };
        let at = created.saturating_mul(1000);
        let past_due_since = match (sub.status, &held) {
            (SubscriptionStatus::PastDue, Some(h)) if h.status == SubscriptionStatus::PastDue => {
                h.past_due_since.or(Some(at))
            }
            (SubscriptionStatus::PastDue, _) => Some(at),
            // Unpaid or paused keep when the trouble began; paid clears it.
            (SubscriptionStatus::Unpaid | SubscriptionStatus::Paused, Some(h)) => h.past_due_since,
            _ => None,
        };
        let record = Subscription {
            id: sub.id.clone(),
            tenant_id: tenant.clone(),
            kind,
            status: sub.status,
            customer: sub.customer.clone(),
            current_period_start: sub.current_period_start,
            current_period_end: sub.current_period_end,
            trial_end: sub.trial_end,
            cancel_at_period_end: sub.cancel_at_period_end,
            canceled_at: sub.canceled_at,
            past_due_since,
            event_created: created,
            updated_at: now_ms(),
        };
        // A marketplace bot is installed once its subscription is in force; a plan billed by
        // use starts counting from now.
        let record = self.install(record).await?;
        let grace = self.config.plans.grace_ms;
        if record.in_force(now_ms(), grace)
            && !held.as_ref().is_some_and(|h| h.in_force(now_ms(), grace))
        {
            self.start_metering(&record).await?;
        }
        match self.store.put_subscription_if_newer(&record).await {
            Ok(written) => {
                if written {
                    self.plans.lock().remove(&tenant);
                    self.entitlements.lock().remove(&(tenant.clone(), record.id.clone()));
                }
                Ok(())
            }
            Err(StoreError::Conflict) => {
                tracing::warn!(subscription = %sub.id, "a subscription id another tenant holds; ignored");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
