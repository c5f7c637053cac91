//! Handlers of `/api/auth/*` and `/api/bots`. Thin: decode, call the store and the credential
//! primitives, encode; every error goes through [`ApiError`].

use std::sync::OnceLock;

use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, http::StatusCode, web};
use parla_engine::model::{
    Account, AccountId, AccountType, RefreshToken, Role, Tenant, TenantId, now_ms,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::{
    AdminState,
    auth::{self, AccessClaims},
    error::ApiError,
    views::{AccountView, BotList, ErrorBody, Registered, Session, TenantView},
};

/// Scopes an API key may hold.
pub const SCOPES: [&str; 5] =
    ["bots:read", "bots:write", "conversations:read", "conversations:write", "analytics:read"];

/// An authenticated caller: a person (access token) or an integration (API key).
#[derive(Debug)]
pub struct Caller {
    /// Every query of this request is scoped to it.
    pub tenant: TenantId,
    /// The person, when authenticated with an access token.
    pub account: Option<AccountId>,
    pub role: Role,
    /// `None` for a person (the role decides); an API key's scopes otherwise.
    pub scopes: Option<Vec<String>>,
    /// The session epoch of a person's access token: a change made on their behalf checks it
    /// again on the account as it is written (a password reset racing it ends it).
    pub session_epoch: Option<u64>,
    /// The API key's id, when authenticated with one.
    pub key: Option<String>,
}

impl Caller {
    /// Allows `scope` (e.g. `bots:write`): an API key must hold it; a person needs admin or
    /// owner for `…:write` scopes and any role for the others. (What agents write — taking
    /// part in conversations as `human` — is [`Caller::require_agent_work`]: deleting a
    /// transcript or posting as the visitor is not theirs.)
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        let allowed = match &self.scopes {
            Some(scopes) => scopes.iter().any(|s| s == scope),
            None => !scope.ends_with(":write") || self.role <= Role::Admin,
        };
        if allowed {
            return Ok(());
        }
        let (code, message) = match self.scopes {
            Some(_) => ("insufficient_scope", format!("this API key lacks the {scope} scope")),
            None => ("forbidden", format!("your role may not use {scope}")),
        };
        let mut e = ApiError::new(StatusCode::FORBIDDEN, code, message);
        e.details = json!({ "scope": scope });
        Err(e)
    }

    /// Allows an agent's work in a conversation (claim, reply as `human`, notes, transfer,
    /// resolve): an API key with `conversations:write`, or a person who is an agent, admin or
    /// owner.
    pub fn require_agent_work(&self) -> Result<(), ApiError> {
        match self.scopes {
            Some(_) => self.require("conversations:write"),
            None if self.role <= Role::Agent => Ok(()),
            None => {
                let mut e = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "your role may not take part in conversations",
                );
                e.details = json!({ "scope": "conversations:write" });
                Err(e)
            }
        }
    }

    /// Allows only a person with the admin or owner role (managing keys and members).
    pub fn require_admin_person(&self) -> Result<(), ApiError> {
        if self.scopes.is_none() && self.role <= Role::Admin {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs a signed-in admin or owner",
        ))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = caller(&req).await?;
            // For the audit log's middleware, once the handler has answered.
            let actor = match &caller.account {
                Some(account) => parla_domain::audit::AuditActor::Account(account.to_string()),
                None => {
                    parla_domain::audit::AuditActor::ApiKey(caller.key.clone().unwrap_or_default())
                }
            };
            use actix_web::HttpMessage;
            req.extensions_mut()
                .insert(crate::audit::Identity { tenant: caller.tenant.clone(), actor });
            Ok(caller)
        })
    }
}

/// How often an API key's `last_used_at` is written at most: one store write per key per
/// minute, not one per request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

async fn caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req.app_data::<web::Data<AdminState>>().ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })?;
    let missing =
        || ApiError::unauthorized("unauthenticated", "send Authorization: Bearer <token>");
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let token = header.strip_prefix("Bearer ").ok_or_else(missing)?.trim();
    if token.starts_with(API_KEY_PREFIX) {
        let key = state
            .store
            .api_key_by_digest(&auth::token_digest(token))
            .await?
            .filter(|k| !k.revoked)
            .ok_or_else(|| {
                ApiError::unauthorized("invalid_api_key", "unknown or revoked API key")
            })?;
        let now = now_ms();
        if key.last_used_at.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS) {
            // The last use alone: a revocation since the key was read stays.
            if let Err(e) = state.store.touch_api_key(&key.tenant_id, &key.id, now).await {
                tracing::warn!(error = %e, "could not record an API key's last use");
            }
        }
        return Ok(Caller {
            tenant: key.tenant_id,
            account: None,
            role: Role::Admin,
            scopes: Some(key.scopes),
            session_epoch: None,
            key: Some(key.id.to_string()),
        });
    }
    let (caller, _) = person(state, token).await?;
    Ok(caller)
}

/// Authenticates a person by access token: the caller, and the token's expiry (Unix seconds).
/// The account is read as it is now: removed members and reset passwords end their tokens at
/// once, and a role change applies from the next request.
pub async fn person(state: &AdminState, token: &str) -> Result<(Caller, u64), ApiError> {
    let claims: AccessClaims = state.tokens.verify(token)?;
    let (tenant, id) = (TenantId(claims.tid), AccountId(claims.sub));
    let account =
        state.store.get_account(&tenant, &id).await?.ok_or_else(|| {
            ApiError::unauthorized("token_invalid", "the account no longer exists")
        })?;
    if account.session_epoch != claims.sep {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "this session was ended (password reset); sign in again",
        ));
    }
    let caller = Caller {
        tenant,
        account: Some(id),
        role: account.role,
        scopes: None,
        session_epoch: Some(claims.sep),
        key: None,
    };
    Ok((caller, claims.exp))
}

use parla_domain::sessions::SessionRefused;

/// Members' sessions as the admin API issues them, for the agent socket
/// ([`parla_domain::sessions::MemberSessions`]): [`person`] behind the port.
#[derive(Debug, Clone)]
pub struct Sessions(pub std::sync::Arc<AdminState>);

#[async_trait::async_trait]
impl parla_domain::sessions::MemberSessions for Sessions {
    async fn member(
        &self,
        access_token: &str,
    ) -> Result<parla_domain::sessions::Member, SessionRefused> {
        use parla_domain::sessions::Refusal;
        match person(&self.0, access_token).await {
            Ok((Caller { tenant, account: Some(account), role, .. }, expires_at)) => {
                Ok(parla_domain::sessions::Member { tenant, account, role, expires_at })
            }
            Ok(_) => Err(SessionRefused {
                reason: Refusal::Invalid,
                message: "not a person's token".into(),
            }),
            Err(e) => {
                // The codes `person` answers with, told apart once, here where they are made.
                let reason = match e.code {
                    "token_invalid" => Refusal::Invalid,
                    "token_expired" => Refusal::Expired,
                    "token_revoked" => Refusal::Revoked,
                    _ => Refusal::Unavailable,
                };
                Err(SessionRefused { reason, message: e.message })
            }
        }
    }
}

/// API keys start with this, so they are told apart from access tokens.
pub const API_KEY_PREFIX: &str = "pk_";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(min_length = 12, max_length = 256)]
    password: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    company: Option<String>,
    account_type: Option<AccountType>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Checked before any hashing.
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(max_length = 256)]
    password: String,
    /// A TOTP code or a recovery code, when two-factor authentication is on.
    totp: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

pub(crate) fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.contains(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !valid {
        return Err(ApiError::invalid("email", "not a valid email address"));
    }
    Ok(email)
}

pub(crate) fn validate_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(field, format!("must be 1 to {max} characters")));
    }
    Ok(value.to_owned())
}

/// Spends one request of the caller's IP budget on the auth endpoints.
pub(crate) async fn check_ip(state: &AdminState, req: &HttpRequest) -> Result<(), ApiError> {
    match req.peer_addr() {
        Some(_) => Ok(state.limits.check_ip(client_ip(state, req)).await?),
        None => Ok(()),
    }
}

/// The client's address: the peer's, or through the operator's trusted proxies the one their
/// `X-Forwarded-For` names (unspecified when the transport has none, e.g. in-process tests).
pub(crate) fn client_ip(state: &AdminState, req: &HttpRequest) -> std::net::IpAddr {
    use parla_engine::clients::{client_ip, forwarded_for};
    let lines = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
    let forwarded = forwarded_for(lines);
    let peer = req.peer_addr().map(|peer| peer.ip());
    client_ip(peer, forwarded.as_deref(), &state.trusted_proxies)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
}

/// `POST /api/auth/register`: a new workspace (tenant) with this account as its owner.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", operation_id = "register",
    request_body = RegisterBody,
    responses((status = 201, description = "The owner and the new workspace; a verification link is mailed", body = Registered),
              (status = 409, description = "`email_taken`", body = ErrorBody)))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    check_ip(&state, &req).await?;
    let body = body.into_inner();
    let email = validate_email(&body.email)?;
    let name = validate_text("name", &body.name, 200)?;
    let company = body.company.as_deref().map(|c| validate_text("company", c, 200)).transpose()?;
    auth::validate_password(&body.password)?;
    let password = body.password;
    let password_hash =
        state.hashes.run(move |memory| auth::hash_password_in(memory, &password)).await??;
    let now = now_ms();
    let tenant = Tenant::new(
        TenantId(uuid::Uuid::now_v7().simple().to_string()),
        company.clone().unwrap_or_else(|| format!("{name}'s workspace")),
        now,
    );
    let account = Account {
        id: AccountId(uuid::Uuid::now_v7().simple().to_string()),
        tenant_id: tenant.id.clone(),
        email,
        name,
        company,
        account_type: body.account_type.unwrap_or_default(),
        role: Role::Owner,
        password_hash,
        email_verified: false,
        created_at: now,
        totp: None,
        session_epoch: 0,
        version: 0,
    };
    // The account first: it is what enforces email uniqueness.
    state.store.create_account(&account).await?;
    state.store.put_tenant(&tenant).await?;
    crate::recovery::send_link(
        &state,
        &account,
        parla_engine::model::OneTimeKind::EmailVerification,
    )
    .await?;
    Ok(HttpResponse::Created().json(Registered {
        account: AccountView::from(&account),
        tenant: TenantView::from(&tenant),
    }))
}

/// A PHC hash nobody's password matches, verified when the email is unknown so that a miss
/// costs the same time as a wrong password (no account enumeration by timing).
/// Computed once, on a hashing thread, in its memory.
fn dummy_hash(memory: &mut auth::HashMemory) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        auth::hash_password_in(memory, "parla-dummy-password-never-matches").unwrap_or_default()
    })
}

/// `POST /api/auth/login`. The email and the password's length are checked before any
/// hashing; the attempt counts against the backoff before it is hashed
/// ([`crate::limits::AuthLimits::begin_login`]); the hash waits for a permit
/// ([`crate::limits::HashGate`]).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", operation_id = "login",
    request_body = LoginBody,
    responses((status = 200, description = "Signed in", body = Session),
              (status = 401, description = "`invalid_credentials`, `totp_required` or `invalid_totp`", body = ErrorBody),
              (status = 409, description = "`conflict`: the account kept changing; retry", body = ErrorBody)))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    check_ip(&state, &req).await?;
    let body = body.into_inner();
    let email = validate_email(&body.email)?;
    if body.password.chars().count() > auth::MAX_PASSWORD_CHARS {
        let max = auth::MAX_PASSWORD_CHARS;
        return Err(ApiError::invalid("password", format!("at most {max} characters")));
    }
    let ip = client_ip(&state, &req);
    // Counted as a failure from here; given back below unless it was one.
    let attempt = state.limits.begin_login(&email, ip).await?;
    match verify_credentials(&state, &email, body.password, body.totp.as_deref()).await {
        Ok(Ok(account)) => {
            state.limits.login_succeeded(attempt).await;
            let family = uuid::Uuid::new_v4().simple().to_string();
            Ok(HttpResponse::Ok().json(issue_session(&state, &account, family).await?))
        }
        Ok(Err(wrong)) => {
            state.limits.login_failed(attempt);
            Err(wrong)
        }
        Err(untried) => {
            state.limits.login_abandoned(attempt).await;
            Err(untried)
        }
    }
}

/// Checks a login's password, then its second factor. `Ok(Ok)`: the account, signed in;
/// `Ok(Err)`: a wrong password or code (a failed attempt); `Err`: no guess was decided (the
/// hash was refused as busy, the store failed, or the password was right and the code is
/// still to come).
async fn verify_credentials(
    state: &AdminState,
    email: &str,
    password: String,
    code: Option<&str>,
) -> Result<Result<Account, ApiError>, ApiError> {
    let wrong = || ApiError::unauthorized("invalid_credentials", "wrong email or password");
    let account = state.store.account_by_email(email).await?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let matches = state
        .hashes
        .run(move |memory| match &hash {
            Some(hash) => auth::verify_password_in(memory, &password, hash),
            None => {
                let dummy = dummy_hash(memory);
                auth::verify_password_in(memory, &password, dummy)
            }
        })
        .await?;
    let Some(account) = account.filter(|_| matches) else { return Ok(Err(wrong())) };
    // The second factor is checked and consumed (compare-and-set) on the account as it is now:
    // a code used by a concurrent login is refused. A password changed since it was verified
    // ends the attempt.
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let (tenant, id, verified) = (&account.tenant_id, &account.id, &account.password_hash);
    let (current, factor) = parla_engine::accounts::modify(&state.engine, tenant, id, |a| {
        let a = a.filter(|a| a.password_hash == *verified);
        Ok::<_, ApiError>(a.map(|a| crate::totp::check_second_factor(a, code, now_secs)))
    })
    .await?;
    let (Some(account), Some(factor)) = (current, factor) else { return Ok(Err(wrong())) };
    match factor {
        crate::totp::SecondFactor::NotEnrolled | crate::totp::SecondFactor::Accepted => {
            Ok(Ok(account))
        }
        crate::totp::SecondFactor::Missing => Err(ApiError::unauthorized(
            "totp_required",
            "send the code from your authenticator app as `totp`",
        )),
        crate::totp::SecondFactor::Wrong => {
            Ok(Err(ApiError::unauthorized("invalid_totp", "wrong, expired or already used code")))
        }
    }
}

/// A new access token and a new refresh token in `family`.
async fn issue_session(
    state: &AdminState,
    account: &Account,
    family: String,
) -> Result<Session, ApiError> {
    let (id, tenant) = (&account.id, &account.tenant_id);
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let (access_token, claims) = state.tokens.issue(
        id.as_str(),
        tenant.as_str(),
        account.role,
        account.session_epoch,
        now_secs,
    )?;
    let (refresh_token, digest) = auth::new_opaque_token("prt_");
    let ttl_ms = i64::try_from(state.refresh_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    state
        .store
        .put_refresh_token(&RefreshToken {
            digest,
            account_id: id.clone(),
            tenant_id: tenant.clone(),
            family,
            expires_at: now_ms().saturating_add(ttl_ms),
            used: false,
            session_epoch: account.session_epoch,
        })
        .await?;
    Ok(Session {
        access_token,
        token_type: "Bearer",
        expires_in: claims.exp.saturating_sub(claims.iat),
        refresh_token,
    })
}

/// `POST /api/auth/refresh`: rotates the refresh token. A token used twice revokes its family.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", operation_id = "refresh",
    request_body = RefreshBody,
    responses((status = 200, description = "A new session; the refresh token sent is spent", body = Session),
              (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused` (the family is revoked) or `refresh_token_expired`", body = ErrorBody)))]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    check_ip(&state, &req).await?;
    let digest = auth::token_digest(body.refresh_token.trim());
    let Some(token) = state.store.use_refresh_token(&digest).await? else {
        return Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "unknown or revoked refresh token",
        ));
    };
    if token.used {
        // Someone else has this token too: end every session of the family.
        state.store.revoke_refresh_family(&token.family).await?;
        tracing::warn!(account = %token.account_id, "refresh token reused; family revoked");
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; sign in again",
        ));
    }
    if token.expires_at <= now_ms() {
        return Err(ApiError::unauthorized("refresh_token_expired", "sign in again"));
    }
    let Some(account) = state.store.get_account(&token.tenant_id, &token.account_id).await? else {
        return Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "the account no longer exists",
        ));
    };
    if account.session_epoch != token.session_epoch {
        // Issued before a password reset (stored after it revoked the others): no session.
        state.store.revoke_refresh_family(&token.family).await?;
        return Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "this session was ended (password reset); sign in again",
        ));
    }
    let session = issue_session(&state, &account, token.family).await?;
    Ok(HttpResponse::Ok().json(session))
}

/// `POST /api/auth/logout`: revokes the refresh token's family. Idempotent.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", operation_id = "logout",
    request_body = RefreshBody,
    responses((status = 204, description = "Signed out (also for an unknown token)")))]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: crate::body::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    check_ip(&state, &req).await?;
    let digest = auth::token_digest(body.refresh_token.trim());
    if let Some(token) = state.store.use_refresh_token(&digest).await? {
        state.store.revoke_refresh_family(&token.family).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/bots`: the caller's tenant's bots.
#[utoipa::path(get, path = "/api/bots", tag = "bots", operation_id = "list_bots",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's bots", body = BotList)))]
pub async fn list_bots(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:read")?;
    let bots = state.store.list_bots(&caller.tenant).await?;
    Ok(HttpResponse::Ok().json(BotList { data: bots }))
}
