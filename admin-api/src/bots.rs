//! `/api/bots` and `/api/bots/{id}/intents`: a tenant's bots and their intents.
//!
//! Reads need any role; writes need admin or owner. A bot of another tenant is answered 404,
//! exactly like a missing one, so ids cannot be probed. A change to a bot or its intents is
//! announced to the engine, and live conversations use it from their next reply.

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_domain::billing::Limit;
use parla_engine::model::{
    Appearance, Bot, BotCategory, BotConfig, BotId, BotIntegration, BotStatus, Intent,
    IntentAction, IntentResponse, now_ms,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    AdminState,
    error::ApiError,
    routes::{Caller, validate_text as text},
    views::{ErrorBody, IntentList, IntentView},
};

fn require_writer(caller: &Caller) -> Result<(), ApiError> {
    caller.require("bots:write")
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

/// An optional text: empty or blank clears it (a form sends what its field holds).
fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    value.filter(|v| !v.trim().is_empty()).map(|v| text(field, v, max)).transpose()
}

/// The caller's bot `id` (404 for another tenant's), after checking the caller may read bots.
async fn owned_bot(state: &AdminState, caller: &Caller, id: &str) -> Result<Bot, ApiError> {
    caller.require("bots:read")?;
    state
        .store
        .get_bot(&caller.tenant, &BotId(id.to_owned()))
        .await?
        .ok_or_else(|| not_found("bot"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Empty or blank: the bot waits for the visitor to speak first.
    #[schema(max_length = 1000)]
    welcome_message: Option<String>,
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    fallback_message: Option<String>,
    /// Empty or blank clears it.
    #[schema(max_length = 2000)]
    personality: Option<String>,
    /// Days this bot's conversations are kept (instead of the workspace's policy); `null`
    /// follows the workspace again. Changed by a signed-in admin or owner only (403 otherwise),
    /// like the workspace's policy.
    #[serde(default, deserialize_with = "crate::workspace::present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 36500)]
    retention_days: Option<Option<u32>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: Option<String>,
    /// Empty or blank clears it.
    #[schema(max_length = 2000)]
    description: Option<String>,
    category: Option<BotCategory>,
    /// A language tag such as `en` or `pt-BR`.
    #[schema(pattern = "^[A-Za-z0-9-]{2,10}$")]
    language: Option<String>,
    #[serde(default, deserialize_with = "object")]
    config: Option<ConfigBody>,
    /// Replaces the widget's appearance.
    #[serde(default, deserialize_with = "object")]
    appearance: Option<Appearance>,
    /// Replaces the embedding settings (allowed origins, at most 50).
    #[serde(default, deserialize_with = "object")]
    integration: Option<BotIntegration>,
}

/// A JSON object or null, nothing else: serde alone also takes an array for a struct (its fields
/// in order), so `"appearance": [null, null]` would pass for an empty appearance.
fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value(v).map(Some).map_err(D::Error::custom)
        }
        Some(_) => Err(D::Error::custom("expected an object")),
    }
}

/// Applies the fields present in `body` to `bot`, validating each.
fn apply(bot: &mut Bot, body: BotBody) -> Result<(), ApiError> {
    if let Some(name) = body.name {
        bot.name = text("name", &name, 200)?;
    }
    if let Some(description) = body.description {
        bot.description = optional_text("description", Some(&description), 2000)?;
    }
    if let Some(category) = body.category {
        bot.category = category;
    }
    if let Some(language) = body.language {
        let ok = (2..=10).contains(&language.len())
            && language.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ApiError::invalid("language", "a language tag such as en or pt-BR"));
        }
        bot.language = language;
    }
    if let Some(config) = body.config {
        if let Some(welcome) = config.welcome_message {
            bot.config.welcome_message = if welcome.trim().is_empty() {
                None
            } else {
                Some(text("config.welcome_message", &welcome, 1000)?)
            };
        }
        if let Some(fallback) = config.fallback_message {
            bot.config.fallback_message = text("config.fallback_message", &fallback, 1000)?;
        }
        if let Some(personality) = config.personality {
            bot.config.personality = optional_text("config.personality", Some(&personality), 2000)?;
        }
        if let Some(days) = config.retention_days {
            crate::workspace::check_days("config.retention_days", days)?;
            bot.config.retention_days = days;
        }
    }
    if let Some(appearance) = body.appearance {
        bot.appearance = checked_appearance(appearance)?;
    }
    if let Some(integration) = body.integration {
        if integration.allowed_origins.len() > 50 {
            return Err(ApiError::invalid("integration.allowed_origins", "at most 50"));
        }
        let origins = integration
            .allowed_origins
            .iter()
            .map(|o| canonical_origin(o))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid(
                    "integration.allowed_origins",
                    "each an origin: scheme://host[:port], no path",
                )
            })?;
        bot.integration = BotIntegration { allowed_origins: origins };
    }
    Ok(())
}

fn checked_appearance(mut appearance: Appearance) -> Result<Appearance, ApiError> {
    if let Some(title) = appearance.title.take() {
        appearance.title = Some(text("appearance.title", &title, 100)?);
    }
    if let Some(color) = &appearance.color {
        let hex = color.strip_prefix('#').unwrap_or_default();
        if !matches!(hex.len(), 3 | 6) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::invalid("appearance.color", "#rgb or #rrggbb"));
        }
    }
    let bad_url = |url: &String| {
        !url.starts_with("https://") || url.len() > 2048 || url.contains(char::is_whitespace)
    };
    if appearance.avatar_url.as_ref().is_some_and(bad_url) {
        return Err(ApiError::invalid("appearance.avatar_url", "an https:// URL"));
    }
    Ok(appearance)
}

/// `scheme://host[:port]` lower-cased, as browsers send it in `Origin`; `None` if `origin` is
/// not one (a path, a query, another scheme).
fn canonical_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && authority.len() <= 253
        && authority.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    valid.then_some(origin)
}

/// `POST /api/bots`: a new bot, in DRAFT.
#[utoipa::path(post, path = "/api/bots", tag = "bots", operation_id = "create_bot",
    security(("bearer" = [])),
    request_body = BotBody,
    responses((status = 201, description = "The new bot, in DRAFT", body = Bot)))]
pub async fn create(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<BotBody>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let body = body.into_inner();
    if body.name.is_none() {
        return Err(ApiError::invalid("name", "required"));
    }
    let now = now_ms();
    let mut bot = Bot {
        id: BotId(uuid::Uuid::now_v7().simple().to_string()),
        tenant_id: caller.tenant.clone(),
        name: String::new(),
        description: None,
        category: BotCategory::Custom,
        language: "en".into(),
        status: BotStatus::Draft,
        config: BotConfig {
            welcome_message: None,
            fallback_message: "Sorry, I did not understand that.".into(),
            personality: None,
            retention_days: None,
        },
        appearance: Appearance::default(),
        integration: BotIntegration::default(),
        installed_from: None,
        created_at: now,
        updated_at: now,
    };
    if body.config.as_ref().and_then(|c| c.retention_days).flatten().is_some() {
        caller.require_admin_person()?;
    }
    apply(&mut bot, body)?;
    state.engine.billing().ensure_room(&caller.tenant, Limit::Bots, 1).await?;
    state.engine.save_bot(&bot).await?;
    Ok(HttpResponse::Created().json(bot))
}

/// `GET /api/bots/{id}`.
#[utoipa::path(get, path = "/api/bots/{id}", tag = "bots", operation_id = "get_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot", body = Bot)))]
pub async fn get(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(owned_bot(&state, &caller, &path).await?))
}

/// `PATCH /api/bots/{id}`.
#[utoipa::path(patch, path = "/api/bots/{id}", tag = "bots", operation_id = "update_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    request_body = BotBody,
    responses((status = 200, description = "The bot, changed; live conversations use it from their next reply", body = Bot)))]
pub async fn update(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<BotBody>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let mut bot = owned_bot(&state, &caller, &path).await?;
    let body = body.into_inner();
    let retention = body.config.as_ref().and_then(|c| c.retention_days);
    if retention.is_some_and(|days| days != bot.config.retention_days) {
        // A shorter period deletes conversations: the workspace's privacy people decide it,
        // as they do the workspace's policy.
        caller.require_admin_person()?;
    }
    apply(&mut bot, body)?;
    bot.updated_at = now_ms();
    state.engine.save_bot(&bot).await?;
    Ok(HttpResponse::Ok().json(bot))
}

/// `DELETE /api/bots/{id}`.
#[utoipa::path(delete, path = "/api/bots/{id}", tag = "bots", operation_id = "delete_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let id = BotId(path.into_inner());
    match state.engine.delete_bot(&caller.tenant, &id).await {
        Ok(true) => Ok(HttpResponse::NoContent().finish()),
        Ok(false) => Err(not_found("bot")),
        Err(e) => Err(e.into()),
    }
}

async fn set_status(
    state: &AdminState,
    caller: &Caller,
    id: &str,
    status: BotStatus,
) -> Result<HttpResponse, ApiError> {
    require_writer(caller)?;
    let mut bot = owned_bot(state, caller, id).await?;
    bot.status = status;
    bot.updated_at = now_ms();
    state.engine.save_bot(&bot).await?;
    Ok(HttpResponse::Ok().json(bot))
}

/// `POST /api/bots/{id}/publish`: ACTIVE — widgets may connect.
#[utoipa::path(post, path = "/api/bots/{id}/publish", tag = "bots", operation_id = "publish_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot, ACTIVE", body = Bot)))]
pub async fn publish(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &caller, &path, BotStatus::Active).await
}

/// `POST /api/bots/{id}/pause`: PAUSED — new conversations are refused.
#[utoipa::path(post, path = "/api/bots/{id}/pause", tag = "bots", operation_id = "pause_bot",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot, PAUSED; connected visitors are told", body = Bot)))]
pub async fn pause(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &caller, &path, BotStatus::Paused).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentBody {
    /// Unique per bot.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: Option<String>,
    /// Empty or blank clears it.
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// Training phrases, 1 to 200, each 1 to 500 characters.
    #[schema(min_items = 1, max_items = 200)]
    examples: Option<Vec<String>>,
    response: Option<IntentResponse>,
    /// Replaces the intent's actions (at most 5). A webhook's `secret` (16 to 256 characters)
    /// is write-only: send it again whenever you send `actions`.
    #[schema(max_items = 5)]
    actions: Option<Vec<IntentAction>>,
}

fn apply_intent(intent: &mut Intent, body: IntentBody) -> Result<(), ApiError> {
    if let Some(name) = body.name {
        intent.name = text("name", &name, 100)?;
    }
    if let Some(description) = body.description {
        intent.description = optional_text("description", Some(&description), 1000)?;
    }
    if let Some(examples) = body.examples {
        if examples.is_empty() || examples.len() > 200 {
            return Err(ApiError::invalid("examples", "1 to 200 training phrases"));
        }
        intent.examples =
            examples.iter().map(|e| text("examples", e, 500)).collect::<Result<_, _>>()?;
    }
    if let Some(response) = body.response {
        let text_ = text("response.text", &response.text, 4000)?;
        if response.quick_replies.len() > 10 {
            return Err(ApiError::invalid("response.quick_replies", "at most 10"));
        }
        let quick_replies = response
            .quick_replies
            .iter()
            .map(|q| text("response.quick_replies", q, 100))
            .collect::<Result<_, _>>()?;
        if let Some(content) = &response.content {
            content
                .validate("response.content")
                .map_err(|e| ApiError::invalid(&e.field, e.problem))?;
        }
        intent.response = IntentResponse { text: text_, quick_replies, content: response.content };
    }
    if let Some(actions) = body.actions {
        if actions.len() > 5 {
            return Err(ApiError::invalid("actions", "at most 5"));
        }
        for action in &actions {
            let IntentAction::Webhook { url, secret } = action;
            parla_domain::http::check_url(url)
                .map_err(|problem| ApiError::invalid("actions.url", problem))?;
            if !(16..=256).contains(&secret.chars().count()) {
                return Err(ApiError::invalid("actions.secret", "16 to 256 characters"));
            }
        }
        intent.actions = actions;
    }
    Ok(())
}

/// A form's id names it when a visitor submits it, so it is unique among the bot's intents.
fn form_id_free(intents: &[Intent], intent: &Intent) -> Result<(), ApiError> {
    let form_id =
        |i: &Intent| i.response.content.as_ref().and_then(|c| c.form()).map(|f| f.0.to_owned());
    let Some(mine) = form_id(intent) else { return Ok(()) };
    if intents.iter().any(|i| i.id != intent.id && form_id(i).as_deref() == Some(mine.as_str())) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "form_id_taken",
            "another intent of this bot has a form with that form_id",
        ));
    }
    Ok(())
}

/// `GET /api/bots/{id}/intents`.
#[utoipa::path(get, path = "/api/bots/{id}/intents", tag = "intents", operation_id = "list_intents",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot's intents", body = IntentList)))]
pub async fn list_intents(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let bot = owned_bot(&state, &caller, &path).await?;
    let intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    Ok(HttpResponse::Ok().json(IntentList { data: intents.iter().map(IntentView::from).collect() }))
}

/// `POST /api/bots/{id}/intents`. Names are unique per bot.
#[utoipa::path(post, path = "/api/bots/{id}/intents", tag = "intents", operation_id = "create_intent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    request_body = IntentBody,
    responses((status = 201, description = "The new intent, in effect from the next message", body = IntentView),
              (status = 409, description = "`intent_name_taken`, or `form_id_taken` (a form's `form_id` is unique among the bot's intents)", body = ErrorBody)))]
pub async fn create_intent(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<IntentBody>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let bot = owned_bot(&state, &caller, &path).await?;
    let body = body.into_inner();
    for (field, missing) in [
        ("name", body.name.is_none()),
        ("examples", body.examples.is_none()),
        ("response", body.response.is_none()),
    ] {
        if missing {
            return Err(ApiError::invalid(field, "required"));
        }
    }
    let mut intent = Intent {
        id: uuid::Uuid::now_v7().simple().to_string(),
        bot_id: bot.id.clone(),
        name: String::new(),
        description: None,
        examples: Vec::new(),
        response: IntentResponse { text: String::new(), quick_replies: Vec::new(), content: None },
        actions: Vec::new(),
    };
    apply_intent(&mut intent, body)?;
    let _write = state.intent_writes.lock().await;
    let mut intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    if intents.iter().any(|i| i.name == intent.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "intent_name_taken",
            "this bot already has an intent with that name",
        ));
    }
    form_id_free(&intents, &intent)?;
    intents.push(intent.clone());
    state.engine.save_intents(&bot.tenant_id, &bot.id, &intents).await?;
    Ok(HttpResponse::Created().json(IntentView::from(&intent)))
}

/// `GET /api/bots/{id}/intents/{intent_id}`.
#[utoipa::path(get, path = "/api/bots/{id}/intents/{intent_id}", tag = "intents", operation_id = "get_intent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("intent_id" = String, Path, description = "The intent's id")),
    responses((status = 200, description = "The intent", body = IntentView)))]
pub async fn get_intent(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (bot_id, intent_id) = path.into_inner();
    let bot = owned_bot(&state, &caller, &bot_id).await?;
    let intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    let intent =
        intents.into_iter().find(|i| i.id == intent_id).ok_or_else(|| not_found("intent"))?;
    Ok(HttpResponse::Ok().json(IntentView::from(&intent)))
}

/// `PATCH /api/bots/{id}/intents/{intent_id}`.
#[utoipa::path(patch, path = "/api/bots/{id}/intents/{intent_id}", tag = "intents", operation_id = "update_intent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("intent_id" = String, Path, description = "The intent's id")),
    request_body = IntentBody,
    responses((status = 200, description = "The intent, changed", body = IntentView),
              (status = 409, description = "`intent_name_taken`, or `form_id_taken` (a form's `form_id` is unique among the bot's intents)", body = ErrorBody)))]
pub async fn update_intent(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: crate::body::Json<IntentBody>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let (bot_id, intent_id) = path.into_inner();
    let bot = owned_bot(&state, &caller, &bot_id).await?;
    let _write = state.intent_writes.lock().await;
    let mut intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    let index =
        intents.iter().position(|i| i.id == intent_id).ok_or_else(|| not_found("intent"))?;
    let mut intent = intents[index].clone();
    apply_intent(&mut intent, body.into_inner())?;
    if intents.iter().any(|i| i.id != intent.id && i.name == intent.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "intent_name_taken",
            "this bot already has an intent with that name",
        ));
    }
    form_id_free(&intents, &intent)?;
    intents[index] = intent.clone();
    state.engine.save_intents(&bot.tenant_id, &bot.id, &intents).await?;
    Ok(HttpResponse::Ok().json(IntentView::from(&intent)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExampleBody {
    /// One training phrase, 1 to 500 characters. (Defaulted when absent, so a caller without
    /// the right is refused for that first, whatever the body.)
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    text: String,
}

/// `POST /api/bots/{id}/intents/{intent_id}/examples`: adds one training phrase to the intent,
/// as one write — two callers adding at once both keep theirs (a `PATCH` replaces the whole
/// list, so a read-modify-write from outside could drop one). A phrase the intent already has
/// (ignoring case) is not added twice.
#[utoipa::path(post, path = "/api/bots/{id}/intents/{intent_id}/examples", tag = "intents", operation_id = "add_intent_example",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("intent_id" = String, Path, description = "The intent's id")),
    request_body = ExampleBody,
    responses((status = 200, description = "The intent, with the phrase", body = IntentView),
              (status = 422, description = "`validation_failed`: `text` empty or too long, or the intent already has 200 phrases", body = ErrorBody)))]
pub async fn add_example(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: crate::body::Json<ExampleBody>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let (bot_id, intent_id) = path.into_inner();
    let bot = owned_bot(&state, &caller, &bot_id).await?;
    let phrase = text("text", &body.into_inner().text, 500)?;
    let _write = state.intent_writes.lock().await;
    let mut intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    let intent =
        intents.iter_mut().find(|i| i.id == intent_id).ok_or_else(|| not_found("intent"))?;
    let known = intent.examples.iter().any(|e| e.to_lowercase() == phrase.to_lowercase());
    if !known {
        if intent.examples.len() >= 200 {
            return Err(ApiError::invalid("examples", "1 to 200 training phrases"));
        }
        intent.examples.push(phrase);
    }
    let view = IntentView::from(&*intent);
    if !known {
        state.engine.save_intents(&bot.tenant_id, &bot.id, &intents).await?;
    }
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /api/bots/{id}/intents/{intent_id}`.
#[utoipa::path(delete, path = "/api/bots/{id}/intents/{intent_id}", tag = "intents", operation_id = "delete_intent",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"), ("intent_id" = String, Path, description = "The intent's id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_intent(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    require_writer(&caller)?;
    let (bot_id, intent_id) = path.into_inner();
    let bot = owned_bot(&state, &caller, &bot_id).await?;
    let _write = state.intent_writes.lock().await;
    let mut intents = state.store.list_intents(&bot.tenant_id, &bot.id).await?;
    let before = intents.len();
    intents.retain(|i| i.id != intent_id);
    if intents.len() == before {
        return Err(not_found("intent"));
    }
    state.engine.save_intents(&bot.tenant_id, &bot.id, &intents).await?;
    Ok(HttpResponse::NoContent().finish())
}
