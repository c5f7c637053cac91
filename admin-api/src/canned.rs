//! `/api/canned-responses`: replies agents reuse. Any member reads them; admins and owners (or
//! keys with `bots:write`) write them. An agent's message that is exactly `/shortcut` is sent
//! as that response's text (agent socket and `POST …/replies` alike).

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::model::{CannedResponse, is_shortcut, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AdminState,
    error::ApiError,
    routes::{Caller, validate_text},
};

/// Canned responses a workspace may keep.
const MAX_CANNED: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedBody {
    /// 1 to 32 of a-z, 0-9, `-`, `_`; unique in the workspace. Typed as `/shortcut`.
    #[schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9_-]+$")]
    shortcut: String,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedPatch {
    #[schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9_-]+$")]
    shortcut: Option<String>,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    text: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CannedList {
    /// By shortcut.
    pub data: Vec<CannedResponse>,
}

fn checked_shortcut(shortcut: &str) -> Result<String, ApiError> {
    if !is_shortcut(shortcut) {
        return Err(ApiError::invalid("shortcut", "1 to 32 of a-z, 0-9, - and _"));
    }
    Ok(shortcut.to_owned())
}

fn taken() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "shortcut_taken", "another canned response has it")
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such canned response")
}

/// `GET /api/canned-responses`.
#[utoipa::path(get, path = "/api/canned-responses", tag = "agents", operation_id = "list_canned",
    security(("bearer" = [])),
    responses((status = 200, description = "By shortcut", body = CannedList)))]
pub async fn list(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require("conversations:read")?;
    let mut data = state.store.list_canned(&caller.tenant).await?;
    data.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
    Ok(HttpResponse::Ok().json(CannedList { data }))
}

/// `POST /api/canned-responses`.
#[utoipa::path(post, path = "/api/canned-responses", tag = "agents", operation_id = "create_canned",
    security(("bearer" = [])),
    request_body = CannedBody,
    responses((status = 201, description = "Created", body = CannedResponse),
              (status = 409, description = "`shortcut_taken`", body = crate::views::ErrorBody)))]
pub async fn create(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<CannedBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let body = body.into_inner();
    let shortcut = checked_shortcut(&body.shortcut)?;
    let text = validate_text("text", &body.text, 4000)?;
    let _write = state.intent_writes.lock().await; // Shortcut uniqueness: one writer.
    let all = state.store.list_canned(&caller.tenant).await?;
    if all.iter().any(|c| c.shortcut == shortcut) {
        return Err(taken());
    }
    if all.len() >= MAX_CANNED {
        let msg = format!("a workspace keeps at most {MAX_CANNED} canned responses");
        return Err(ApiError::new(StatusCode::CONFLICT, "limit_reached", msg));
    }
    let now = now_ms();
    let canned = CannedResponse {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: caller.tenant.clone(),
        shortcut,
        text,
        created_at: now,
        updated_at: now,
    };
    state.store.put_canned(&canned).await?;
    Ok(HttpResponse::Created().json(canned))
}

/// `PATCH /api/canned-responses/{id}`.
#[utoipa::path(patch, path = "/api/canned-responses/{id}", tag = "agents", operation_id = "update_canned",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The canned response's id")),
    request_body = CannedPatch,
    responses((status = 200, description = "Changed", body = CannedResponse),
              (status = 409, description = "`shortcut_taken`", body = crate::views::ErrorBody)))]
pub async fn update(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<CannedPatch>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let body = body.into_inner();
    let _write = state.intent_writes.lock().await;
    let all = state.store.list_canned(&caller.tenant).await?;
    let mut canned = all.iter().find(|c| c.id == *path).cloned().ok_or_else(not_found)?;
    if let Some(shortcut) = body.shortcut {
        let shortcut = checked_shortcut(&shortcut)?;
        if all.iter().any(|c| c.shortcut == shortcut && c.id != canned.id) {
            return Err(taken());
        }
        canned.shortcut = shortcut;
    }
    if let Some(text) = body.text {
        canned.text = validate_text("text", &text, 4000)?;
    }
    canned.updated_at = now_ms();
    state.store.put_canned(&canned).await?;
    Ok(HttpResponse::Ok().json(canned))
}

/// `DELETE /api/canned-responses/{id}`.
#[utoipa::path(delete, path = "/api/canned-responses/{id}", tag = "agents", operation_id = "delete_canned",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The canned response's id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    if !state.store.delete_canned(&caller.tenant, &path).await? {
        return Err(not_found());
    }
    Ok(HttpResponse::NoContent().finish())
}
