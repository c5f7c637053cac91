//! What a workspace pays for: plans and their limits (configuration, not code), subscriptions
//! as the payment provider reports them, which plan is in force, and the payments port.
//!
//! A workspace is on the configured default plan (Free) until a workspace subscription in good
//! standing names another; a subscription stays in force while `trialing` or `active`, and for
//! a grace period after it turned `past_due`. Subscriptions are written only from the provider's
//! signed events (never from a browser's redirect), each applied only if it is not older than
//! what is stored — the provider does not promise order.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{BotId, TenantId};

/// A limit a plan sets. Its wire name is what `plan_limit_reached` errors and the usage
/// endpoint say.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Bots in the workspace.
    Bots,
    /// Members plus pending invitations.
    Seats,
    /// Conversations started in a calendar month (UTC), on every channel.
    ConversationsPerMonth,
    /// LLM tokens (prompt + completion) in a calendar month (UTC).
    LlmTokensPerMonth,
    /// Knowledge-base documents across the workspace's bots.
    Documents,
    /// Knowledge-base bytes across the workspace's bots, in MiB.
    StorageMb,
    /// Channel connections (WhatsApp, SMS, push).
    Channels,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::Bots,
        Limit::Seats,
        Limit::ConversationsPerMonth,
        Limit::LlmTokensPerMonth,
        Limit::Documents,
        Limit::StorageMb,
        Limit::Channels,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Bots => "bots",
            Limit::Seats => "seats",
            Limit::ConversationsPerMonth => "conversations_per_month",
            Limit::LlmTokensPerMonth => "llm_tokens_per_month",
            Limit::Documents => "documents",
            Limit::StorageMb => "storage_mb",
            Limit::Channels => "channels",
        }
    }

    pub fn parse(s: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// A plan's limits by name; a limit not named is unlimited.
pub type PlanLimits = BTreeMap<Limit, u64>;

/// A plan as configured (`[billing.plans.<id>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// The key it is configured under (`free`, `pro`, `business`).
    pub id: String,
    pub name: String,
    /// The provider's recurring price this plan is bought with; `None` for a plan that is not
    /// sold (the free plan).
    pub price: Option<String>,
    /// Days of trial a first checkout gives.
    pub trial_days: u32,
    /// What the price reads as, for people (`€29 / month`).
    pub price_label: String,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub limits: PlanLimits,
    /// Monthly limits also billed by use: the provider's meter (Stripe's `event_name`) each is
    /// reported to. Operators' wiring, not shown to clients.
    #[serde(skip)]
    pub meters: BTreeMap<Limit, String>,
}

impl Plan {
    /// The plan's ceiling for `limit`; `None` when unlimited.
    pub fn limit(&self, limit: Limit) -> Option<u64> {
        self.limits.get(&limit).copied()
    }
}

/// The configured plans and how the workspace's subscriptions map onto them.
#[derive(Debug, Clone)]
pub struct Plans {
    /// In order of configuration (cheapest first, by convention).
    pub plans: Vec<Plan>,
    /// The plan of a workspace without a subscription in good standing.
    pub default_plan: String,
    /// How long a `past_due` subscription stays in force, in milliseconds.
    pub grace_ms: i64,
}

impl Plans {
    /// One plan, `free`, without limits: an engine that bills nothing (tests, tools).
    pub fn unlimited() -> Self {
        let free = Plan {
            id: "free".into(),
            name: "Free".into(),
            price: None,
            trial_days: 0,
            price_label: String::new(),
            limits: PlanLimits::new(),
            meters: BTreeMap::new(),
        };
        Self { plans: vec![free], default_plan: "free".into(), grace_ms: 7 * 86_400_000 }
    }

    pub fn get(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan a provider price buys.
    pub fn by_price(&self, price: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.price.as_deref() == Some(price))
    }

    pub fn default_plan(&self) -> &Plan {
        // Checked when the configuration is loaded.
        self.get(&self.default_plan).unwrap_or(&self.plans[0])
    }

    /// The plan in force for a workspace with these subscriptions at `now`: the one its
    /// workspace subscription in good standing names, else the default plan.
    pub fn in_force<'a>(&'a self, subscriptions: &[Subscription], now: i64) -> &'a Plan {
        subscriptions
            .iter()
            .filter(|s| s.in_force(now, self.grace_ms))
            .filter_map(|s| match &s.kind {
                SubscriptionKind::Workspace { plan } => self.get(plan),
                SubscriptionKind::Bot { .. } => None,
            })
            .max_by_key(|p| self.plans.iter().position(|q| q.id == p.id))
            .unwrap_or_else(|| self.default_plan())
    }
}

/// A subscription's status, Stripe's full set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Paused,
    Canceled,
    Incomplete,
    IncompleteExpired,
}

impl SubscriptionStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            "canceled" => Self::Canceled,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            _ => return None,
        })
    }
}

/// What a subscription is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubscriptionKind {
    /// The workspace's own plan.
    Workspace { plan: String },
    /// A marketplace bot: `listing` is the creator's bot, `installed` the buyer's copy.
    Bot { listing: BotId, installed: Option<BotId> },
}

/// A subscription as Parla keeps it (the specification's Subscription), one per provider
/// subscription id, in the buying workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    /// The provider's id (`sub_…`): unique.
    pub id: String,
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub kind: SubscriptionKind,
    pub status: SubscriptionStatus,
    /// The provider's customer.
    pub customer: String,
    /// The current period, Unix milliseconds (from the subscription's items).
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    /// It ends at the period's end (cancelled, not yet over).
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    /// When it was first seen `past_due` in its current run of unpaid invoices (the grace
    /// period counts from here); cleared when it is paid.
    pub past_due_since: Option<i64>,
    /// The provider's time of the newest event applied (Unix seconds): an older event is not
    /// applied over it.
    pub event_created: i64,
    /// When Parla last wrote it, Unix milliseconds.
    pub updated_at: i64,
}

impl Subscription {
    /// Not over: reconciliation keeps asking the provider about it.
    pub fn is_live(&self) -> bool {
        !matches!(self.status, SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired)
    }

    /// Whether what it pays for is delivered at `now`: trialing or active, or past due within
    /// the grace period.
    pub fn in_force(&self, now: i64, grace_ms: i64) -> bool {
        match self.status {
            SubscriptionStatus::Trialing | SubscriptionStatus::Active => true,
            SubscriptionStatus::PastDue => {
                self.past_due_since.is_none_or(|since| now < since.saturating_add(grace_ms))
            }
            _ => false,
        }
    }
}

/// A subscription as the provider describes it now (from an event or a read), before Parla
/// decides what it means for the workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSubscription {
    pub id: String,
    pub customer: String,
    pub status: SubscriptionStatus,
    /// The recurring price of its first item.
    pub price: Option<String>,
    /// Parla's own marks, set at checkout (`tenant_id`, `kind`, `plan`, `listing`).
    pub metadata: BTreeMap<String, String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
}

/// A provider event, verified and read.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    pub id: String,
    /// The provider's type (`customer.subscription.updated`).
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    pub what: EventObject,
}

/// What an event is about, as far as Parla acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventObject {
    /// The subscription as of the event.
    Subscription(ProviderSubscription),
    /// An invoice of `subscription` (paid, failed, needing action).
    Invoice { subscription: Option<String>, customer: String },
    /// A completed checkout: its `client_reference_id`, customer and subscription.
    Checkout { reference: Option<String>, customer: Option<String>, subscription: Option<String> },
    /// A connected account (a creator's) changed; `tenant` from Parla's mark on it.
    Account {
        id: String,
        tenant: Option<String>,
        charges_enabled: bool,
        payouts_enabled: bool,
        details_submitted: bool,
    },
    /// Anything else: stored, acknowledged, not acted on.
    Other,
}

/// Usage reported to one of the provider's meters (Stripe Meters): `value` more of
/// `event_name` for `customer`, as of when the provider receives it. The provider counts one
/// `identifier` once, so a report resent after a lost answer is not counted twice; a resent
/// report is the same request, byte for byte (no time of sending in it).
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    pub event_name: String,
    pub customer: String,
    pub value: u64,
    pub identifier: String,
}

/// A verified event as stored, waiting to be applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub received_at: i64,
    /// The body exactly as received (it was verified over these bytes).
    pub payload: String,
}

/// Why a payment-provider call or check failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PaymentError {
    /// Billing is not configured on this server (no secret key).
    #[error("billing is not configured on this server")]
    NotConfigured,
    /// The provider refused the request (its code and message).
    #[error("the payment provider refused: {0}")]
    Refused(String),
    /// The provider could not be reached or answered out of shape.
    #[error("the payment provider failed: {0}")]
    Unavailable(String),
    /// A webhook's signature is missing, forged, or too old.
    #[error("webhook signature: {0}")]
    BadSignature(&'static str),
    /// A webhook's body is not an event.
    #[error("webhook payload: {0}")]
    BadPayload(String),
}

/// A Checkout Session to open.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub customer: String,
    pub price: String,
    pub trial_days: u32,
    /// The workspace buying (`client_reference_id`).
    pub tenant: TenantId,
    /// Parla's marks on the subscription (`tenant_id`, `kind`, `plan` or `listing`).
    pub metadata: BTreeMap<String, String>,
    pub success_url: String,
    pub cancel_url: String,
    /// A marketplace sale: the creator's connected account and the platform's percentage.
    pub transfer: Option<(String, f64)>,
    /// Makes a retried request the same one at the provider.
    pub idempotency_key: String,
}

/// The payment provider (Stripe): the calls Parla makes and the events it receives.
#[async_trait]
pub trait Payments: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the workspace's customer; the same `idempotency_key` gives the same customer.
    async fn create_customer(
        &self,
        tenant: &TenantId,
        email: &str,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError>;

    /// Opens a Checkout Session in subscription mode; returns its URL.
    async fn checkout(&self, request: &CheckoutRequest) -> Result<String, PaymentError>;

    /// Opens a Customer Portal session; returns its URL.
    async fn portal(&self, customer: &str, return_url: &str) -> Result<String, PaymentError>;

    /// Reads a subscription as it is now.
    async fn subscription(&self, id: &str) -> Result<ProviderSubscription, PaymentError>;

    /// Cancels at the period's end, or now.
    async fn cancel(&self, id: &str, immediately: bool) -> Result<(), PaymentError>;

    /// Checks a webhook's `Stripe-Signature` over the raw body at `now` (Unix seconds) and
    /// reads the event.
    fn verify(
        &self,
        payload: &[u8],
        signature: &str,
        now: i64,
    ) -> Result<ProviderEvent, PaymentError>;

    /// Reads an event already verified (from the store's queue).
    fn read_event(&self, payload: &str) -> Result<ProviderEvent, PaymentError>;

    /// Creates a recurring price (with its product) on the platform's account; returns its id.
    async fn create_price(
        &self,
        product: &str,
        amount: u64,
        currency: &str,
        interval: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError>;

    /// Creates a creator's Connect Express account; returns its id.
    async fn create_connect_account(
        &self,
        tenant: &TenantId,
        email: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError>;

    /// An onboarding link for a Connect account; returns its URL.
    async fn account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, PaymentError>;

    /// A Connect account's state: (charges enabled, payouts enabled, details submitted).
    async fn account(&self, id: &str) -> Result<(bool, bool, bool), PaymentError>;

    /// Reports usage to a meter.
    async fn report_usage(&self, report: &MeterReport) -> Result<(), PaymentError>;
}
