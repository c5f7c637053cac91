//! The marketplace: `GET /api/marketplace/bots[/{id}]` (public, no sign-in, limited per
//! client address), a creator's listing of a bot (`PUT|GET|DELETE /api/bots/{id}/listing`) and
//! payouts onboarding (`POST|GET /api/marketplace/connect`), a buyer's
//! `POST /api/marketplace/subscribe`, and `POST /api/subscriptions/{id}/cancel`. Listing,
//! onboarding, buying and cancelling are for a signed-in admin or owner (they move money).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use parla_domain::marketplace::{ConnectAccount, Listing};
use parla_engine::marketplace::{ListingSpec, MarketBot, MarketError, MarketSort, PriceSpec};
use parla_engine::model::{BotCategory, BotId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{AdminState, billing::RedirectView, error::ApiError, routes::Caller};

impl From<MarketError> for ApiError {
    fn from(e: MarketError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            MarketError::Billing(b) => return b.into(),
            MarketError::UnknownPrice => return ApiError::invalid("price_id", message),
            MarketError::NoPrice => return ApiError::invalid("prices", message),
            MarketError::NotListed => (StatusCode::NOT_FOUND, "not_found"),
            MarketError::OwnBot => (StatusCode::CONFLICT, "own_bot"),
            MarketError::CreatorNotPayable => (StatusCode::CONFLICT, "creator_not_payable"),
            MarketError::PayoutsNotReady => (StatusCode::CONFLICT, "payouts_not_ready"),
            MarketError::Installed => (StatusCode::CONFLICT, "installed_bot"),
        };
        ApiError::new(status, code, message)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    /// In the currency's smallest unit: 50 to 1,000,000 (€0.50 to €10,000).
    amount: u64,
    /// ISO 4217, three letters.
    #[schema(min_length = 3, max_length = 3)]
    currency: String,
    /// `month` or `year`.
    interval: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingBody {
    /// Shown on the marketplace (needs a price and payouts onboarding done).
    #[serde(default)]
    public: bool,
    /// Defaults to the bot's name.
    #[schema(max_length = 120)]
    title: Option<String>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    description: String,
    /// Defaults to the bot's.
    category: Option<BotCategory>,
    /// Defaults to the bot's.
    language: Option<String>,
    /// Up to 6 https URLs of images.
    #[serde(default)]
    screenshots: Vec<String>,
    /// Up to 3.
    #[serde(default)]
    prices: Vec<PriceBody>,
    /// 0 to 90.
    #[serde(default)]
    trial_days: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseQuery {
    /// Words all found in the title or description.
    q: Option<String>,
    category: Option<BotCategory>,
    language: Option<String>,
    /// `rating` (default), `installs` or `newest`.
    sort: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarketList {
    pub data: Vec<MarketBot>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    #[serde(default)]
    bot_id: String,
    /// One of the listing's prices.
    #[serde(default)]
    price_id: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Cut now instead of at the period's end.
    #[serde(default)]
    immediately: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectView {
    /// Absent until onboarding starts.
    pub account: Option<ConnectAccount>,
}

/// Anonymous reads are limited per client address (IPv6 by /64).
fn limit_reads(state: &AdminState, req: &HttpRequest) -> Result<(), ApiError> {
    let ip = crate::routes::client_ip(state, req);
    if let Err(wait) = state.market_reads.check(&parla_engine::clients::client_group(ip)) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry shortly",
        );
        e.retry_after_secs = Some(wait.as_secs().max(1));
        return Err(e);
    }
    Ok(())
}

/// `GET /api/marketplace/bots`.
#[utoipa::path(get, path = "/api/marketplace/bots", tag = "marketplace", operation_id = "browse_marketplace",
    params(BrowseQuery),
    responses((status = 200, description = "Public listings, searched and sorted", body = MarketList)))]
pub async fn browse(
    state: web::Data<AdminState>,
    req: HttpRequest,
    query: web::Query<BrowseQuery>,
) -> Result<HttpResponse, ApiError> {
    limit_reads(&state, &req)?;
    let sort = match query.sort.as_deref() {
        None | Some("rating") => MarketSort::Rating,
        Some("installs") => MarketSort::Installs,
        Some("newest") => MarketSort::Newest,
        Some(_) => return Err(ApiError::invalid("sort", "rating, installs or newest")),
    };
    let q = query.q.as_deref().map(|q| q.chars().take(200).collect::<String>());
    let data = state
        .engine
        .billing()
        .browse(q.as_deref(), query.category, query.language.as_deref(), sort)
        .await?;
    Ok(HttpResponse::Ok().json(MarketList { data }))
}

/// `GET /api/marketplace/bots/{id}`.
#[utoipa::path(get, path = "/api/marketplace/bots/{id}", tag = "marketplace", operation_id = "get_market_bot",
    params(("id" = String, Path, description = "The listed bot")),
    responses((status = 200, description = "The listing", body = MarketBot)))]
pub async fn get(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    limit_reads(&state, &req)?;
    let found = state.engine.billing().market_listing(&BotId::from(path.as_str())).await?;
    Ok(HttpResponse::Ok().json(found))
}

fn checked(body: ListingBody, bot: &parla_engine::model::Bot) -> Result<ListingSpec, ApiError> {
    let title = match body.title {
        Some(t) => crate::routes::validate_text("title", &t, 120)?,
        None => bot.name.clone(),
    };
    if body.description.chars().count() > 4000 {
        return Err(ApiError::invalid("description", "at most 4000 characters"));
    }
    if body.screenshots.len() > 6
        || body
            .screenshots
            .iter()
            .any(|s| s.len() > 2000 || !s.starts_with("https://") || url::Url::parse(s).is_err())
    {
        return Err(ApiError::invalid("screenshots", "up to 6 https URLs"));
    }
    if body.prices.len() > 3 {
        return Err(ApiError::invalid("prices", "at most 3"));
    }
    let mut prices = Vec::new();
    for p in body.prices {
        let currency = p.currency.to_ascii_lowercase();
        if !(50..=1_000_000).contains(&p.amount) {
            return Err(ApiError::invalid(
                "prices",
                "an amount of 50 to 1,000,000 (smallest unit)",
            ));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ApiError::invalid("prices", "a three-letter ISO 4217 currency"));
        }
        if !matches!(p.interval.as_str(), "month" | "year") {
            return Err(ApiError::invalid("prices", "an interval of month or year"));
        }
        prices.push(PriceSpec { amount: p.amount, currency, interval: p.interval });
    }
    if body.trial_days > 90 {
        return Err(ApiError::invalid("trial_days", "0 to 90"));
    }
    let language = body.language.unwrap_or_else(|| bot.language.clone());
    if language.is_empty() || language.len() > 16 {
        return Err(ApiError::invalid("language", "a language tag such as en or it"));
    }
    Ok(ListingSpec {
        public: body.public,
        title,
        description: body.description,
        category: body.category.unwrap_or(bot.category),
        language,
        screenshots: body.screenshots,
        prices,
        trial_days: body.trial_days,
    })
}

/// `PUT /api/bots/{id}/listing`.
#[utoipa::path(put, path = "/api/bots/{id}/listing", tag = "marketplace", operation_id = "put_listing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot")),
    request_body = ListingBody,
    responses((status = 200, description = "The listing", body = Listing),
              (status = 409, description = "`payouts_not_ready` or `installed_bot`", body = crate::views::ErrorBody),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`: a price needs Stripe", body = crate::views::ErrorBody)))]
pub async fn put_listing(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<ListingBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let bot = crate::documents::owned_bot(&state, &caller, &path).await?;
    let spec = checked(body.into_inner(), &bot)?;
    let listing = state.engine.billing().put_listing(&bot, spec).await?;
    Ok(HttpResponse::Ok().json(listing))
}

/// `GET /api/bots/{id}/listing`.
#[utoipa::path(get, path = "/api/bots/{id}/listing", tag = "marketplace", operation_id = "get_listing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot")),
    responses((status = 200, description = "The bot's listing", body = Listing)))]
pub async fn get_listing(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:read")?;
    let bot = crate::documents::owned_bot(&state, &caller, &path).await?;
    let listing = state.store.get_listing(&bot.id).await?.filter(|l| l.tenant_id == caller.tenant);
    let listing = listing.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "this bot is not listed")
    })?;
    Ok(HttpResponse::Ok().json(listing))
}

/// `DELETE /api/bots/{id}/listing`.
#[utoipa::path(delete, path = "/api/bots/{id}/listing", tag = "marketplace", operation_id = "delete_listing",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot")),
    responses((status = 204, description = "Unlisted; installed copies keep working while paid")))]
pub async fn delete_listing(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let bot = crate::documents::owned_bot(&state, &caller, &path).await?;
    if !state.store.delete_listing(&caller.tenant, &bot.id).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "this bot is not listed"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/marketplace/connect`.
#[utoipa::path(post, path = "/api/marketplace/connect", tag = "marketplace", operation_id = "connect_onboarding",
    security(("bearer" = [])),
    responses((status = 200, description = "Stripe's onboarding page for the creator's payouts account", body = RedirectView),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`", body = crate::views::ErrorBody)))]
pub async fn connect(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let creator = crate::billing::signed_in(&state, &caller).await?;
    let back = crate::billing::return_url(&state);
    let url = state.engine.billing().connect_onboarding(&creator, &back).await?;
    Ok(HttpResponse::Ok().json(RedirectView { url }))
}

/// `GET /api/marketplace/connect`.
#[utoipa::path(get, path = "/api/marketplace/connect", tag = "marketplace", operation_id = "connect_status",
    security(("bearer" = [])),
    responses((status = 200, description = "The creator's payouts account as Stripe has it", body = ConnectView),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody)))]
pub async fn connect_status(
    state: web::Data<AdminState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    crate::billing::person(&caller)?;
    let account = state.engine.billing().connect_status(&caller.tenant).await?;
    Ok(HttpResponse::Ok().json(ConnectView { account }))
}

/// `POST /api/marketplace/subscribe`.
#[utoipa::path(post, path = "/api/marketplace/subscribe", tag = "marketplace", operation_id = "subscribe_bot",
    security(("bearer" = [])),
    request_body = SubscribeBody,
    responses((status = 200, description = "Stripe Checkout's URL; the bot is installed when Stripe confirms the subscription", body = RedirectView),
              (status = 404, description = "No such public listing", body = crate::views::ErrorBody),
              (status = 409, description = "`own_bot` or `creator_not_payable`", body = crate::views::ErrorBody),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`", body = crate::views::ErrorBody)))]
pub async fn subscribe(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<SubscribeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    if body.bot_id.is_empty() {
        return Err(ApiError::invalid("bot_id", "required"));
    }
    let buyer = crate::billing::signed_in(&state, &caller).await?;
    let back = crate::billing::return_url(&state);
    let bot = BotId::from(body.bot_id.as_str());
    let url = state.engine.billing().subscribe_bot(&buyer, &bot, &body.price_id, &back).await?;
    Ok(HttpResponse::Ok().json(RedirectView { url }))
}

/// `POST /api/subscriptions/{id}/cancel`.
#[utoipa::path(post, path = "/api/subscriptions/{id}/cancel", tag = "billing", operation_id = "cancel_subscription",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription (`sub_…`)")),
    request_body = CancelBody,
    responses((status = 202, description = "Asked of Stripe; the subscription changes when its event arrives", body = parla_domain::billing::Subscription),
              (status = 502, description = "`payment_provider_refused` or `payment_provider_unavailable`", body = crate::views::ErrorBody),
              (status = 503, description = "`billing_not_configured`", body = crate::views::ErrorBody)))]
pub async fn cancel(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: Option<crate::body::Json<CancelBody>>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let immediately = body.is_some_and(|b| b.immediately);
    let found = state.engine.billing().cancel(&caller.tenant, &path, immediately).await?;
    let sub = found
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such subscription"))?;
    Ok(HttpResponse::Accepted().json(sub))
}
