//! `/api/members`: a tenant's people and their roles, and invitations by email.
//!
//! Rules: any signed-in member may list members; admins and owners invite, list and revoke
//! invitations and change roles; only an owner may make or unmake an owner; the last owner can
//! be neither demoted nor removed (the store checks it atomically with every other demotion
//! and removal). Role changes and removals are compare-and-set on the member's account
//! ([`parla_engine::accounts`]): each is decided on the member, and on the caller's own role,
//! as they are when it is written (a caller demoted while their request was under way acts
//! with the role they have left).
//!
//! A member removed, or demoted below admin, loses the API keys they minted
//! ([`parla_engine::accounts::revoke_keys_minted_by`]).
//!
//! An invitation is pending until accepted, revoked or expired (`[auth] invitation_ttl_secs`),
//! and is accepted only while its sender is still a member allowed to grant its role: an
//! invitation does not outlive its sender's rights.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use parla_domain::billing::Limit;
use parla_engine::model::{
    Account, AccountId, AccountType, Invitation, OneTimeKind, Role, TenantId, now_ms,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    AdminState, auth,
    error::ApiError,
    recovery::{invalid_token, peek, take},
    routes::Caller,
    views::{AccountView, ErrorBody, InvitationList, InvitationView, MemberList},
};

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// May someone with role `granter` give or take away `role`? Admins and owners manage roles;
/// only an owner grants or removes the owner role.
fn role_may_grant(granter: Role, role: Role) -> bool {
    granter <= Role::Admin && (role != Role::Owner || granter == Role::Owner)
}

/// May `caller` give or take away `role`?
fn may_grant(caller: &Caller, role: Role) -> Result<(), ApiError> {
    caller.require_admin_person()?;
    grant_as(caller.role, role)
}

fn grant_as(granter: Role, role: Role) -> Result<(), ApiError> {
    if !role_may_grant(granter, role) {
        return Err(forbidden("only an owner may grant or remove the owner role"));
    }
    Ok(())
}

/// The role `caller` acts with in a role change or removal: theirs as `acting` (their account
/// read again in each compare-and-set attempt) says it is now, not as read when the request
/// started. Refused as the next request would refuse them when they are gone, their session
/// ended, or they are no longer an admin.
fn acting_role(caller: &Caller, acting: Option<&Account>) -> Result<Role, ApiError> {
    let Some(acting) = acting else {
        return Err(ApiError::unauthorized("token_invalid", "the account no longer exists"));
    };
    if caller.session_epoch != Some(acting.session_epoch) {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "this session was ended (password reset); sign in again",
        ));
    }
    if acting.role > Role::Admin {
        return Err(forbidden("this needs a signed-in admin or owner"));
    }
    Ok(acting.role)
}

/// The signed-in person `caller` is, if an admin or owner as of the request's start (checked
/// again, as it is then, in each attempt: [`acting_role`]).
fn acting_person(caller: &Caller) -> Result<AccountId, ApiError> {
    caller.require_admin_person()?;
    caller.account.clone().ok_or_else(|| forbidden("sign in as a person"))
}

/// `GET /api/members`.
#[utoipa::path(get, path = "/api/members", tag = "members", operation_id = "list_members",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's members", body = MemberList)))]
pub async fn list(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if caller.account.is_none() {
        return Err(forbidden("sign in as a person"));
    }
    let members = state.store.list_accounts(&caller.tenant).await?;
    Ok(HttpResponse::Ok()
        .json(MemberList { data: members.iter().map(AccountView::from).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    role: Role,
}

/// `POST /api/members/invitations`: mails a single-use link to join this tenant as `role`.
#[utoipa::path(post, path = "/api/members/invitations", tag = "members", operation_id = "invite_member",
    security(("bearer" = [])),
    request_body = InviteBody,
    responses((status = 202, description = "The invitation is mailed; pending until accepted, revoked or expired", body = InvitationView)))]
pub async fn invite(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    may_grant(&caller, body.role)?;
    let Some(inviter) = caller.account.clone() else { return Err(forbidden("sign in")) };
    let email = crate::routes::validate_email(&body.email)?;
    let (token, digest) = auth::new_opaque_token("ott_");
    let now = now_ms();
    let ttl_ms = i64::try_from(state.invitation_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let invitation = Invitation {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: caller.tenant.clone(),
        digest,
        email: email.clone(),
        role: body.role,
        invited_by: inviter,
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
    };
    state.engine.billing().ensure_room(&caller.tenant, Limit::Seats, 1).await?;
    state.store.put_invitation(&invitation).await?;
    let body_text = format!(
        "You are invited to a Parla workspace.\n\nopen {}/console#accept-invitation?token={token}\nor send this token to /api/auth/accept-invitation: {token}\n",
        state.public_url.get().map_or("", String::as_str)
    );
    crate::recovery::mail(&state, &email, "Join a Parla workspace", body_text).await?;
    Ok(HttpResponse::Accepted().json(InvitationView::from(&invitation)))
}

/// The tenant's invitations that can still be accepted, newest first.
async fn pending(state: &AdminState, tenant: &TenantId) -> Result<Vec<Invitation>, ApiError> {
    let now = now_ms();
    let mut all = state.store.list_invitations(tenant).await?;
    all.retain(|i| i.expires_at > now);
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    Ok(all)
}

/// `GET /api/members/invitations`: the pending invitations.
#[utoipa::path(get, path = "/api/members/invitations", tag = "members", operation_id = "list_invitations",
    security(("bearer" = [])),
    responses((status = 200, description = "Invitations not yet accepted, revoked or expired, newest first", body = InvitationList)))]
pub async fn list_invitations(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let pending = pending(&state, &caller.tenant).await?;
    Ok(HttpResponse::Ok()
        .json(InvitationList { data: pending.iter().map(InvitationView::from).collect() }))
}

/// `DELETE /api/members/invitations/{id}`: revokes a pending invitation; its link stops
/// working at once.
#[utoipa::path(delete, path = "/api/members/invitations/{id}", tag = "members", operation_id = "revoke_invitation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The invitation's id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_invitation(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such invitation");
    let pending = pending(&state, &caller.tenant).await?;
    let invitation = pending.iter().find(|i| i.id == *path).ok_or_else(not_found)?;
    may_grant(&caller, invitation.role)?;
    // Accepted in the meantime: there is nothing to revoke any more.
    state.store.delete_invitation(&caller.tenant, &invitation.id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    #[schema(min_length = 12, max_length = 256)]
    password: String,
}

/// Refuses, as [`take_invitation`] would, a token that names no invitation that can be
/// accepted, without taking anything: a store read or two, so a made-up link is turned away
/// before any password is hashed for it.
async fn check_invitation(state: &AdminState, token: &str) -> Result<(), ApiError> {
    let digest = auth::token_digest(token.trim());
    if let Some(invitation) = state.store.invitation_by_digest(&digest).await? {
        return if invitation.expires_at > now_ms() { Ok(()) } else { Err(invalid_token()) };
    }
    peek(state, token, OneTimeKind::Invitation).await.map(drop)
}

/// The invitation a token names, taken (used) whatever happens next: one stored as an
/// invitation, or one mailed before invitations were (a one-time token naming the inviter).
async fn take_invitation(state: &AdminState, token: &str) -> Result<Invitation, ApiError> {
    let digest = auth::token_digest(token.trim());
    if let Some(invitation) = state.store.take_invitation(&digest).await? {
        return Some(invitation).filter(|i| i.expires_at > now_ms()).ok_or_else(invalid_token);
    }
    let legacy = take(state, token, OneTimeKind::Invitation).await?;
    let (Some(email), Some(role)) = (legacy.email, legacy.role) else {
        return Err(invalid_token());
    };
    Ok(Invitation {
        id: String::new(),
        tenant_id: legacy.tenant_id,
        digest,
        email,
        role,
        invited_by: legacy.account_id,
        created_at: 0,
        expires_at: legacy.expires_at,
    })
}

/// `POST /api/auth/accept-invitation`: creates the invited account in the inviting tenant,
/// if whoever sent the invitation is still a member allowed to grant its role. Anonymous, so
/// it spends the client's request budget, and a link that cannot be accepted is refused
/// before the password is hashed.
#[utoipa::path(post, path = "/api/auth/accept-invitation", tag = "auth", operation_id = "accept_invitation",
    request_body = AcceptBody,
    responses((status = 201, description = "The new member's account", body = AccountView),
              (status = 403, description = "`invitation_void`: its sender was removed or may no longer grant its role", body = ErrorBody),
              (status = 409, description = "`email_taken`", body = ErrorBody)))]
pub async fn accept(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    let body = body.into_inner();
    let name = crate::routes::validate_text("name", &body.name, 200)?;
    auth::validate_password(&body.password)?;
    check_invitation(&state, &body.token).await?;
    // Hashed before the link is spent: a busy server (429) leaves the invitation usable.
    let password = body.password;
    let password_hash =
        state.hashes.run(move |memory| auth::hash_password_in(memory, &password)).await??;
    let invitation = take_invitation(&state, &body.token).await?;
    let inviter = state.store.get_account(&invitation.tenant_id, &invitation.invited_by).await?;
    if !inviter.is_some_and(|inviter| role_may_grant(inviter.role, invitation.role)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invitation_void",
            "whoever sent this invitation can no longer grant its role; ask for a new one",
        ));
    }
    let account = Account {
        id: AccountId(uuid::Uuid::now_v7().simple().to_string()),
        tenant_id: invitation.tenant_id,
        email: invitation.email,
        name,
        company: None,
        account_type: AccountType::default(),
        role: invitation.role,
        password_hash,
        // The link arrived at this address: it is verified.
        email_verified: true,
        created_at: now_ms(),
        totp: None,
        session_epoch: 0,
        version: 0,
    };
    state.store.create_account(&account).await?;
    Ok(HttpResponse::Created().json(AccountView::from(&account)))
}

fn no_such_member() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such member")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    role: Role,
}

/// `PATCH /api/members/{id}`: changes a member's role.
#[utoipa::path(patch, path = "/api/members/{id}", tag = "members", operation_id = "set_member_role",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's account id")),
    request_body = RoleBody,
    responses((status = 200, description = "The member, with the new role (below admin, the API keys they minted are revoked)", body = AccountView),
              (status = 409, description = "`last_owner`, or `conflict` (the member kept changing; retry)", body = ErrorBody)))]
pub async fn set_role(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let id = AccountId(path.into_inner());
    let role = body.role;
    let me = acting_person(&caller)?;
    let tenant = &caller.tenant;
    let (member, ()) =
        parla_engine::accounts::modify_as(&state.engine, tenant, &me, &id, |acting, a| {
            let granter = acting_role(&caller, acting)?;
            let target = a.ok_or_else(no_such_member)?;
            grant_as(granter, role)?;
            grant_as(granter, target.role)?;
            target.role = role;
            Ok::<_, ApiError>(())
        })
        .await?;
    let member = member.ok_or_else(no_such_member)?;
    // Below admin, the keys they minted go (again on a retry, should this fail part-way).
    if member.role > Role::Admin {
        parla_engine::accounts::revoke_keys_minted_by(&state.engine, &caller.tenant, &id).await?;
    }
    Ok(HttpResponse::Ok().json(AccountView::from(&member)))
}

/// `DELETE /api/members/{id}`.
#[utoipa::path(delete, path = "/api/members/{id}", tag = "members", operation_id = "remove_member",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's account id")),
    responses((status = 204, description = "Removed; their sessions and the API keys they minted are revoked, their agent sockets closed"),
              (status = 409, description = "`last_owner`, or `conflict` (the member kept changing; retry)", body = ErrorBody)))]
pub async fn remove(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AccountId(path.into_inner());
    let me = acting_person(&caller)?;
    let removed =
        parla_engine::accounts::remove_as(&state.engine, &caller.tenant, &me, &id, |acting, t| {
            grant_as(acting_role(&caller, acting)?, t.role)
        })
        .await?;
    // The keys they minted go, also when a retry finds them already removed (this failed
    // part-way before): nothing else would revoke them.
    parla_engine::accounts::revoke_keys_minted_by(&state.engine, &caller.tenant, &id).await?;
    if !removed {
        return Err(no_such_member());
    }
    state.store.revoke_account_sessions(&caller.tenant, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
