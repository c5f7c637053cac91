//! `/api/members`: a tenant's people and their roles, and invitations by email.
//!
//! Rules: any signed-in member may list members; admins and owners invite and change roles;
//! only an owner may make or unmake an owner; the last owner can be neither demoted nor removed.

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::model::{
    Account, AccountId, AccountType, OneTimeKind, OneTimeToken, Role, now_ms,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    AdminState, auth,
    error::ApiError,
    recovery::{VERIFY_TTL_MS, take},
    routes::Caller,
    views::{AccountView, ErrorBody, Invited, MemberList},
};

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// May `caller` give or take away `role`?
fn may_grant(caller: &Caller, role: Role) -> Result<(), ApiError> {
    caller.require_admin_person()?;
    if role == Role::Owner && caller.role != Role::Owner {
        return Err(forbidden("only an owner may grant or remove the owner role"));
    }
    Ok(())
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
    responses((status = 202, description = "The invitation is mailed", body = Invited)))]
pub async fn invite(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    may_grant(&caller, body.role)?;
    let email = crate::routes::validate_email(&body.email)?;
    let (token, digest) = auth::new_opaque_token("ott_");
    state
        .store
        .put_one_time_token(&OneTimeToken {
            digest,
            kind: OneTimeKind::Invitation,
            account_id: caller.account.clone().unwrap_or(AccountId(String::new())),
            tenant_id: caller.tenant.clone(),
            expires_at: now_ms() + VERIFY_TTL_MS,
            email: Some(email.clone()),
            role: Some(body.role),
        })
        .await?;
    let body_text = format!(
        "You are invited to a Parla workspace.\n\nopen {}/accept-invitation?token={token}\nor send this token to /api/auth/accept-invitation: {token}\n",
        state.public_url.get().map_or("", String::as_str)
    );
    crate::recovery::mail(&state, &email, "Join a Parla workspace", body_text).await?;
    Ok(HttpResponse::Accepted().json(Invited { email, role: body.role }))
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

/// `POST /api/auth/accept-invitation`: creates the invited account in the inviting tenant.
#[utoipa::path(post, path = "/api/auth/accept-invitation", tag = "auth", operation_id = "accept_invitation",
    request_body = AcceptBody,
    responses((status = 201, description = "The new member's account", body = AccountView),
              (status = 409, description = "`email_taken`", body = ErrorBody)))]
pub async fn accept(
    state: web::Data<AdminState>,
    body: crate::body::Json<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = crate::routes::validate_text("name", &body.name, 200)?;
    auth::validate_password(&body.password)?;
    let invitation = take(&state, &body.token, OneTimeKind::Invitation).await?;
    let (Some(email), Some(role)) = (invitation.email, invitation.role) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "this link is invalid, used or expired",
        ));
    };
    let password = body.password;
    let password_hash = crate::routes::blocking(move || auth::hash_password(&password)).await??;
    let account = Account {
        id: AccountId(uuid::Uuid::now_v7().simple().to_string()),
        tenant_id: invitation.tenant_id,
        email,
        name,
        company: None,
        account_type: AccountType::default(),
        role,
        password_hash,
        // The link arrived at this address: it is verified.
        email_verified: true,
        created_at: now_ms(),
        totp: None,
        session_epoch: 0,
    };
    state.store.create_account(&account).await?;
    Ok(HttpResponse::Created().json(AccountView::from(&account)))
}

async fn member(state: &AdminState, caller: &Caller, id: &str) -> Result<Account, ApiError> {
    state
        .store
        .get_account(&caller.tenant, &AccountId(id.to_owned()))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such member"))
}

async fn owners(state: &AdminState, caller: &Caller) -> Result<usize, ApiError> {
    let members = state.store.list_accounts(&caller.tenant).await?;
    Ok(members.iter().filter(|m| m.role == Role::Owner).count())
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
    responses((status = 200, description = "The member, with the new role", body = AccountView),
              (status = 409, description = "`last_owner`", body = ErrorBody)))]
pub async fn set_role(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let mut target = member(&state, &caller, &path).await?;
    may_grant(&caller, body.role)?;
    may_grant(&caller, target.role)?;
    if target.role == Role::Owner && body.role != Role::Owner && owners(&state, &caller).await? <= 1
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_owner",
            "a workspace keeps at least one owner",
        ));
    }
    target.role = body.role;
    state.store.update_account(&target).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&target)))
}

/// `DELETE /api/members/{id}`.
#[utoipa::path(delete, path = "/api/members/{id}", tag = "members", operation_id = "remove_member",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The member's account id")),
    responses((status = 204, description = "Removed; their sessions are revoked"),
              (status = 409, description = "`last_owner`", body = ErrorBody)))]
pub async fn remove(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = member(&state, &caller, &path).await?;
    may_grant(&caller, target.role)?;
    if target.role == Role::Owner && owners(&state, &caller).await? <= 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_owner",
            "a workspace keeps at least one owner",
        ));
    }
    state.store.delete_account(&caller.tenant, &target.id).await?;
    state.store.revoke_account_sessions(&caller.tenant, &target.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
