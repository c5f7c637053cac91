//! The marketplace, as part of [`Billing`]: creators list bots with prices and onboard to
//! Stripe Connect; buyers browse, subscribe (paying the creator less the platform's fee) and get
//! the bot installed in their workspace when Stripe confirms the subscription; an installed bot
//! answers only while its subscription is in force.

use std::collections::BTreeMap;
use std::time::Instant;

use parla_domain::billing::{CheckoutRequest, Subscription, SubscriptionKind};
use parla_domain::marketplace::{ConnectAccount, Installed, Listing, ListingPrice};
use parla_domain::model::{
    Account, Bot, BotCategory, BotId, BotIntegration, BotStatus, TenantId, now_ms,
};
use parla_domain::store::StoreError;
use serde::Serialize;
use sha2::Digest;

use crate::EngineError;
use crate::billing::{Billing, BillingError, PLAN_TTL};

/// The meter (on the creator's workspace, month `all`) counting a listing's installs.
fn installs_meter(bot: &BotId) -> String {
    format!("installs:{bot}")
}

/// A price a creator asks for, before Stripe has it.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceSpec {
    pub amount: u64,
    pub currency: String,
    pub interval: String,
}

/// What a creator sets on a listing.
#[derive(Debug, Clone)]
pub struct ListingSpec {
    pub public: bool,
    pub title: String,
    pub description: String,
    pub category: BotCategory,
    pub language: String,
    pub screenshots: Vec<String>,
    pub prices: Vec<PriceSpec>,
    pub trial_days: u32,
}

/// A listing as buyers see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MarketBot {
    #[serde(flatten)]
    pub listing: Listing,
    /// Workspaces that installed it.
    pub installs: u64,
    /// Mean CSAT (1–5) of the creator's bot over the last 90 days; absent without ratings.
    pub rating: Option<f32>,
    pub ratings: u64,
    /// The creator's bot takes conversations: `bot_id` can be opened in the widget as a live demo.
    pub demo: bool,
}

/// How the marketplace is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketSort {
    Rating,
    Installs,
    Newest,
}

/// Why a marketplace operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("no such bot on the marketplace")]
    NotListed,
    #[error("this is your own workspace's bot")]
    OwnBot,
    #[error("no such price for this bot")]
    UnknownPrice,
    #[error("the creator cannot take payments yet")]
    CreatorNotPayable,
    #[error("finish the payouts onboarding (Stripe Connect) before listing publicly")]
    PayoutsNotReady,
    #[error("a public listing needs at least one price")]
    NoPrice,
    #[error("an installed bot cannot be listed")]
    Installed,
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<EngineError> for MarketError {
    fn from(e: EngineError) -> Self {
        Self::Billing(e.into())
    }
}

impl From<StoreError> for MarketError {
    fn from(e: StoreError) -> Self {
        Self::Billing(e.into())
    }
}

impl From<parla_domain::billing::PaymentError> for MarketError {
    fn from(e: parla_domain::billing::PaymentError) -> Self {
        Self::Billing(e.into())
    }
}

impl Billing {
    /// Creates or changes the listing of `bot` (the creator's, checked by the caller). New
    /// prices are created at Stripe once (the same price asked twice is the same Stripe
    /// request); a public listing needs a price and payouts onboarding done.
    pub async fn put_listing(&self, bot: &Bot, spec: ListingSpec) -> Result<Listing, MarketError> {
        if bot.installed_from.is_some() {
            return Err(MarketError::Installed);
        }
        let held = self.store.get_listing(&bot.id).await?;
        if spec.public {
            if spec.prices.is_empty() {
                return Err(MarketError::NoPrice);
            }
            let account = self.store.connect_account(&bot.tenant_id).await?;
            if !account.is_some_and(|a| a.charges_enabled) {
                return Err(MarketError::PayoutsNotReady);
            }
        }
        let mut prices = Vec::new();
        for p in &spec.prices {
            let known = held.iter().flat_map(|l| &l.prices).find(|h| {
                h.amount == p.amount && h.currency == p.currency && h.interval == p.interval
            });
            let id = match known {
                Some(h) => h.id.clone(),
                None => {
                    let key = format!(
                        "parla-price-{}-{}-{}-{}",
                        bot.id, p.amount, p.currency, p.interval
                    );
                    let name = format!("{} (Parla marketplace)", spec.title);
                    self.payments()?
                        .create_price(&name, p.amount, &p.currency, &p.interval, &key)
                        .await?
                }
            };
            prices.push(ListingPrice {
                id,
                amount: p.amount,
                currency: p.currency.clone(),
                interval: p.interval.clone(),
            });
        }
        let now = now_ms();
        let listing = Listing {
            bot_id: bot.id.clone(),
            tenant_id: bot.tenant_id.clone(),
            public: spec.public,
            title: spec.title,
            description: spec.description,
            category: spec.category,
            language: spec.language,
            screenshots: spec.screenshots,
            prices,
            trial_days: spec.trial_days,
            created_at: held.as_ref().map_or(now, |h| h.created_at),
            updated_at: now,
        };
        self.store.put_listing(&listing).await?;
        Ok(listing)
    }

    /// The public listings, searched and sorted.
    pub async fn browse(
        &self,
        query: Option<&str>,
        category: Option<BotCategory>,
        language: Option<&str>,
        sort: MarketSort,
    ) -> Result<Vec<MarketBot>, MarketError> {
        let words: Vec<String> = query
            .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
            .unwrap_or_default();
        let mut found = Vec::new();
        for listing in self.store.public_listings().await? {
            let text = format!("{} {}", listing.title, listing.description).to_lowercase();
            if !words.iter().all(|w| text.contains(w.as_str()))
                || category.is_some_and(|c| c != listing.category)
                || language.is_some_and(|l| !listing.language.eq_ignore_ascii_case(l))
            {
                continue;
            }
            found.push(self.market_bot(listing).await?);
        }
        match sort {
            MarketSort::Rating => found.sort_by(|a, b| {
                let key = |m: &MarketBot| (m.rating.unwrap_or(0.0), m.ratings);
                key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal)
            }),
            MarketSort::Installs => found.sort_by_key(|m| std::cmp::Reverse(m.installs)),
            MarketSort::Newest => found.sort_by_key(|m| std::cmp::Reverse(m.listing.created_at)),
        }
        Ok(found)
    }

    /// One public listing as buyers see it.
    pub async fn market_listing(&self, bot: &BotId) -> Result<MarketBot, MarketError> {
        let listing = self.store.get_listing(bot).await?.filter(|l| l.public);
        self.market_bot(listing.ok_or(MarketError::NotListed)?).await
    }

    async fn market_bot(&self, listing: Listing) -> Result<MarketBot, MarketError> {
        let creator = &listing.tenant_id;
        let usage = self.store.usage(creator, "all").await?;
        let meter = installs_meter(&listing.bot_id);
        let installs = usage.into_iter().find(|(m, _)| *m == meter).map_or(0, |(_, n)| n);
        let (rating, ratings) = self.rating(creator, &listing.bot_id).await?;
        let demo = self
            .store
            .get_bot(creator, &listing.bot_id)
            .await?
            .is_some_and(|b| b.status == BotStatus::Active);
        Ok(MarketBot { listing, installs, rating, ratings, demo })
    }

    /// The creator's bot's mean CSAT over 90 days (cached for five minutes).
    async fn rating(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> Result<(Option<f32>, u64), MarketError> {
        if let Some((at, r)) = self.ratings.lock().get(bot)
            && at.elapsed() < std::time::Duration::from_secs(300)
        {
            return Ok(*r);
        }
        let now = now_ms();
        let hour = 3_600_000;
        let to = (now / hour + 1) * hour;
        let rows = self.store.analytics(tenant, to - 90 * 24 * hour, to).await?;
        let (mut sum, mut count) = (0i64, 0i64);
        for row in rows.iter().filter(|r| &r.bot_id == bot) {
            sum += row.counters.csat_sum;
            count += row.counters.csat_count;
        }
        let r = if count > 0 { (Some(sum as f32 / count as f32), count as u64) } else { (None, 0) };
        self.ratings.lock().insert(bot.clone(), (Instant::now(), r));
        Ok(r)
    }

    /// Starts (or resumes) the creator's payouts onboarding: their Connect Express account,
    /// created once, and a link to Stripe's onboarding; returns its URL.
    pub async fn connect_onboarding(
        &self,
        creator: &Account,
        return_url: &str,
    ) -> Result<String, MarketError> {
        let tenant = &creator.tenant_id;
        let payments = self.payments()?;
        let account = match self.store.connect_account(tenant).await? {
            Some(a) => a,
            None => {
                let key = format!("parla-connect-{tenant}");
                let id = payments.create_connect_account(tenant, &creator.email, &key).await?;
                let account = ConnectAccount {
                    tenant_id: tenant.clone(),
                    id,
                    charges_enabled: false,
                    payouts_enabled: false,
                    details_submitted: false,
                    updated_at: now_ms(),
                };
                self.store.put_connect_account(&account).await?;
                account
            }
        };
        let back = format!("{return_url}?connect=done");
        let again = format!("{return_url}?connect=again");
        Ok(payments.account_link(&account.id, &again, &back).await?)
    }

    /// The creator's payouts account, if any: while it cannot take charges yet, as Stripe has
    /// it now (the creator may be back from onboarding before Stripe's event); once ready, as
    /// stored (Stripe's `account.updated` events keep it).
    pub async fn connect_status(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<ConnectAccount>, MarketError> {
        let Some(mut account) = self.store.connect_account(tenant).await? else { return Ok(None) };
        if !account.charges_enabled
            && let Ok(payments) = self.payments()
        {
            (account.charges_enabled, account.payouts_enabled, account.details_submitted) =
                payments.account(&account.id).await?;
            account.updated_at = now_ms();
            self.store.put_connect_account(&account).await?;
        }
        Ok(Some(account))
    }

    /// A Connect account changed (its `account.updated` event).
    pub(crate) async fn apply_account(
        &self,
        tenant: Option<&str>,
        id: &str,
        (charges, payouts, details): (bool, bool, bool),
    ) -> Result<(), BillingError> {
        let Some(tenant) = tenant.map(TenantId::from) else {
            tracing::warn!(account = %id, "an account without Parla's tenant mark; ignored");
            return Ok(());
        };
        match self.store.connect_account(&tenant).await? {
            Some(mut held) if held.id == id => {
                (held.charges_enabled, held.payouts_enabled, held.details_submitted) =
                    (charges, payouts, details);
                held.updated_at = now_ms();
                self.store.put_connect_account(&held).await?;
            }
            _ => tracing::warn!(account = %id, "an account this workspace does not hold; ignored"),
        }
        Ok(())
    }

    /// Opens a checkout for a listed bot; returns its URL. The bot is installed when Stripe's
    /// events say the subscription started, never on the redirect.
    pub async fn subscribe_bot(
        &self,
        buyer: &Account,
        bot: &BotId,
        price: &str,
        return_url: &str,
    ) -> Result<String, MarketError> {
        let listing = self
            .store
            .get_listing(bot)
            .await?
            .filter(|l| l.public)
            .ok_or(MarketError::NotListed)?;
        if listing.tenant_id == buyer.tenant_id {
            return Err(MarketError::OwnBot);
        }
        let price =
            listing.prices.iter().find(|p| p.id == price).ok_or(MarketError::UnknownPrice)?;
        let account = self.store.connect_account(&listing.tenant_id).await?;
        let account =
            account.filter(|a| a.charges_enabled).ok_or(MarketError::CreatorNotPayable)?;
        let customer = self.customer_of(buyer).await?;
        let metadata = BTreeMap::from([
            ("tenant_id".to_owned(), buyer.tenant_id.to_string()),
            ("kind".to_owned(), "bot".to_owned()),
            ("listing".to_owned(), bot.to_string()),
        ]);
        let request = CheckoutRequest {
            customer,
            price: price.id.clone(),
            trial_days: listing.trial_days,
            tenant: buyer.tenant_id.clone(),
            metadata,
            success_url: format!("{return_url}?checkout=success"),
            cancel_url: format!("{return_url}?checkout=canceled"),
            transfer: Some((account.id, self.config.platform_fee_percent)),
            idempotency_key: format!("parla-checkout-{}", uuid::Uuid::new_v4()),
        };
        Ok(self.payments()?.checkout(&request).await?)
    }

    /// Cancels one of the tenant's subscriptions at Stripe (at the period's end, or now); the
    /// change itself arrives as Stripe's event.
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        id: &str,
        immediately: bool,
    ) -> Result<Option<Subscription>, BillingError> {
        let Some(sub) = self.store.get_subscription(tenant, id).await? else { return Ok(None) };
        self.payments()?.cancel(id, immediately).await?;
        Ok(Some(sub))
    }

    /// Whether the installed bot paid for by `subscription` may answer now (cached for
    /// [`PLAN_TTL`]).
    pub async fn entitled(&self, tenant: &TenantId, subscription: &str) -> bool {
        let key = (tenant.clone(), subscription.to_owned());
        if let Some((at, ok)) = self.entitlements.lock().get(&key)
            && at.elapsed() < PLAN_TTL
        {
            return *ok;
        }
        let ok = match self.store.get_subscription(tenant, subscription).await {
            Ok(Some(sub)) => sub.in_force(now_ms(), self.config.plans.grace_ms),
            Ok(None) => false,
            // A store hiccup does not silence a paid bot: the last answer stands, else yes.
            Err(_) => return self.entitlements.lock().get(&key).is_none_or(|(_, ok)| *ok),
        };
        self.entitlements.lock().insert(key, (Instant::now(), ok));
        ok
    }

    /// Installs the bot a subscription in force pays for, once (its id comes from the
    /// subscription's, so applying the event again finds it): a bot of the buyer's own that
    /// follows the creator's. Returns the subscription as it should be stored.
    pub(crate) async fn install(
        &self,
        mut sub: Subscription,
    ) -> Result<Subscription, BillingError> {
        let SubscriptionKind::Bot { listing, installed: None } = &sub.kind else { return Ok(sub) };
        if !sub.in_force(now_ms(), self.config.plans.grace_ms) {
            return Ok(sub);
        }
        let Some(found) = self.store.get_listing(listing).await? else {
            tracing::warn!(listing = %listing, "a subscription to a bot no longer listed; not installed");
            return Ok(sub);
        };
        let source = self.store.get_bot(&found.tenant_id, listing).await?;
        let digest = sha2::Sha256::digest(sub.id.as_bytes());
        let id = BotId::from(
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>().as_str(),
        );
        let now = now_ms();
        if self.store.get_bot(&sub.tenant_id, &id).await?.is_none() {
            let bot = Bot {
                id: id.clone(),
                tenant_id: sub.tenant_id.clone(),
                name: found.title.clone(),
                description: Some(found.description.clone()).filter(|d| !d.is_empty()),
                category: found.category,
                language: found.language.clone(),
                status: BotStatus::Active,
                // Followed at every load (see `Deps::load_bot`); a copy for the record.
                config: match &source {
                    Some(b) => b.config.clone(),
                    None => parla_domain::model::BotConfig {
                        welcome_message: None,
                        fallback_message: "Sorry, I did not understand that.".into(),
                        personality: None,
                        retention_days: None,
                    },
                },
                appearance: source.as_ref().map(|b| b.appearance.clone()).unwrap_or_default(),
                integration: BotIntegration::default(),
                installed_from: Some(Installed {
                    tenant_id: found.tenant_id.clone(),
                    bot_id: listing.clone(),
                    subscription: sub.id.clone(),
                }),
                created_at: now,
                updated_at: now,
            };
            self.store.put_bot(&bot).await?;
            let meter = installs_meter(listing);
            self.store.count_within(&found.tenant_id, "all", &meter, 1, None).await?;
        }
        sub.kind = SubscriptionKind::Bot { listing: listing.clone(), installed: Some(id) };
        Ok(sub)
    }
}
