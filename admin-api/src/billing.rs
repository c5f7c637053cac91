//! `/api/billing/*` and `/api/subscriptions`: the workspace's plan, its usage against the
//! plan's limits, checkout and the customer portal; and `POST /v1/billing/stripe/webhook`, where
//! Stripe's events arrive. Any member reads the plans, the usage and the subscriptions; a
//! signed-in admin or owner buys and opens the portal (people only: API keys see none of it).
//!
//! The webhook checks the signature over the raw body before reading it, stores the event
//! (once per id) and answers 200; the engine's billing applies it from the store's queue.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use parla_domain::billing::{PaymentError, Plan, Subscription};
use parla_engine::billing::{BillingError, UsageReport};
use parla_engine::model::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AdminState, error::ApiError, routes::Caller};

/// The largest webhook body accepted (Stripe's events are a few KiB).
pub(crate) const MAX_EVENT_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    /// From the smallest.
    pub data: Vec<Plan>,
    /// The plan of a workspace without a paid subscription.
    pub default_plan: String,
    /// Whether plans can be bought on this server (Stripe is configured).
    pub checkout_available: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub data: Vec<Subscription>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The plan's id (`GET /api/billing/plans`). (Defaults to empty, refused with a 422 after
    /// the caller's rights are checked.)
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    plan: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedirectView {
    /// Where to send the browser (Stripe's page).
    pub url: String,
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::UnknownPlan(_) => ApiError::invalid("plan", e.to_string()),
            BillingError::NotForSale(_) => ApiError::invalid("plan", e.to_string()),
            BillingError::NoCustomer => {
                ApiError::new(StatusCode::CONFLICT, "no_billing_account", e.to_string())
            }
            BillingError::Payments(p) => p.into(),
            BillingError::Engine(e) => e.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "billing_not_configured",
                "payments are not set up on this server",
            ),
            PaymentError::Refused(detail) => {
                tracing::warn!(%detail, "Stripe refused a request");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_provider_refused",
                    "the payment provider refused the request",
                )
            }
            PaymentError::Unavailable(detail) => {
                tracing::warn!(%detail, "Stripe unavailable");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_provider_unavailable",
                    "the payment provider could not be reached; retry",
                )
            }
            PaymentError::BadSignature(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_signature", why)
            }
            PaymentError::BadPayload(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_payload", why)
            }
        }
    }
}

/// Where checkout and the portal come back to: the configured URL, else this server's billing
/// page.
pub(crate) fn return_url(state: &AdminState) -> String {
    match &state.billing_return_url {
        url if !url.is_empty() => url.clone(),
        _ => format!("{}/console#billing", state.public_url.get().map_or("", String::as_str)),
    }
}

/// Billing is for the workspace's people (any role reads), not for API keys.
pub(crate) fn person(caller: &Caller) -> Result<(), ApiError> {
    match caller.account {
        Some(_) => Ok(()),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in as a person")),
    }
}

/// The signed-in person's account.
pub(crate) async fn signed_in(
    state: &AdminState,
    caller: &Caller,
) -> Result<parla_engine::model::Account, ApiError> {
    let id = caller
        .account
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in as a person"))?;
    state
        .store
        .get_account(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("token_invalid", "the account no longer exists"))
}

/// `GET /api/billing/plans`.
#[utoipa::path(get, path = "/api/billing/plans", tag = "billing", operation_id = "list_plans",
    security(("bearer" = [])),
    responses((status = 200, description = "The plans, from the smallest", body = PlanList)))]
pub async fn plans(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    person(&caller)?;
    let billing = state.engine.billing();
    Ok(HttpResponse::Ok().json(PlanList {
        data: billing.plans().plans.clone(),
        default_plan: billing.plans().default_plan.clone(),
        checkout_available: billing.payments().is_ok(),
    }))
}

/// `GET /api/billing/usage`.
#[utoipa::path(get, path = "/api/billing/usage", tag = "billing", operation_id = "billing_usage",
    security(("bearer" = [])),
    responses((status = 200, description = "This month's use of every limit of the plan in force", body = UsageReport)))]
pub async fn usage(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    person(&caller)?;
    let report = state.engine.billing().usage(&caller.tenant).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// `POST /api/billing/checkout`.
#[utoipa::path(post, path = "/api/billing/checkout", tag = "billing", operation_id = "billing_checkout",
    security(("bearer" = [])),
    request_body = CheckoutBody,
    responses((status = 200, description = "Stripe Checkout's URL; the plan changes when Stripe confirms the subscription", body = RedirectView),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`", body = crate::views::ErrorBody)))]
pub async fn checkout(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<CheckoutBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let buyer = signed_in(&state, &caller).await?;
    let url = state.engine.billing().checkout_plan(&buyer, &body.plan, &return_url(&state)).await?;
    Ok(HttpResponse::Ok().json(RedirectView { url }))
}

/// `POST /api/billing/portal`.
#[utoipa::path(post, path = "/api/billing/portal", tag = "billing", operation_id = "billing_portal",
    security(("bearer" = [])),
    responses((status = 200, description = "The Stripe Customer Portal's URL", body = RedirectView),
              (status = 409, description = "`no_billing_account`: nothing bought yet", body = crate::views::ErrorBody),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`", body = crate::views::ErrorBody)))]
pub async fn portal(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let url = state.engine.billing().portal(&caller.tenant, &return_url(&state)).await?;
    Ok(HttpResponse::Ok().json(RedirectView { url }))
}

/// `GET /api/subscriptions`.
#[utoipa::path(get, path = "/api/subscriptions", tag = "billing", operation_id = "list_subscriptions",
    security(("bearer" = [])),
    responses((status = 200, description = "The workspace's subscriptions (its plan, marketplace bots), any status", body = SubscriptionList)))]
pub async fn subscriptions(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    person(&caller)?;
    let mut data = state.store.list_subscriptions(&caller.tenant).await?;
    data.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
    Ok(HttpResponse::Ok().json(SubscriptionList { data }))
}

/// `POST /v1/billing/stripe/webhook`: Stripe's events, signed.
pub async fn webhook(
    state: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "an event is at most 256 KiB",
        ));
    }
    let signature =
        req.headers().get("stripe-signature").and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_signature", "no Stripe-Signature header")
        })?;
    let billing = state.engine.billing();
    let event = billing.payments()?.verify(&body, signature, now_ms() / 1000)?;
    let payload = std::str::from_utf8(&body).unwrap_or_default();
    let new = billing.receive(&event, payload).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "received": true, "duplicate": !new })))
}
