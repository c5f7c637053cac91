//! The bot marketplace: a creator lists a bot with prices, buyers subscribe (paying the creator
//! through Stripe Connect, less the platform's fee), and each subscription installs the bot in
//! the buyer's workspace as a bot of its own that follows the creator's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{BotCategory, BotId, TenantId};

/// A creator's bot offered on the marketplace (one per bot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Listing {
    pub bot_id: BotId,
    /// The creator's workspace.
    pub tenant_id: TenantId,
    /// Shown on the marketplace and open to subscriptions.
    pub public: bool,
    pub title: String,
    pub description: String,
    pub category: BotCategory,
    pub language: String,
    /// Images of the bot at work (https URLs).
    pub screenshots: Vec<String>,
    /// What it costs; a buyer picks one.
    pub prices: Vec<ListingPrice>,
    /// Days of trial before the first charge.
    pub trial_days: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One way to pay for a listing: a recurring Stripe price on the platform's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingPrice {
    /// Stripe's price id.
    pub id: String,
    /// In the currency's smallest unit (cents).
    pub amount: u64,
    /// ISO 4217, lower case (`eur`).
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
}

/// A creator's Stripe Connect (Express) account, where their share of sales goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectAccount {
    pub tenant_id: TenantId,
    /// Stripe's account id (`acct_…`).
    pub id: String,
    /// Stripe lets it take charges (onboarding done): its bots can be bought.
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    pub updated_at: i64,
}

/// Where an installed bot comes from: the creator's bot it follows and the subscription that
/// pays for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Installed {
    pub tenant_id: TenantId,
    pub bot_id: BotId,
    pub subscription: String,
}
