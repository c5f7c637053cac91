//! Twilio's side of an SMS connection: the signed webhook, opt-out keywords, delivery reports.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use parla_engine::model::{Channel, DeliveryStatus};
use serde::Deserialize;
use sha1::Sha1;

use super::{START, STOP, STORE_WAIT, Secrets};
use crate::Channels;

pub(crate) fn routes(cfg: &mut web::ServiceConfig, channels: Arc<Channels>) {
    cfg.service(
        web::resource("/v1/channels/sms/{connection}")
            .app_data(web::Data::from(channels))
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route(web::post().to(receive)),
    );
}

const TWIML_EMPTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

fn refuse(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain").body(message.to_owned())
}

/// Twilio's signature of `url` and `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

impl Channels {
    /// The URL Twilio called, as it signed it.
    fn public_url(&self, req: &HttpRequest) -> String {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if self.settings.public_url.is_empty() {
            let info = req.connection_info();
            format!("{}://{}{path}", info.scheme(), info.host())
        } else {
            format!("{}{path}", self.settings.public_url.trim_end_matches('/'))
        }
    }
}

#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "MessageSid")]
    sid: String,
    #[serde(rename = "From")]
    from: String,
    #[serde(rename = "To")]
    to: String,
    #[serde(rename = "Body", default)]
    body: String,
}

/// `POST`: an incoming SMS. 403 (nothing read) unless signed with the auth token; TwiML 200
/// once the message is stored, so Twilio retries anything that was not.
async fn receive(
    channels: web::Data<Channels>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let store = channels.stores.clone();
    let connection = match store.connections.channel_by_id(&path).await {
        Ok(Some(c)) if c.kind == Channel::Sms => c,
        _ => return refuse(StatusCode::NOT_FOUND, "no such connection"),
    };
    let Ok(secrets) = channels.open_secrets::<Secrets>(&connection) else {
        return refuse(StatusCode::NOT_FOUND, "no such connection");
    };
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed form");
    };
    let given = req.headers().get("x-twilio-signature").and_then(|v| v.to_str().ok());
    let expected = signature(&secrets.auth_token, &channels.public_url(&req), &params);
    let matches = given.is_some_and(|g| {
        g.len() == expected.len()
            && g.bytes().zip(expected.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    });
    if !matches {
        tracing::warn!(connection = %connection.id, "SMS webhook with a bad signature refused");
        return refuse(StatusCode::FORBIDDEN, "invalid X-Twilio-Signature");
    }
    channels.health.inbound(&connection.id);
    // A status callback: how far a message we sent got.
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let (Some(status), Some(sid)) = (param("MessageStatus"), param("MessageSid"))
        && param("Body").is_none()
    {
        let status = match status {
            "sent" => Some(DeliveryStatus::Sent),
            "delivered" => Some(DeliveryStatus::Delivered),
            "read" => Some(DeliveryStatus::Read),
            "undelivered" | "failed" => Some(DeliveryStatus::Failed),
            _ => None, // queued, accepted, sending: nothing new.
        };
        if let Some(status) = status {
            let error = param("ErrorCode").map(|code| format!("Twilio error {code}"));
            channels.report(&connection, sid, status, error).await;
        }
        return HttpResponse::Ok().content_type("text/xml").body(TWIML_EMPTY);
    }
    // Other events are acknowledged.
    let Ok(incoming) = serde_urlencoded::from_bytes::<Incoming>(&body) else {
        return HttpResponse::Ok().content_type("text/xml").body(TWIML_EMPTY);
    };
    if incoming.to != connection.address {
        return refuse(StatusCode::BAD_REQUEST, "message for another number");
    }
    let keyword = incoming.body.trim().to_uppercase();
    let opt = if STOP.contains(&keyword.as_str()) {
        Some(true)
    } else if START.contains(&keyword.as_str()) {
        Some(false)
    } else {
        None
    };
    if let Some(out) = opt
        && let Err(e) = store.state.set_opted_out(&connection.id, &incoming.from, out).await
    {
        tracing::warn!(error = %e, "could not record an SMS opt-out");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "not stored; retry");
    }
    let stored = async {
        let conversation = channels.contact_conversation(&connection, &incoming.from).await?;
        let key = conversation.key();
        let text = parla_domain::input::clip_text(&incoming.body, channels.engine.max_text_chars());
        if text.trim().is_empty() {
            return Ok(());
        }
        let id = format!("sms:{}", incoming.sid);
        let input = parla_domain::input::VisitorInput::text(id, text);
        channels.engine.post_visitor_message(key.clone(), input, STORE_WAIT).await?;
        channels.clone().into_inner().ensure_sink_for(&key.tenant_id, &key.conversation_id).await;
        Ok::<(), parla_engine::EngineError>(())
    };
    match stored.await {
        Ok(()) => HttpResponse::Ok().content_type("text/xml").body(TWIML_EMPTY),
        // Refused for good (out of shape): a retry would be refused again.
        Err(e) if e.is_permanent() => {
            tracing::warn!(error = %e, "SMS refused; not stored");
            HttpResponse::Ok().content_type("text/xml").body(TWIML_EMPTY)
        }
        Err(e) => {
            tracing::warn!(error = %e, "SMS not stored; Twilio will retry");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "not stored; retry")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_follow_twilios_documented_example() {
        // The example of Twilio's "Webhooks security" page: this URL, these parameters and
        // the auth token 12345 sign as 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(super::signature("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }
}
