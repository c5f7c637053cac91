//! `/api/api-keys`: a tenant's API keys. Managed only by a signed-in admin or owner; the key's
//! value is returned once, at creation. A key records who minted it, and is revoked when they
//! are removed or demoted below admin ([`parla_engine::accounts::revoke_keys_minted_by`]).

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_engine::model::{ApiKey, Role, now_ms};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::{
    AdminState, auth,
    error::ApiError,
    routes::{API_KEY_PREFIX, Caller, SCOPES},
    views::{ApiKeyList, ApiKeyView, CreatedApiKey},
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// Some of `bots:read`, `bots:write`, `conversations:read`, `conversations:write`,
    /// `analytics:read`.
    #[schema(min_items = 1)]
    scopes: Vec<String>,
}

/// `POST /api/api-keys`.
#[utoipa::path(post, path = "/api/api-keys", tag = "api-keys", operation_id = "create_api_key",
    security(("bearer" = [])),
    request_body = KeyBody,
    responses((status = 201, description = "The key, with its value shown this once", body = CreatedApiKey)))]
pub async fn create(
    state: web::Data<AdminState>,
    caller: Caller,
    body: crate::body::Json<KeyBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let Some(maker) = caller.account.clone() else { return Err(no_longer_admin()) };
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
        created_by: Some(maker.clone()),
    };
    state.store.put_api_key(&key).await?;
    // The maker's rights read again now the key is stored: a removal or demotion that swept
    // their keys before this one was written would otherwise miss it.
    let now = state.store.get_account(&caller.tenant, &maker).await?;
    if now.is_none_or(|m| m.role > Role::Admin) {
        state.store.revoke_api_key(&caller.tenant, &key.id).await?;
        return Err(no_longer_admin());
    }
    Ok(HttpResponse::Created().json(CreatedApiKey { view: ApiKeyView::from(&key), key: value }))
}

/// `GET /api/api-keys`.
#[utoipa::path(get, path = "/api/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's keys, revoked ones included", body = ApiKeyList)))]
pub async fn list(state: web::Data<AdminState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let keys = state.store.list_api_keys(&caller.tenant).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList { data: keys.iter().map(ApiKeyView::from).collect() }))
}

/// `DELETE /api/api-keys/{id}`: revokes the key at once.
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin_person()?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API key");
    let keys = state.store.list_api_keys(&caller.tenant).await?;
    if !keys.iter().any(|k| k.id == *path && !k.revoked) {
        return Err(not_found());
    }
    // The revocation alone: a use of the key racing it cannot write it back unrevoked.
    if !state.store.revoke_api_key(&caller.tenant, &path).await? {
        return Err(not_found());
    }
    Ok(HttpResponse::NoContent().finish())
}

fn no_longer_admin() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this needs a signed-in admin or owner")
}
