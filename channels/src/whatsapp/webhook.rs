//! Meta's side of a WhatsApp connection: the webhook's verification, signature and payloads.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, Mac};
use parla_engine::model::{Channel, ChannelConnection, DeliveryStatus};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{STORE_WAIT, Secrets};
use crate::Channels;

/// Largest webhook body read.
const MAX_BODY: usize = 1 << 20;

pub(crate) fn routes(cfg: &mut web::ServiceConfig, channels: Arc<Channels>) {
    cfg.service(
        web::resource("/v1/channels/whatsapp/{connection}")
            .app_data(web::Data::from(channels))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route(web::get().to(verify))
            .route(web::post().to(receive)),
    );
}

fn refuse(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"message": message}}))
}

/// The connection and its credentials, if it is a WhatsApp one.
async fn connection(channels: &Channels, id: &str) -> Option<(ChannelConnection, Secrets)> {
    let store = &channels.stores;
    let connection = store.connections.channel_by_id(id).await.ok().flatten()?;
    if connection.kind != Channel::Whatsapp {
        return None;
    }
    let secrets = channels.open_secrets(&connection).ok()?;
    Some((connection, secrets))
}

#[derive(Debug, Deserialize)]
struct Verification {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET`: Meta's subscription check.
async fn verify(
    channels: web::Data<Channels>,
    path: web::Path<String>,
    query: web::Query<Verification>,
) -> HttpResponse {
    let Some((_, secrets)) = connection(&channels, &path).await else {
        return refuse(actix_web::http::StatusCode::NOT_FOUND, "no such connection");
    };
    let token_ok = query.verify_token.as_deref().is_some_and(|t| {
        t.len() == secrets.verify_token.len()
            && t.bytes().zip(secrets.verify_token.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    });
    match (&query.mode, &query.challenge) {
        (Some(mode), Some(challenge)) if mode == "subscribe" && token_ok => {
            HttpResponse::Ok().content_type("text/plain").body(challenge.clone())
        }
        _ => refuse(actix_web::http::StatusCode::FORBIDDEN, "verification failed"),
    }
}

/// Checks `X-Hub-Signature-256` over the raw body, in constant time.
fn signed(req: &HttpRequest, body: &[u8], app_secret: &str) -> bool {
    let Some(header) = req.headers().get("x-hub-signature-256").and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(hex) = header.strip_prefix("sha256=") else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    field: String,
    value: ChangeValue,
}

#[derive(Debug, Deserialize)]
struct ChangeValue {
    metadata: Option<Metadata>,
    #[serde(default)]
    messages: Vec<Incoming>,
    #[serde(default)]
    statuses: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Debug, Deserialize)]
struct Incoming {
    from: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(flatten)]
    rest: serde_json::Value,
}

impl Incoming {
    /// What the conversation shows of it; `None` for kinds that carry nothing to answer
    /// (reactions, system notices).
    fn text(&self) -> Option<String> {
        let r = &self.rest;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        match self.kind.as_str() {
            "text" => Some(s(&r["text"]["body"])),
            "interactive" => {
                let reply = if r["interactive"]["button_reply"].is_object() {
                    &r["interactive"]["button_reply"]
                } else {
                    &r["interactive"]["list_reply"]
                };
                Some(s(&reply["title"]))
            }
            "button" => Some(s(&r["button"]["text"])),
            "location" => {
                let l = &r["location"];
                let place = [s(&l["name"]), s(&l["address"])].join(" ");
                Some(format!("📍 {} ({}, {})", place.trim(), l["latitude"], l["longitude"]))
            }
            kind @ ("image" | "video" | "audio" | "document" | "sticker") => {
                let media = &r[kind];
                let caption = s(&media["caption"]);
                Some(format!("[{kind} {}] {caption}", s(&media["id"])).trim().to_owned())
            }
            _ => None,
        }
        .filter(|t| !t.trim().is_empty())
    }
}

/// `POST`: messages and statuses. 401 (nothing read) unless signed with the app secret; 200
/// once every message is stored, so Meta redelivers anything that was not.
async fn receive(
    channels: web::Data<Channels>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some((connection, secrets)) = connection(&channels, &path).await else {
        return refuse(StatusCode::NOT_FOUND, "no such connection");
    };
    if !signed(&req, &body, &secrets.app_secret) {
        tracing::warn!(connection = %connection.id, "WhatsApp webhook with a bad signature refused");
        return refuse(StatusCode::UNAUTHORIZED, "invalid X-Hub-Signature-256");
    }
    channels.health.inbound(&connection.id);
    let Ok(notification) = serde_json::from_slice::<Notification>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed notification");
    };
    let channels = channels.into_inner();
    for change in notification.entry.iter().flat_map(|e| &e.changes) {
        if change.field != "messages" {
            continue;
        }
        let number = change.value.metadata.as_ref().map(|m| m.phone_number_id.as_str());
        if number != Some(connection.address.as_str()) {
            tracing::warn!(connection = %connection.id, "notification for another number ignored");
            continue;
        }
        for message in &change.value.messages {
            match channels.accept(&connection, message).await {
                Ok(()) => {}
                // Refused for good (out of shape): redelivery would be refused again.
                Err(e) if e.is_permanent() => {
                    tracing::warn!(connection = %connection.id, error = %e, "WhatsApp message refused; not stored");
                }
                Err(e) => {
                    tracing::warn!(connection = %connection.id, error = %e, "WhatsApp message not stored; Meta will redeliver");
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, "not stored; retry");
                }
            }
        }
        for report in &change.value.statuses {
            let status = match report["status"].as_str() {
                Some("sent") => DeliveryStatus::Sent,
                Some("delivered") => DeliveryStatus::Delivered,
                Some("read") => DeliveryStatus::Read,
                Some("failed") => DeliveryStatus::Failed,
                _ => continue,
            };
            let error = report["errors"][0].as_object().map(|e| {
                let code = e.get("code").map(ToString::to_string).unwrap_or_default();
                let title = e.get("title").and_then(|t| t.as_str()).unwrap_or("failed");
                format!("WhatsApp error {code}: {title}")
            });
            let id = report["id"].as_str().unwrap_or_default();
            channels.report(&connection, id, status, error).await;
        }
    }
    HttpResponse::Ok().json(json!({}))
}
impl Channels {
    /// Stores one incoming message in its contact's conversation (idempotent by its id).
    async fn accept(
        self: &Arc<Self>,
        connection: &ChannelConnection,
        message: &Incoming,
    ) -> Result<(), parla_engine::EngineError> {
        let Some(text) = message.text().filter(|t| !t.trim().is_empty()) else { return Ok(()) };
        let conversation = self.contact_conversation(connection, &message.from).await?;
        let key = conversation.key();
        self.ensure_sink(&key, &connection.id, &message.from);
        let id = format!("wa:{}", message.id);
        let text = parla_domain::input::clip_text(&text, self.engine.max_text_chars());
        let input = parla_domain::input::VisitorInput::text(id, text);
        self.engine.post_visitor_message(key, input, STORE_WAIT).await?;
        // Blue ticks and "typing…" while the answer is prepared (Meta clears the indicator
        // with the reply, or after 25 s). Best effort: the message is already stored.
        let this = self.clone();
        let (connection, wamid) = (connection.clone(), message.id.clone());
        self.runtime.spawn(async move {
            let body = json!({"messaging_product": "whatsapp", "status": "read",
                "message_id": wamid, "typing_indicator": {"type": "text"}});
            let sent = match this.secrets(&connection) {
                Ok(secrets) => {
                    let url = this.messages_url(&connection);
                    let token = &secrets.access_token;
                    let http = &this.http;
                    let build = || http.post(&url).bearer_auth(token).json(&body);
                    this.send_with_retries(&connection.address, build).await.map(drop)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "WhatsApp read receipt not sent");
            }
        });
        Ok(())
    }
}
