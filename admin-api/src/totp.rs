//! Two-factor authentication with TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step of
//! clock skew — what authenticator apps expect). Enrol, confirm with a first code, then every
//! login needs a code or one of ten single-use recovery codes. A code is accepted once.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use parla_engine::model::{Account, TotpState};
use serde::Deserialize;
use totp_rs::{Builder, Secret, Totp};
use utoipa::ToSchema;

use crate::{
    AdminState, auth,
    error::ApiError,
    routes::Caller,
    views::{ErrorBody, TotpEnabled, TotpEnrollment},
};

/// Recovery codes issued at confirmation.
const RECOVERY_CODES: usize = 10;

fn totp_for(email: &str, secret_base32: &str) -> Result<Totp, ApiError> {
    let internal =
        || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
    let secret = Secret::try_from_base32(secret_base32).map_err(|_| internal())?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(email)
        .with_issuer(Some("Parla"))
        .build()
        .map_err(|_| internal())
}

/// What a login's second factor turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum SecondFactor {
    /// The account has no TOTP: nothing needed.
    NotEnrolled,
    /// A fresh code or an unused recovery code: `account` is updated (step or code consumed).
    Accepted,
    Missing,
    Wrong,
}

/// Checks `code` against `account`'s TOTP at `now_secs`, consuming what it uses.
pub fn check_second_factor(
    account: &mut Account,
    code: Option<&str>,
    now_secs: u64,
) -> SecondFactor {
    let Some(state) = account.totp.as_mut().filter(|t| t.enabled) else {
        return SecondFactor::NotEnrolled;
    };
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return SecondFactor::Missing;
    };
    if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
        let Ok(totp) = totp_for(&account.email, &state.secret_base32) else {
            return SecondFactor::Wrong;
        };
        return match totp.check(code, now_secs) {
            Some(step) if step > state.last_step => {
                state.last_step = step;
                SecondFactor::Accepted
            }
            _ => SecondFactor::Wrong, // Wrong, or already used (replay).
        };
    }
    let digest = auth::token_digest(&code.to_lowercase());
    match state.recovery_digests.iter().position(|d| *d == digest) {
        Some(i) => {
            state.recovery_digests.remove(i);
            SecondFactor::Accepted
        }
        None => SecondFactor::Wrong,
    }
}

/// Changes the signed-in person's own account with `change`, compare-and-set
/// ([`parla_engine::accounts::modify`]), on the account as it is when written: if it is gone,
/// or its sessions ended (a password reset) since the caller's token was issued, nothing is
/// written and the token is refused, as the next request would refuse it.
async fn change_my_account<T>(
    state: &AdminState,
    caller: &Caller,
    mut change: impl FnMut(&mut Account) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(id) = caller.account.as_ref() else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in as a person"));
    };
    let (_, changed) = parla_engine::accounts::modify(&state.engine, &caller.tenant, id, |a| {
        let Some(a) = a else {
            return Err(ApiError::unauthorized("token_invalid", "the account no longer exists"));
        };
        if caller.session_epoch != Some(a.session_epoch) {
            return Err(ApiError::unauthorized(
                "token_revoked",
                "this session was ended (password reset); sign in again",
            ));
        }
        change(a)
    })
    .await?;
    Ok(changed)
}

/// `POST /api/auth/totp/enroll`: a new secret for the signed-in person, not yet required.
#[utoipa::path(post, path = "/api/auth/totp/enroll", tag = "auth", operation_id = "totp_enroll",
    security(("bearer" = [])),
    responses((status = 200, description = "The secret to load into an authenticator app", body = TotpEnrollment),
              (status = 409, description = "`totp_already_enabled`, or `conflict` (the account kept changing; retry)", body = ErrorBody)))]
pub async fn enroll(
    req: HttpRequest,
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    let bytes: [u8; 20] = rand::random();
    let secret_base32 = Secret::from(bytes).to_base32();
    let url = change_my_account(&state, &caller, |account| {
        if account.totp.as_ref().is_some_and(|t| t.enabled) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "totp_already_enabled",
                "two-factor authentication is already on",
            ));
        }
        let url = totp_for(&account.email, &secret_base32)?.to_url().map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        })?;
        account.totp = Some(TotpState {
            secret_base32: secret_base32.clone(),
            enabled: false,
            last_step: 0,
            recovery_digests: Vec::new(),
        });
        Ok(url)
    })
    .await?;
    Ok(HttpResponse::Ok().json(TotpEnrollment { otpauth_url: url, secret: secret_base32 }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    code: String,
}

/// `POST /api/auth/totp/confirm`: the first valid code turns TOTP on and returns the recovery
/// codes, once.
#[utoipa::path(post, path = "/api/auth/totp/confirm", tag = "auth", operation_id = "totp_confirm",
    security(("bearer" = [])),
    request_body = ConfirmBody,
    responses((status = 200, description = "TOTP is on; the recovery codes are shown once", body = TotpEnabled),
              (status = 409, description = "`totp_not_enrolling`, or `conflict` (the account kept changing; retry)", body = ErrorBody)))]
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<ConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    crate::routes::check_ip(&state, &req).await?;
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 5] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    let now_secs = u64::try_from(parla_engine::model::now_ms() / 1000).unwrap_or(0);
    change_my_account(&state, &caller, |account| {
        let email = account.email.clone();
        let Some(totp_state) = account.totp.as_mut().filter(|t| !t.enabled) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "totp_not_enrolling",
                "call /api/auth/totp/enroll first",
            ));
        };
        let totp = totp_for(&email, &totp_state.secret_base32)?;
        let Some(step) = totp.check(body.code.trim(), now_secs) else {
            return Err(ApiError::invalid(
                "code",
                "this code does not match; check the device's clock",
            ));
        };
        totp_state.enabled = true;
        totp_state.last_step = step;
        totp_state.recovery_digests = codes.iter().map(|c| auth::token_digest(c)).collect();
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(TotpEnabled { enabled: true, recovery_codes: codes }))
}
