//! Changes to accounts as compare-and-set loops, so that no change undoes another.
//!
//! Every caller that changes an account (a password reset, a role change, TOTP enrolment and
//! the TOTP step a login consumes, email verification) reads it, changes its copy and writes it
//! back. Two of them racing used to lose one change silently: a TOTP enrolment that read the
//! account before a password reset wrote back the old hash and session epoch. The store's
//! [`Accounts::update_account`](parla_domain::store::Accounts::update_account) now writes only if the account is still at the version that was
//! read; [`modify`] reads again and asks the change again when it is not, so each change is
//! decided on the account as it is when it is written (a TOTP code already consumed by a
//! concurrent login is then refused, a demotion sees the role someone else just set).
//! [`modify_as`] and [`remove_as`] also read again, in each attempt, the member on whose
//! behalf the change is made: it is decided on their rights as they are then.
//!
//! Each write is announced on the tenant's feed ([`crate::Engine::account_changed`]): the agent
//! sockets of that member, on any node, check their session again at once.
//!
//! The API keys a member minted go with their right to mint them
//! ([`revoke_keys_minted_by`]), when they are removed or demoted below admin.

use std::time::Duration;

use crate::{
    Engine,
    model::{Account, AccountId, TenantId},
    store::StoreError,
};

/// Reads before a change may give up with [`StoreError::Conflict`]: each retry means another
/// write of the same account won the race in between, and a change is decided in
/// microseconds, so running out takes a flood of writes to one account.
const ATTEMPTS: u32 = 32;
/// ...and only once this long has passed too: on a loaded machine a flood of writes to one
/// account (TOTP enrolments with a stolen token) could otherwise outlast 32 attempts and keep
/// its owner's password reset from landing. Every lost race is someone else's progress, so
/// trying longer cannot spin for nothing.
const PERSIST: Duration = Duration::from_secs(10);

/// Whether a change that lost `attempt` races should try again.
fn again(attempt: u32, since: std::time::Instant) -> bool {
    attempt < ATTEMPTS || since.elapsed() < PERSIST
}

/// Reads `tenant`'s account `id`, lets `change` decide on it as it is now (`None`: there is
/// none), and writes the result if `change` altered it, compare-and-set: if someone else wrote
/// the account in between, everything runs again on the new record (so `change` must be
/// repeatable). Returns the account as stored at the end, with what `change` returned.
pub async fn modify<T, E>(
    engine: &Engine,
    tenant: &TenantId,
    id: &AccountId,
    mut change: impl FnMut(Option<&mut Account>) -> Result<T, E>,
) -> Result<(Option<Account>, T), E>
where
    E: From<StoreError>,
{
    modify_inner(engine, tenant, None, id, |_, account| change(account)).await
}

/// [`modify`] on behalf of `actor`, a member of the same tenant whose rights decide the
/// change: each attempt reads the actor again, after the account, and `change` decides on
/// both as they are then (`None`: gone). A member demoted or removed while their request was
/// under way acts with the rights they have left, not those read when it started. The account
/// is unchanged from its read to the write (compare-and-set), so the change is as if made at
/// the moment the actor was read.
pub async fn modify_as<T, E>(
    engine: &Engine,
    tenant: &TenantId,
    actor: &AccountId,
    id: &AccountId,
    change: impl FnMut(Option<&Account>, Option<&mut Account>) -> Result<T, E>,
) -> Result<(Option<Account>, T), E>
where
    E: From<StoreError>,
{
    modify_inner(engine, tenant, Some(actor), id, change).await
}

async fn modify_inner<T, E>(
    engine: &Engine,
    tenant: &TenantId,
    actor: Option<&AccountId>,
    id: &AccountId,
    mut change: impl FnMut(Option<&Account>, Option<&mut Account>) -> Result<T, E>,
) -> Result<(Option<Account>, T), E>
where
    E: From<StoreError>,
{
    let store = engine.store();
    let since = std::time::Instant::now();
    let mut attempt = 0;
    while again(attempt, since) {
        attempt += 1;
        let read = store.get_account(tenant, id).await?;
        let acting = match actor {
            Some(actor) => store.get_account(tenant, actor).await?,
            None => None,
        };
        let mut edited = read.clone();
        let decided = change(acting.as_ref(), edited.as_mut())?;
        let (Some(before), Some(mut after)) = (read, edited) else {
            return Ok((None, decided));
        };
        if after == before {
            return Ok((Some(after), decided));
        }
        match store.update_account(&after).await {
            Ok(()) => {
                after.version = before.version + 1;
                engine.account_changed(tenant, id);
                return Ok((Some(after), decided));
            }
            Err(StoreError::Conflict) => pause(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Removes `tenant`'s account `id` if `allow` accepts it as it is now, compare-and-set like
/// [`modify`]: a member whose role changed meanwhile is checked again. Returns whether there
/// was an account to remove (`allow` is not called when there is none).
pub async fn remove<E>(
    engine: &Engine,
    tenant: &TenantId,
    id: &AccountId,
    mut allow: impl FnMut(&Account) -> Result<(), E>,
) -> Result<bool, E>
where
    E: From<StoreError>,
{
    remove_inner(engine, tenant, None, id, |_, account| allow(account)).await
}

/// [`remove`] on behalf of `actor`, read again after the account in each attempt as
/// [`modify_as`] does: `allow` decides on the remover as they are then (`None`: gone).
pub async fn remove_as<E>(
    engine: &Engine,
    tenant: &TenantId,
    actor: &AccountId,
    id: &AccountId,
    allow: impl FnMut(Option<&Account>, &Account) -> Result<(), E>,
) -> Result<bool, E>
where
    E: From<StoreError>,
{
    remove_inner(engine, tenant, Some(actor), id, allow).await
}

async fn remove_inner<E>(
    engine: &Engine,
    tenant: &TenantId,
    actor: Option<&AccountId>,
    id: &AccountId,
    mut allow: impl FnMut(Option<&Account>, &Account) -> Result<(), E>,
) -> Result<bool, E>
where
    E: From<StoreError>,
{
    let store = engine.store();
    let since = std::time::Instant::now();
    let mut attempt = 0;
    while again(attempt, since) {
        attempt += 1;
        let Some(account) = store.get_account(tenant, id).await? else { return Ok(false) };
        let acting = match actor {
            Some(actor) => store.get_account(tenant, actor).await?,
            None => None,
        };
        allow(acting.as_ref(), &account)?;
        match store.delete_account_if_unchanged(&account).await {
            Ok(()) => {
                engine.account_changed(tenant, id);
                return Ok(true);
            }
            Err(StoreError::Conflict) => pause(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Revokes every API key of `tenant` that `member` minted and that is not yet revoked;
/// returns how many. Called when the member is removed or demoted below admin: a key must not
/// outlive its maker's right to mint it. Repeatable (a retry after a failure part-way revokes
/// the rest), field-level ([`crate::store::Credentials::revoke_api_key`]: a use of the key racing it
/// cannot undo it). Keys minted before their maker was recorded are not found here.
pub async fn revoke_keys_minted_by(
    engine: &Engine,
    tenant: &TenantId,
    member: &AccountId,
) -> Result<usize, StoreError> {
    let store = engine.store();
    let mut revoked = 0;
    for key in store.list_api_keys(tenant).await? {
        if !key.revoked && key.created_by.as_ref() == Some(member) {
            revoked += usize::from(store.revoke_api_key(tenant, &key.id).await?);
        }
    }
    Ok(revoked)
}

/// A short random pause after a lost race, longer after each: writers that collided do not
/// collide again in lockstep.
async fn pause(attempt: u32) {
    let most = 1 + u64::from(attempt.min(10)) * 2;
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=most))).await;
}
