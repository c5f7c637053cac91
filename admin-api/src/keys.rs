//! `/api/api-keys`: a tenant's API keys. Managed only by a signed-in admin or owner; the key's
//! value is returned once, at creation.

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::model::{ApiKey, now_ms};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AdminState, auth,
    error::ApiError,
    routes::{API_KEY_PREFIX, Caller, SCOPES},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    name: String,
    scopes: Vec<String>,
}

/// A key as listed: never its digest.
fn key_json(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id, "name": k.name, "prefix": k.prefix, "scopes": k.scopes,
        "created_at": k.created_at, "last_used_at": k.last_used_at, "revoked": k.revoked,
    })
}

/// `POST /api/api-keys`.
pub async fn create(
    state: web::Data<AdminState>,
    caller: Caller,
    body: web::Json<KeyBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let body = body.into_inner();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    if body.scopes.is_empty() || body.scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        let mut e = ApiError::invalid("scopes", "one or more known scopes");
        e.details = json!({ "field": "scopes", "known": SCOPES });
        return Err(e);
    }
    let (value, digest) = auth::new_opaque_token(API_KEY_PREFIX);
    let key = ApiKey {
        id: uuid::Uuid::now_v7().simple().to_string(),
        tenant_id: caller.tenant.clone(),
        name: name.to_owned(),
        prefix: value.chars().take(API_KEY_PREFIX.len() + 6).collect(),
        digest,
        scopes: body.scopes,
        created_at: now_ms(),
        last_used_at: None,
        revoked: false,
    };
    state.store.put_api_key(&key).await?;
    let mut body = key_json(&key);
    body["key"] = json!(value);
    Ok(HttpResponse::Created().json(body))
}

/// `GET /api/api-keys`.
pub async fn list(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let keys = state.store.list_api_keys(&caller.tenant).await?;
    Ok(HttpResponse::Ok().json(json!({ "data": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

/// `DELETE /api/api-keys/{id}`: revokes the key at once.
pub async fn revoke(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let keys = state.store.list_api_keys(&caller.tenant).await?;
    let Some(key) = keys.into_iter().find(|k| k.id == *path && !k.revoked) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API key"));
    };
    state.store.put_api_key(&ApiKey { revoked: true, ..key }).await?;
    Ok(HttpResponse::NoContent().finish())
}
