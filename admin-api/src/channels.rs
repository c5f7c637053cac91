//! `/api/bots/{id}/channels`: a bot's connections to messaging providers. Credentials are
//! sealed (AES-256-GCM under the server's master key) before they are stored and never come
//! back: the API shows their last four characters. Admins and owners (or keys with
//! `bots:write`) manage them; any member lists them.

use parla_domain::billing::Limit;
use std::collections::BTreeMap;

use actix_web::{HttpResponse, http::StatusCode, web};
use parla_domain::channels::ChannelHealth;
use parla_engine::model::{BotId, Channel, ChannelConnection, now_ms};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AdminState, error::ApiError, routes::Caller};

/// A connection as the API shows it: no secret, only hints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub bot_id: String,
    pub kind: Channel,
    /// WhatsApp: the phone number id; SMS: the number (E.164).
    pub address: String,
    /// Each credential's last four characters.
    pub secret_hints: BTreeMap<String, String>,
    /// Where the provider sends its webhooks (append to the server's public URL); none for
    /// push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    pub created_at: i64,
    /// How the connection is doing, as the node answering saw it since it started (in memory,
    /// per node: empty after a restart; see `docs/channels.md`).
    pub health: ChannelHealth,
}

impl ChannelView {
    fn new(c: &ChannelConnection, health: ChannelHealth) -> Self {
        Self {
            id: c.id.clone(),
            bot_id: c.bot_id.to_string(),
            kind: c.kind,
            address: c.address.clone(),
            secret_hints: c.secret_hints.clone(),
            webhook_path: match c.kind {
                Channel::Sms => Some(format!("/v1/channels/sms/{}", c.id)),
                Channel::Whatsapp => Some(format!("/v1/channels/whatsapp/{}", c.id)),
                _ => None,
            },
            created_at: c.created_at,
            health,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub data: Vec<ChannelView>,
}

/// A connection: WhatsApp Cloud API (`phone_number_id`, `access_token`, `app_secret`,
/// `verify_token`, optionally a template) or SMS through Twilio (`phone_number`,
/// `account_sid`, `auth_token`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    /// `whatsapp` or `sms` (push to come).
    kind: Channel,
    /// WhatsApp: the business phone number's id in Meta's WhatsApp Manager.
    #[schema(min_length = 1, max_length = 64, pattern = "^[0-9]+$")]
    phone_number_id: Option<String>,
    /// WhatsApp: a system-user access token with `whatsapp_business_messaging`.
    #[schema(min_length = 1, max_length = 1024)]
    access_token: Option<String>,
    /// WhatsApp: the Meta app's secret; webhooks are verified with it.
    #[schema(min_length = 1, max_length = 256)]
    app_secret: Option<String>,
    /// WhatsApp: the token Meta echoes when subscribing the webhook.
    #[schema(min_length = 1, max_length = 256)]
    verify_token: Option<String>,
    /// WhatsApp: an approved template sent instead of a free-form message outside the 24-hour
    /// window (its one body parameter carries the text); without it such messages fail.
    #[schema(min_length = 1, max_length = 512, pattern = "^[a-z0-9_]+$")]
    template_name: Option<String>,
    /// WhatsApp: the template's language code, e.g. `en_US`.
    #[schema(min_length = 2, max_length = 16)]
    template_language: Option<String>,
    /// SMS: the Twilio number, E.164 (`+15551234567`).
    #[schema(min_length = 2, max_length = 16, pattern = r"^\+[0-9]+$")]
    phone_number: Option<String>,
    /// SMS: the Twilio account SID (`AC…`).
    #[schema(min_length = 1, max_length = 64)]
    account_sid: Option<String>,
    /// SMS: the Twilio auth token; webhooks are verified with it.
    #[schema(min_length = 1, max_length = 256)]
    auth_token: Option<String>,
    /// Push: the Google service account's JSON key (`project_id`, `client_email`,
    /// `private_key`), for Firebase Cloud Messaging.
    #[schema(value_type = Option<Object>)]
    service_account: Option<serde_json::Value>,
}

async fn own_bot(state: &AdminState, caller: &Caller, id: &str) -> Result<BotId, ApiError> {
    Ok(crate::documents::owned_bot(state, caller, id).await?.id)
}

/// The secret's last four characters, unless it is short enough for them to give much away.
fn hint(secret: &str) -> String {
    if secret.chars().count() < 12 {
        return "…".into();
    }
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

fn secret(field: &str, value: Option<&String>, max: usize) -> Result<String, ApiError> {
    let value = value.map_or("", |v| v.trim());
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("1 to {max} printable characters")));
    }
    Ok(value.to_owned())
}

/// `GET /api/bots/{id}/channels`.
#[utoipa::path(get, path = "/api/bots/{id}/channels", tag = "channels", operation_id = "list_channels",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    responses((status = 200, description = "The bot's connections, without secrets", body = ChannelList)))]
pub async fn list(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:read")?;
    let bot = own_bot(&state, &caller, &path).await?;
    let data = state
        .store
        .list_channels(&caller.tenant, &bot)
        .await?
        .iter()
        .map(|c| ChannelView::new(c, state.channels.health(&c.id)))
        .collect();
    Ok(HttpResponse::Ok().json(ChannelList { data }))
}

/// `POST /api/bots/{id}/channels`: connects the bot to a WhatsApp business number or a Twilio
/// SMS number.
#[utoipa::path(post, path = "/api/bots/{id}/channels", tag = "channels", operation_id = "create_channel",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id")),
    request_body = ChannelBody,
    responses((status = 201, description = "Connected; point Meta's webhook at `webhook_path`", body = ChannelView)))]
pub async fn create(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<String>,
    body: crate::body::Json<ChannelBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let bot = own_bot(&state, &caller, &path).await?;
    let body = body.into_inner();
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (address, plain, hints, template) = match body.kind {
        Channel::Whatsapp => whatsapp(&body)?,
        Channel::Sms => sms(&body)?,
        Channel::Push => push(&body)?,
        _ => return Err(ApiError::invalid("kind", "whatsapp, sms or push")),
    };
    state.engine.billing().ensure_room(&caller.tenant, Limit::Channels, 1).await?;
    let now = now_ms();
    let connection = ChannelConnection {
        sealed_secrets: state.channels.seal(&id, &plain),
        id,
        tenant_id: caller.tenant.clone(),
        bot_id: bot,
        kind: body.kind,
        address,
        secret_hints: hints,
        template,
        created_at: now,
        updated_at: now,
    };
    state.store.put_channel(&connection).await?;
    state.channels.watch(&caller.tenant);
    Ok(HttpResponse::Created().json(ChannelView::new(&connection, ChannelHealth::default())))
}

/// What a connection stores: (address, sealed-to-be credentials, their hints, template).
type Parts = (String, Vec<u8>, BTreeMap<String, String>, Option<(String, String)>);

fn sealable(
    secrets: &impl Serialize,
    hints: &[(&str, &str)],
) -> Result<(Vec<u8>, BTreeMap<String, String>), ApiError> {
    let plain = serde_json::to_vec(secrets)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((plain, hints.iter().map(|(name, value)| ((*name).to_owned(), hint(value))).collect()))
}

fn whatsapp(body: &ChannelBody) -> Result<Parts, ApiError> {
    let number = body.phone_number_id.as_deref().map_or("", str::trim);
    if number.is_empty() || number.len() > 64 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("phone_number_id", "digits only, at most 64"));
    }
    let secrets = parla_domain::channels::WhatsAppSecrets {
        access_token: secret("access_token", body.access_token.as_ref(), 1024)?,
        app_secret: secret("app_secret", body.app_secret.as_ref(), 256)?,
        verify_token: secret("verify_token", body.verify_token.as_ref(), 256)?,
    };
    let template = match (&body.template_name, &body.template_language) {
        (None, None) => None,
        (Some(name), Some(language)) => {
            let valid_name = !name.is_empty()
                && name.len() <= 512
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_name {
                return Err(ApiError::invalid("template_name", "a-z, 0-9 and _, at most 512"));
            }
            if !(2..=16).contains(&language.len()) {
                return Err(ApiError::invalid("template_language", "a language code like en_US"));
            }
            Some((name.clone(), language.clone()))
        }
        _ => {
            let problem = "template_name and template_language go together";
            return Err(ApiError::invalid("template_name", problem));
        }
    };
    let (plain, hints) = sealable(
        &secrets,
        &[
            ("access_token", &secrets.access_token),
            ("app_secret", &secrets.app_secret),
            ("verify_token", &secrets.verify_token),
        ],
    )?;
    Ok((number.to_owned(), plain, hints, template))
}

fn sms(body: &ChannelBody) -> Result<Parts, ApiError> {
    let number = body.phone_number.as_deref().map_or("", str::trim);
    let digits = number.strip_prefix('+').unwrap_or("");
    if !(1..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("phone_number", "an E.164 number, like +15551234567"));
    }
    let secrets = parla_domain::channels::SmsSecrets {
        account_sid: secret("account_sid", body.account_sid.as_ref(), 64)?,
        auth_token: secret("auth_token", body.auth_token.as_ref(), 256)?,
    };
    let (plain, hints) = sealable(
        &secrets,
        &[("account_sid", &secrets.account_sid), ("auth_token", &secrets.auth_token)],
    )?;
    Ok((number.to_owned(), plain, hints, None))
}

fn push(body: &ChannelBody) -> Result<Parts, ApiError> {
    let account = body.service_account.as_ref().ok_or_else(|| {
        ApiError::invalid("service_account", "the Google service account's JSON key")
    })?;
    let field = |name: &str| account[name].as_str().map(str::trim).filter(|v| !v.is_empty());
    let project = field("project_id").filter(|p| {
        p.len() <= 64
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let (Some(project), Some(email), Some(key)) =
        (project, field("client_email"), field("private_key"))
    else {
        let problem = "needs project_id, client_email and private_key";
        return Err(ApiError::invalid("service_account", problem));
    };
    if jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).is_err() {
        return Err(ApiError::invalid("service_account", "private_key is not an RSA PEM key"));
    }
    let secrets = parla_domain::channels::PushSecrets {
        client_email: email.to_owned(),
        private_key: key.to_owned(),
    };
    let (plain, hints) = sealable(&secrets, &[("client_email", &secrets.client_email)])?;
    Ok((project.to_owned(), plain, hints, None))
}

/// `DELETE /api/bots/{id}/channels/{channel_id}`: its webhooks are refused from then on.
#[utoipa::path(delete, path = "/api/bots/{id}/channels/{channel_id}", tag = "channels", operation_id = "delete_channel",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The bot's id"),
           ("channel_id" = String, Path, description = "The connection's id")),
    responses((status = 204, description = "Disconnected")))]
pub async fn delete(
    state: web::Data<AdminState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require("bots:write")?;
    let (bot, id) = path.into_inner();
    let bot = own_bot(&state, &caller, &bot).await?;
    let found = state.store.channel_by_id(&id).await?;
    let theirs = found.is_some_and(|c| c.tenant_id == caller.tenant && c.bot_id == bot);
    if !theirs || !state.store.delete_channel(&caller.tenant, &id).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such connection"));
    }
    Ok(HttpResponse::NoContent().finish())
}
