//! `/api/workspace`: the caller's tenant — its name, its own LLM endpoint and its monthly LLM
//! token budget with this month's usage. Any member reads it and an admin or owner changes it
//! (people only, not API keys). The endpoint's API key is write-only.

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::model::{
    AgentSettings, PrivacySettings, RetentionSettings, Tenant, TenantLlm, minutes_of, month_of,
    now_ms,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::{
    AdminState,
    error::ApiError,
    routes::{Caller, validate_text},
};

/// The tenant's LLM endpoint, without its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct LlmView {
    pub base_url: String,
    pub model: String,
    pub api_key_set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    /// The workspace's own OpenAI-compatible endpoint; null = the server's.
    pub llm: Option<LlmView>,
    /// LLM tokens allowed per calendar month (UTC); null = unlimited.
    pub monthly_token_budget: Option<u64>,
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub tokens_used_this_month: u64,
    /// How escalated conversations reach agents: assignment, cap, business hours.
    pub agents: AgentSettings,
    /// Where emails, phone numbers, card numbers and IBANs visitors write are masked.
    pub privacy: PrivacySettings,
    /// How long conversations and unmatched messages are kept.
    pub retention: RetentionSettings,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmBody {
    /// An OpenAI-compatible API base, e.g. `https://api.openai.com/v1`.
    #[schema(max_length = 2048)]
    base_url: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    model: String,
    /// Sent as `Authorization: Bearer`; never answered back. Absent keeps the stored key if
    /// `base_url` is unchanged (a form that never saw it need not ask for it again) and drops
    /// it otherwise (a key goes only where it was given for); empty removes it.
    #[schema(max_length = 500)]
    api_key: Option<String>,
}

/// A settings object, refused in any other shape (serde would take a struct from an array too).
fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => {
            serde_json::from_value(value).map(Some).map_err(serde::de::Error::custom)
        }
        Some(_) => Err(serde::de::Error::custom("expected an object")),
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: Option<String>,
    /// The workspace's own endpoint; `null` goes back to the server's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LlmBody>)]
    llm: Option<Option<LlmBody>>,
    /// `null` removes the budget.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 1_000_000_000_000_u64)]
    monthly_token_budget: Option<Option<u64>>,
    /// Replaces the agent settings as a whole.
    agents: Option<AgentSettings>,
    /// Replaces the privacy settings as a whole.
    privacy: Option<PrivacySettings>,
    /// Replaces the retention policy as a whole (a `null` period keeps for good).
    #[serde(default, deserialize_with = "object")]
    retention: Option<RetentionSettings>,
}

/// The largest budget accepted (a trillion tokens a month).
const MAX_BUDGET: u64 = 1_000_000_000_000;

async fn view(state: &AdminState, tenant: &Tenant) -> Result<WorkspaceView, ApiError> {
    let month = month_of(now_ms());
    let tokens_used_this_month = state.store.token_usage(&tenant.id, &month).await?;
    Ok(WorkspaceView {
        id: tenant.id.to_string(),
        name: tenant.name.clone(),
        llm: tenant.llm.as_ref().map(|l| LlmView {
            base_url: l.base_url.clone(),
            model: l.model.clone(),
            api_key_set: !l.api_key.is_empty(),
        }),
        monthly_token_budget: tenant.monthly_token_budget,
        month,
        tokens_used_this_month,
        agents: tenant.agents.clone(),
        privacy: tenant.privacy,
        retention: tenant.retention,
    })
}

/// A retention period: 1 to 36,500 days, or none.
pub(crate) fn check_days(field: &'static str, days: Option<u32>) -> Result<(), ApiError> {
    if days.is_some_and(|d| !(1..=36_500).contains(&d)) {
        return Err(ApiError::invalid(field, "1 to 36500 days, or null to keep for good"));
    }
    Ok(())
}

async fn own_tenant(state: &AdminState, caller: &Caller) -> Result<Tenant, ApiError> {
    state.store.get_tenant(&caller.tenant).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "the workspace no longer exists")
    })
}

/// `GET /api/workspace`.
#[utoipa::path(get, path = "/api/workspace", tag = "workspace", operation_id = "get_workspace",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's workspace", body = WorkspaceView)))]
pub async fn get(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if caller.account.is_none() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in as a person"));
    }
    let tenant = own_tenant(&state, &caller).await?;
    Ok(HttpResponse::Ok().json(view(&state, &tenant).await?))
}

/// `PATCH /api/workspace`.
#[utoipa::path(patch, path = "/api/workspace", tag = "workspace", operation_id = "update_workspace",
    security(("bearer" = [])),
    request_body = WorkspaceBody,
    responses((status = 200, description = "The workspace, changed", body = WorkspaceView)))]
pub async fn update(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<WorkspaceBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let mut tenant = own_tenant(&state, &caller).await?;
    let body = body.into_inner();
    if let Some(name) = body.name {
        tenant.name = validate_text("name", &name, 200)?;
    }
    match body.llm {
        None => {}
        Some(None) => tenant.llm = None,
        Some(Some(llm)) => {
            parla_domain::http::check_url(llm.base_url.trim())
                .map_err(|problem| ApiError::invalid("llm.base_url", problem))?;
            let model = validate_text("llm.model", &llm.model, 200)?;
            let api_key = match llm.api_key {
                Some(key) if key.chars().count() > 500 => {
                    return Err(ApiError::invalid("llm.api_key", "at most 500 characters"));
                }
                Some(key) => key,
                // Kept for the same endpoint only: a key is never sent to a new address it was
                // not given for (an admin could otherwise collect it at a server of theirs).
                None => tenant
                    .llm
                    .take()
                    .filter(|old| old.base_url == llm.base_url.trim())
                    .map(|old| old.api_key)
                    .unwrap_or_default(),
            };
            tenant.llm =
                Some(TenantLlm { base_url: llm.base_url.trim().to_owned(), model, api_key });
        }
    }
    if let Some(budget) = body.monthly_token_budget {
        if budget.is_some_and(|b| b > MAX_BUDGET) {
            return Err(ApiError::invalid("monthly_token_budget", "at most 1,000,000,000,000"));
        }
        tenant.monthly_token_budget = budget;
    }
    if let Some(agents) = body.agents {
        tenant.agents = checked_agents(agents)?;
    }
    if let Some(privacy) = body.privacy {
        tenant.privacy = privacy;
    }
    if let Some(retention) = body.retention {
        for (field, days) in [
            ("retention.conversation_days", retention.conversation_days),
            ("retention.unmatched_days", retention.unmatched_days),
        ] {
            check_days(field, days)?;
        }
        tenant.retention = retention;
    }
    state.store.put_tenant(&tenant).await?;
    Ok(HttpResponse::Ok().json(view(&state, &tenant).await?))
}

/// Validates agent settings: a cap of 1 to 100, hours that parse and open before they close,
/// an offset within ±14 h, an offline message of at most 1,000 characters.
fn checked_agents(mut agents: AgentSettings) -> Result<AgentSettings, ApiError> {
    if !(1..=100).contains(&agents.max_chats_per_agent) {
        return Err(ApiError::invalid("agents.max_chats_per_agent", "must be 1 to 100"));
    }
    if let Some(hours) = &agents.business_hours {
        if !(-14 * 60..=14 * 60).contains(&hours.utc_offset_minutes) {
            let problem = "must be within ±840 minutes";
            return Err(ApiError::invalid("agents.business_hours.utc_offset_minutes", problem));
        }
        if hours.days.len() > 21 {
            return Err(ApiError::invalid("agents.business_hours.days", "at most 21 intervals"));
        }
        for d in &hours.days {
            let interval = (minutes_of(&d.open), minutes_of(&d.close));
            let valid = matches!(interval, (Some(open), Some(close)) if open < close);
            if !(1..=7).contains(&d.day) || !valid {
                let problem = "day 1 (Monday) to 7, open and close as HH:MM, open before close";
                return Err(ApiError::invalid("agents.business_hours.days", problem));
            }
        }
    }
    if let Some(message) = agents.offline_message.take() {
        let message = validate_text("agents.offline_message", &message, 1000)?;
        agents.offline_message = Some(message);
    }
    Ok(agents)
}
