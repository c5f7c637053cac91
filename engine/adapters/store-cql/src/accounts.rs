//! Accounts, API keys and invitations: the writes that must not undo one another.
//!
//! - **Accounts** are written only by LWTs (migration 0005): created `IF NOT EXISTS`, changed
//!   and deleted `IF version = ?` as read (a row from before the migration has a null version,
//!   read as 0 and compared as null). Taking the owner role from someone (a demotion or a
//!   removal) also moves the partition's static `roles_version` in the same conditional batch
//!   (one partition per tenant, so one Paxos round): two such changes of a tenant serialise,
//!   and each counts the owners left as of the roles version it read.
//! - **API keys**: `revoked` and `last_used_at` are columns of their own beside the record
//!   (plain writes of separate cells cannot undo each other); a read takes the columns over the
//!   record's copies, which rows from before the migration alone have. `revoked` is only ever
//!   written `true`, and a use is written with its own time as the cell's timestamp, so the
//!   latest use wins whatever the order the writes land in. Who minted a key (`created_by`)
//!   is in the record: written once, with the key, never changed.
//! - **Invitations**: the record in the tenant's partition (listing), the digest in a global
//!   table written only by LWTs: `DELETE ... IF EXISTS` is the one commit point of both an
//!   acceptance and a revocation. Both carry a TTL to the invitation's expiry.

use scylla::{
    statement::batch::{Batch, BatchType},
    value::MaybeUnset,
};

use super::{Cas, CqlStore, cql_int, cql_uint, decode, encode, fail};
use parla_domain::model::{Account, ApiKey, Invitation, Role, now_ms};
use parla_domain::store::{StoreError, StoreResult};

/// Rounds of an owner's demotion or removal that lost the roles version to another before
/// giving up: each means another change of the tenant's roles won in between.
const ROLE_ATTEMPTS: usize = 16;

/// An account's row: the record, its version as stored (`None` before migration 0005).
type AccountRow = (Account, Option<i64>);

impl CqlStore {
    pub(super) async fn account_row(&self, t: &str, id: &str) -> StoreResult<Option<AccountRow>> {
        let s = &self.st.get_account_row;
        let Some((Some(data), version)) =
            self.one::<(Option<String>, Option<i64>)>(s, (t, id)).await?
        else {
            return Ok(None);
        };
        let mut account: Account = decode(&data)?;
        account.version = version.map_or(Ok(0), cql_uint)?;
        Ok(Some((account, version)))
    }

    /// The tenant's accounts and the partition's roles version.
    pub(super) async fn account_rows(&self, t: &str) -> StoreResult<(Vec<Account>, Option<i64>)> {
        type Columns = (Option<String>, Option<i64>, Option<i64>);
        let rows = self.all::<Columns>(&self.st.list_accounts, (t,)).await?;
        let roles = rows.iter().find_map(|(_, _, roles)| *roles);
        let mut accounts = Vec::with_capacity(rows.len());
        for (data, version, _) in rows {
            // A partition holding only its static column has one row without a record.
            let Some(data) = data else { continue };
            let mut account: Account = decode(&data)?;
            account.version = version.map_or(Ok(0), cql_uint)?;
            accounts.push(account);
        }
        Ok((accounts, roles))
    }

    pub(super) async fn insert_account(&self, account: &Account) -> StoreResult<()> {
        let (t, id) = (account.tenant_id.as_str(), account.id.as_str());
        let stored = Account { version: 0, ..account.clone() };
        // Not applied: the row exists, written by this creator's earlier try (its email claim
        // names this very account).
        self.cas(&self.st.put_account, (t, id, encode(&stored)?)).await.map(drop)
    }

    pub(super) async fn update_account_cas(&self, a: &Account) -> StoreResult<()> {
        let (t, id) = (a.tenant_id.as_str(), a.id.as_str());
        for _ in 0..ROLE_ATTEMPTS {
            let Some((current, as_read)) = self.account_row(t, id).await? else {
                return Err(StoreError::Conflict);
            };
            if current.email != a.email {
                return Err(StoreError::Corrupt("an account's email cannot change here".into()));
            }
            if current.version != a.version {
                return Err(StoreError::Conflict);
            }
            let next = cql_int(a.version + 1)?;
            let data = encode(&Account { version: a.version + 1, ..a.clone() })?;
            let row = (data, next, t, id, as_read);
            if current.role != Role::Owner || a.role == Role::Owner {
                let cas = self.cas(&self.st.update_account, row).await?;
                return if cas.applied { Ok(()) } else { Err(StoreError::Conflict) };
            }
            let roles = self.owners_left(t, id).await?;
            let mut batch = Batch::new(BatchType::Logged);
            batch.append_statement(self.st.update_account.ps.clone());
            batch.append_statement(self.st.bump_roles.ps.clone());
            if self.cas_batch(&batch, (row, (roles.map_or(1, |r| r + 1), t, roles))).await? {
                return Ok(());
            }
            // The row changed (a conflict, seen on the next read) or another change of the
            // tenant's roles came first: count again.
        }
        Err(StoreError::Backend("cql: the tenant's roles kept changing".into()))
    }

    /// Deletes the account if it is at `version` (any version when `None`, as read), then
    /// frees its email; refuses the last owner. Returns whether it was deleted. The record goes
    /// first: a crash before the email is freed leaves a claim naming no account, which the
    /// next registration with that email takes over (see `create_account`).
    pub(super) async fn remove_account(
        &self,
        t: &str,
        id: &str,
        version: Option<u64>,
    ) -> StoreResult<bool> {
        for _ in 0..ROLE_ATTEMPTS {
            let Some((current, as_read)) = self.account_row(t, id).await? else {
                return Ok(false);
            };
            if version.is_some_and(|v| v != current.version) {
                return Ok(false);
            }
            let applied = if current.role == Role::Owner {
                let roles = self.owners_left(t, id).await?;
                let mut batch = Batch::new(BatchType::Logged);
                batch.append_statement(self.st.delete_account.ps.clone());
                batch.append_statement(self.st.bump_roles.ps.clone());
                let values = ((t, id, as_read), (roles.map_or(1, |r| r + 1), t, roles));
                self.cas_batch(&batch, values).await?
            } else {
                self.cas(&self.st.delete_account, (t, id, as_read)).await?.applied
            };
            if applied {
                self.cas(&self.st.release_email, (current.email.as_str(), t, id)).await?;
                return Ok(true);
            }
        }
        Err(StoreError::Backend("cql: the tenant's roles kept changing".into()))
    }

    /// The tenant's roles version, if an owner other than `leaving` remains; else
    /// [`StoreError::LastOwner`].
    async fn owners_left(&self, t: &str, leaving: &str) -> StoreResult<Option<i64>> {
        let (accounts, roles) = self.account_rows(t).await?;
        if accounts.iter().any(|a| a.role == Role::Owner && a.id.as_str() != leaving) {
            Ok(roles)
        } else {
            Err(StoreError::LastOwner)
        }
    }

    /// Runs a conditional batch (one partition); returns whether it applied.
    async fn cas_batch(
        &self,
        batch: &Batch,
        values: impl scylla::serialize::batch::BatchValues,
    ) -> StoreResult<bool> {
        let result =
            self.session.batch(batch, values).await.map_err(|e| fail(&self.st.bump_roles, e))?;
        Ok(Cas::from_result("accounts batch", result)?.applied)
    }

    // ---- API keys ------------------------------------------------------------------------

    /// The record, and its revocation and last use only when it has them: an unset cell
    /// never shadows a revocation or a use written on another coordinator whose clock is
    /// behind (a revocation is final; a last use only moves forward).
    pub(super) async fn put_api_key_row(&self, key: &ApiKey) -> StoreResult<()> {
        let (t, id) = (key.tenant_id.as_str(), key.id.as_str());
        let revoked = if key.revoked { MaybeUnset::Set(true) } else { MaybeUnset::Unset };
        let used = key.last_used_at.map_or(MaybeUnset::Unset, MaybeUnset::Set);
        let values = (t, id, encode(key)?, revoked, used);
        self.run(&self.st.put_api_key, values).await.map(drop)
    }

    /// A key with its own columns over the record's copies.
    pub(super) fn api_key_of(
        data: &str,
        revoked: Option<bool>,
        last_used_at: Option<i64>,
    ) -> StoreResult<ApiKey> {
        let mut key: ApiKey = decode(data)?;
        key.revoked = revoked.unwrap_or(key.revoked);
        key.last_used_at = last_used_at.or(key.last_used_at);
        Ok(key)
    }

    pub(super) async fn api_key_row(&self, t: &str, id: &str) -> StoreResult<Option<ApiKey>> {
        type Columns = (Option<String>, Option<bool>, Option<i64>);
        match self.one::<Columns>(&self.st.get_api_key, (t, id)).await? {
            Some((Some(data), revoked, used)) => Self::api_key_of(&data, revoked, used).map(Some),
            _ => Ok(None),
        }
    }

    pub(super) async fn api_key_rows(&self, t: &str) -> StoreResult<Vec<ApiKey>> {
        type Columns = (Option<String>, Option<bool>, Option<i64>);
        let rows = self.all::<Columns>(&self.st.list_api_keys, (t,)).await?;
        rows.into_iter()
            .filter_map(|(data, revoked, used)| data.map(|d| Self::api_key_of(&d, revoked, used)))
            .collect()
    }

    pub(super) async fn revoke_key(&self, t: &str, id: &str) -> StoreResult<bool> {
        if self.api_key_row(t, id).await?.is_none() {
            return Ok(false);
        }
        self.run(&self.st.revoke_api_key, (t, id)).await?;
        Ok(true)
    }

    pub(super) async fn touch_key(&self, t: &str, id: &str, at: i64) -> StoreResult<()> {
        if self.api_key_row(t, id).await?.is_none() {
            return Ok(());
        }
        let micros = at.saturating_mul(1000);
        self.run(&self.st.touch_api_key, (micros, at, t, id)).await.map(drop)
    }

    // ---- invitations ---------------------------------------------------------------------

    /// The record first, then the digest (the commit point): a crash between them leaves a
    /// listed invitation nobody can accept, gone at its expiry.
    pub(super) async fn insert_invitation(&self, i: &Invitation) -> StoreResult<()> {
        let (t, id) = (i.tenant_id.as_str(), i.id.as_str());
        let ttl = ttl_secs(i.expires_at);
        self.run(&self.st.put_invitation, (t, id, encode(i)?, ttl)).await?;
        let values = (i.digest.as_str(), t, id, ttl);
        if self.cas(&self.st.claim_invitation_digest, values).await?.applied {
            return Ok(());
        }
        Err(StoreError::Backend("cql: an invitation digest is taken".into()))
    }

    pub(super) async fn invitations(&self, t: &str) -> StoreResult<Vec<Invitation>> {
        self.records(&self.st.list_invitations, (t,)).await
    }

    /// Revokes: the record is read first (its digest names the commit point); only the
    /// winner of `DELETE ... IF EXISTS` on the digest removes the record.
    pub(super) async fn revoke_invitation(
        &self,
        t: &str,
        id: &str,
    ) -> StoreResult<Option<Invitation>> {
        let found: Option<Invitation> = self.record(&self.st.get_invitation, (t, id)).await?;
        let Some(invitation) = found else { return Ok(None) };
        self.finish_taking(invitation).await
    }

    /// The invitation the digest names, read only.
    pub(super) async fn invitation_of_digest(
        &self,
        digest: &str,
    ) -> StoreResult<Option<Invitation>> {
        let s = &self.st.get_invitation_digest;
        let Some((Some(t), Some(id))) =
            self.one::<(Option<String>, Option<String>)>(s, (digest,)).await?
        else {
            return Ok(None);
        };
        let found: Option<Invitation> = self.record(&self.st.get_invitation, (&t, &id)).await?;
        Ok(found.filter(|i| i.digest == digest))
    }

    /// Accepts: the digest names the record, read before the commit point so that a
    /// revocation losing the race cannot delete it first.
    pub(super) async fn take_invitation_by_digest(
        &self,
        digest: &str,
    ) -> StoreResult<Option<Invitation>> {
        let Some(invitation) = self.invitation_of_digest(digest).await? else { return Ok(None) };
        self.finish_taking(invitation).await
    }

    async fn finish_taking(&self, invitation: Invitation) -> StoreResult<Option<Invitation>> {
        let cas = self.cas(&self.st.take_invitation_digest, (invitation.digest.as_str(),)).await?;
        if !cas.applied {
            return Ok(None);
        }
        let (t, id) = (invitation.tenant_id.as_str(), invitation.id.as_str());
        self.run(&self.st.delete_invitation, (t, id)).await?;
        Ok(Some(invitation))
    }
}

/// Seconds until `expires_at` (ms), at least 1: a row's TTL.
fn ttl_secs(expires_at: i64) -> i32 {
    let secs = (expires_at - now_ms()).div_euclid(1000).max(1);
    i32::try_from(secs).unwrap_or(i32::MAX)
}
