//! The audit log, written in one place: a middleware on `/api` appends an entry for every write
//! (`POST`, `PUT`, `PATCH`, `DELETE`) an authenticated member or API key made that succeeded —
//! who, the route, the path with its ids, the client's address, the status, and what the
//! handler reports (an erasure's counts) — and `GET /api/audit-log` reads it back, newest first,
//! for the workspace's owners and admins.
//!
//! Sign-in, registration and token refresh are not admin writes (no authenticated caller) and
//! are not recorded here; nor are refused writes (nothing changed).

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use parla_domain::audit::{AuditActor, AuditEntry};
use parla_engine::model::{TenantId, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{AdminState, error::ApiError, routes::Caller};

/// Who the request was authenticated as, left in its extensions by the `Caller` extractor.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub tenant: TenantId,
    pub actor: AuditActor,
}

/// What a handler adds to its request's audit entry (counts, never content).
#[derive(Debug, Clone)]
pub(crate) struct Details(pub serde_json::Value);

/// Records `details` on the request's audit entry.
pub(crate) fn note(req: &HttpRequest, details: serde_json::Value) {
    req.extensions_mut().insert(Details(details));
}

/// The middleware: appends the entry after a successful write.
pub(crate) async fn record(
    state: std::sync::Arc<AdminState>,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::Method;
    let write =
        matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let response = next.call(req).await?;
    let status = response.status();
    if !write || !status.is_success() {
        return Ok(response);
    }
    let request = response.request();
    let Some(identity) = request.extensions().get::<Identity>().cloned() else {
        return Ok(response);
    };
    let mut details = serde_json::json!({ "status": status.as_u16() });
    if let Some(Details(serde_json::Value::Object(more))) = request.extensions().get::<Details>()
        && let serde_json::Value::Object(all) = &mut details
    {
        all.extend(more.clone());
    }
    let path = request.path().to_owned();
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: identity.tenant,
        at: now_ms(),
        actor: identity.actor,
        ip: Some(crate::routes::client_ip(&state, request).to_string()),
        action: format!("{} {}", request.method(), request.match_pattern().unwrap_or(path.clone())),
        target: path,
        details,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, action = %entry.action, "could not append to the audit log");
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this one (the previous page's `next_before`).
    #[param(max_length = 64)]
    before: Option<String>,
    /// Only this action, or those starting with it (`DELETE `, `POST /api/data-subjects`).
    #[param(max_length = 200)]
    action: Option<String>,
    /// Entries per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub data: Vec<AuditEntry>,
    /// Pass as `before` for the next page; absent at the end.
    pub next_before: Option<String>,
}

/// Entries read at most per request while filtering by action.
const SCAN: usize = 5_000;

/// `GET /api/audit-log`.
#[utoipa::path(get, path = "/api/audit-log", tag = "data-protection", operation_id = "audit_log",
    security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "Who did what, newest first: every successful admin write, data-subject exports and erasures", body = AuditPage),
              (status = 422, description = "`limit` is not 1 to 200, or `before` or `action` too long", body = crate::views::ErrorBody)))]
pub async fn list(
    state: web::Data<AdminState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 200"));
    }
    if query.before.as_ref().is_some_and(|b| b.len() > 64) {
        return Err(ApiError::invalid("before", "an entry id (at most 64 characters)"));
    }
    if query.action.as_ref().is_some_and(|a| a.chars().count() > 200) {
        return Err(ApiError::invalid("action", "at most 200 characters"));
    }
    let mut before = query.before.clone();
    let (mut data, mut scanned) = (Vec::new(), 0);
    let more = loop {
        let page = state.store.list_audit(&caller.tenant, before.as_deref(), limit).await?;
        let full = page.len() == limit;
        scanned += page.len();
        for entry in page {
            before = Some(entry.id.clone());
            if query.action.as_deref().is_none_or(|a| entry.action.starts_with(a)) {
                data.push(entry);
                if data.len() == limit {
                    break;
                }
            }
        }
        if data.len() == limit || !full || scanned >= SCAN {
            break full || data.len() == limit;
        }
    };
    let next_before = if more { before } else { None };
    Ok(HttpResponse::Ok().json(AuditPage { data, next_before }))
}
