//! The [`Accounts`] port.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{Account, AccountId, Invitation, TenantId};

/// Accounts (members of a tenant) and invitations: changes that must not undo each other are
/// compare-and-set.
#[async_trait]
pub trait Accounts: Send + Sync + std::fmt::Debug + 'static {
    /// Creates an account; [`StoreError::EmailTaken`](super::StoreError::EmailTaken) if its (lower-cased) email exists.
    async fn create_account(&self, account: &Account) -> StoreResult<()>;

    /// Finds an account by email alone: the login entry point, which knows no tenant.
    async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<Option<Account>>;

    /// Replaces an existing account (same tenant, id and email) if it is still at
    /// `account.version` (compare-and-set), storing it at `account.version + 1`:
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when it was written or deleted since it was read, and
    /// [`StoreError::LastOwner`](super::StoreError::LastOwner) when it would demote the tenant's last owner (checked
    /// atomically with every other demotion and removal of the tenant).
    async fn update_account(&self, account: &Account) -> StoreResult<()>;

    async fn list_accounts(&self, tenant: &TenantId) -> StoreResult<Vec<Account>>;

    /// Deletes an account of `tenant` (and frees its email); returns whether it existed.
    /// [`StoreError::LastOwner`](super::StoreError::LastOwner) when it is the tenant's last owner.
    async fn delete_account(&self, tenant: &TenantId, id: &AccountId) -> StoreResult<bool>;

    /// Deletes the account (and frees its email) if it is still at `account.version`:
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when it changed or is gone, [`StoreError::LastOwner`](super::StoreError::LastOwner) when it is
    /// the tenant's last owner. The removal of a member whose role was checked as read.
    async fn delete_account_if_unchanged(&self, account: &Account) -> StoreResult<()>;

    /// Stores a new invitation, findable by its digest until taken, deleted or expired.
    async fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()>;

    /// The tenant's invitations not yet taken or deleted (expired ones may be among them).
    async fn list_invitations(&self, tenant: &TenantId) -> StoreResult<Vec<Invitation>>;

    /// Deletes (revokes) an invitation of `tenant`; returns it if this call removed it: of a
    /// revocation and an acceptance racing, exactly one gets it.
    async fn delete_invitation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<Invitation>>;

    /// Removes and returns the invitation with this digest: of two concurrent takes (or a take
    /// and a deletion), exactly one gets it.
    async fn take_invitation(&self, digest: &str) -> StoreResult<Option<Invitation>>;

    /// The invitation with this digest, read only: a bogus or spent link is refused for one
    /// read, before anything costly (a password hash) is done. [`Store::take_invitation`]
    /// still decides who gets it.
    async fn invitation_by_digest(&self, digest: &str) -> StoreResult<Option<Invitation>>;
}
