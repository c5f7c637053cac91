//! The [`Listings`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::marketplace::{ConnectAccount, Listing};
use crate::model::{BotId, TenantId};

/// The marketplace: creators' listings (global, by bot id: buyers of every workspace browse
/// them) and the creators' payout accounts.
#[async_trait]
pub trait Listings: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or replaces the listing of `listing.bot_id` (the caller checked the bot is its
    /// tenant's).
    async fn put_listing(&self, listing: &Listing) -> StoreResult<()>;

    async fn get_listing(&self, bot: &BotId) -> StoreResult<Option<Listing>>;

    /// Every public listing, any order.
    async fn public_listings(&self) -> StoreResult<Vec<Listing>>;

    /// Deletes the tenant's listing of `bot`; returns whether it existed.
    async fn delete_listing(&self, tenant: &TenantId, bot: &BotId) -> StoreResult<bool>;

    async fn put_connect_account(&self, account: &ConnectAccount) -> StoreResult<()>;

    async fn connect_account(&self, tenant: &TenantId) -> StoreResult<Option<ConnectAccount>>;
}
