//! Email verification and password reset, with single-use expiring tokens sent by mail.
//! `forgot-password` answers the same whether the email exists or not (no enumeration).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use parla_engine::model::{Account, OneTimeKind, OneTimeToken, now_ms};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    AdminState, auth,
    error::ApiError,
    routes::Caller,
    views::{Accepted, AccountView},
};

/// Lifetimes: a reset link is short-lived, a verification link lasts a few days.
const RESET_TTL_MS: i64 = 30 * 60 * 1000;
pub(crate) const VERIFY_TTL_MS: i64 = 3 * 24 * 60 * 60 * 1000;

/// Creates a token of `kind` for `account` and mails its link.
pub async fn send_link(
    state: &AdminState,
    account: &Account,
    kind: OneTimeKind,
) -> Result<(), ApiError> {
    let (token, digest) = auth::new_opaque_token("ott_");
    let ttl = match kind {
        OneTimeKind::PasswordReset => RESET_TTL_MS,
        OneTimeKind::EmailVerification | OneTimeKind::Invitation => VERIFY_TTL_MS,
    };
    state
        .store
        .put_one_time_token(&OneTimeToken {
            digest,
            kind,
            account_id: account.id.clone(),
            tenant_id: account.tenant_id.clone(),
            expires_at: now_ms() + ttl,
            email: None,
            role: None,
        })
        .await?;
    let (subject, path) = match kind {
        OneTimeKind::PasswordReset => ("Reset your Parla password", "reset-password"),
        OneTimeKind::EmailVerification => ("Verify your Parla email", "verify-email"),
        OneTimeKind::Invitation => ("Join a Parla workspace", "accept-invitation"),
    };
    let body = format!(
        "Hello {},\n\nopen {}/console#{path}?token={token}\nor send this token to /api/auth/{path}: {token}\n",
        account.name,
        state.public_url.get().map_or("", String::as_str)
    );
    mail(state, &account.email, subject, body).await
}

/// Sends a mail through the relay, or queues it in the outbox.
pub(crate) async fn mail(
    state: &AdminState,
    to: &str,
    subject: &'static str,
    body: String,
) -> Result<(), ApiError> {
    state.mailer.send(to, subject, &body).await.map(drop).map_err(|e| {
        tracing::error!(error = %e, "could not send or queue a mail");
        internal()
    })
}

fn internal() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

/// The refusal of a missing, used, expired or wrong-kind link, whichever it is.
pub(crate) fn invalid_token() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", "this link is invalid, used or expired")
}

/// Takes a token of `kind`; refuses a missing, used, expired or wrong-kind one alike.
pub(crate) async fn take(
    state: &AdminState,
    token: &str,
    kind: OneTimeKind,
) -> Result<OneTimeToken, ApiError> {
    let taken = state.store.take_one_time_token(&auth::token_digest(token.trim())).await?;
    taken.filter(|t| t.kind == kind && t.expires_at > now_ms()).ok_or_else(invalid_token)
}

/// Refuses, as [`take`] would, a token of `kind` without taking it: one store read, so a
/// made-up link is turned away before any password is hashed for it.
pub(crate) async fn peek(
    state: &AdminState,
    token: &str,
    kind: OneTimeKind,
) -> Result<OneTimeToken, ApiError> {
    let found = state.store.one_time_token_by_digest(&auth::token_digest(token.trim())).await?;
    found.filter(|t| t.kind == kind && t.expires_at > now_ms()).ok_or_else(invalid_token)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    token: String,
    #[schema(min_length = 12, max_length = 256)]
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    token: String,
}

/// `POST /api/auth/forgot-password`: always 202.
#[utoipa::path(post, path = "/api/auth/forgot-password", tag = "auth", operation_id = "forgot_password",
    request_body = EmailBody,
    responses((status = 202, description = "A reset link is mailed if the account exists", body = Accepted)))]
pub async fn forgot_password(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    if let Some(account) = state.store.account_by_email(body.email.trim()).await? {
        send_link(&state, &account, OneTimeKind::PasswordReset).await?;
    }
    Ok(HttpResponse::Accepted().json(Accepted { status: "if the account exists, a link was sent" }))
}

/// `POST /api/auth/reset-password`.
/// The new hash and the next session epoch are written compare-and-set on the account as it
/// is then ([`parla_engine::accounts::modify`]): no concurrent change (a TOTP enrolment with a
/// stolen token) can write the old ones back.
#[utoipa::path(post, path = "/api/auth/reset-password", tag = "auth", operation_id = "reset_password",
    request_body = ResetBody,
    responses((status = 204, description = "The password is changed; every session is revoked"),
              (status = 409, description = "`conflict`: the account kept changing; ask for a new link", body = crate::views::ErrorBody)))]
pub async fn reset_password(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<ResetBody>,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    let body = body.into_inner();
    auth::validate_password(&body.password)?;
    // A made-up, used or expired link costs a read, not a hash: anonymous clients cannot keep
    // the hashing threads (and every login waiting for one) busy with bogus tokens.
    peek(&state, &body.token, OneTimeKind::PasswordReset).await?;
    // Hashed before the link is spent: a busy server (429) leaves the link usable.
    let password = body.password;
    let password_hash =
        state.hashes.run(move |memory| auth::hash_password_in(memory, &password)).await??;
    let token = take(&state, &body.token, OneTimeKind::PasswordReset).await?;
    let (tenant, id) = (&token.tenant_id, &token.account_id);
    parla_engine::accounts::modify(&state.engine, tenant, id, |account| {
        let account = account.ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", "the account no longer exists")
        })?;
        account.password_hash.clone_from(&password_hash);
        // Ends every access token issued before; the refresh tokens are revoked below.
        account.session_epoch += 1;
        Ok::<_, ApiError>(())
    })
    .await?;
    // Whoever knew the old password must not keep a session.
    state.store.revoke_account_sessions(tenant, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/auth/verify-email`.
#[utoipa::path(post, path = "/api/auth/verify-email", tag = "auth", operation_id = "verify_email",
    request_body = TokenBody,
    responses((status = 204, description = "The email is verified")))]
pub async fn verify_email(
    state: web::Data<AdminState>,
    body: crate::body::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let token = take(&state, &body.token, OneTimeKind::EmailVerification).await?;
    let (tenant, id) = (&token.tenant_id, &token.account_id);
    parla_engine::accounts::modify(&state.engine, tenant, id, |account| {
        if let Some(account) = account {
            account.email_verified = true;
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/auth/resend-verification`: mails the signed-in person a new verification link
/// (the earlier ones keep working until they expire). Spends the client's auth budget, so it
/// cannot be used to flood a mailbox.
#[utoipa::path(post, path = "/api/auth/resend-verification", tag = "auth", operation_id = "resend_verification",
    security(("bearer" = [])),
    responses((status = 202, description = "A new link is mailed", body = Accepted),
              (status = 409, description = "`already_verified`", body = crate::views::ErrorBody),
              (status = 429, description = "`rate_limited`: the client's auth budget is spent", body = crate::views::ErrorBody)))]
pub async fn resend_verification(
    req: HttpRequest,
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    let account = signed_in(&state, &caller).await?;
    if account.email_verified {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_verified",
            "this email address is already verified",
        ));
    }
    send_link(&state, &account, OneTimeKind::EmailVerification).await?;
    Ok(HttpResponse::Accepted().json(Accepted { status: "a new link was sent" }))
}

/// The caller's own account: refused for an API key, or when the account is gone.
async fn signed_in(state: &AdminState, caller: &Caller) -> Result<Account, ApiError> {
    let Some(id) = caller.account.as_ref() else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in as a person"));
    };
    state
        .store
        .get_account(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("token_invalid", "the account no longer exists"))
}

/// `GET /api/auth/me`: the signed-in person's account.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", operation_id = "me",
    security(("bearer" = [])),
    responses((status = 200, description = "The signed-in person", body = AccountView)))]
pub async fn me(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let account = signed_in(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(&account)))
}
