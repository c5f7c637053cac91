//! Firebase Cloud Messaging: the service account's access token and the notifications.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parla_engine::model::{ChannelConnection, ConversationKey, Message, Sender};
use serde::Serialize;
use serde_json::json;

use super::Secrets;
use crate::Channels;

/// OAuth2 scope for sending messages.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl Channels {
    /// A bearer token for the connection's service account (cached).
    async fn fcm_token(&self, connection: &ChannelConnection) -> Result<String, String> {
        if let Some((token, until)) = self.fcm_tokens.lock().get(&connection.id)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let secrets: Secrets = self.open_secrets(connection)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aud = self.settings.fcm_token_uri.as_str();
        let claims =
            Claims { iss: &secrets.client_email, scope: SCOPE, aud, iat: now, exp: now + 3600 };
        let key = EncodingKey::from_rsa_pem(secrets.private_key.as_bytes())
            .map_err(|e| format!("the service account's private key is unreadable: {e}"))?;
        let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
            .map_err(|e| e.to_string())?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .map_err(|e| e.to_string())?;
        let build = || {
            self.http
                .post(aud)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone())
        };
        let answer = self.send_with_retries(&connection.id, build).await?;
        let token = answer["access_token"].as_str().ok_or("no access_token from Google")?;
        let lifetime = answer["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60);
        let until = Instant::now() + Duration::from_secs(lifetime);
        self.fcm_tokens.lock().insert(connection.id.clone(), (token.to_owned(), until));
        Ok(token.to_owned())
    }

    /// Notifies the visitor's devices of `message` if none of their sockets is open.
    pub(crate) async fn notify(&self, key: &ConversationKey, message: &Message) {
        if message.sender == Sender::User || self.engine.visitor_connected(key) {
            return;
        }
        let store = &self.stores;
        let (t, c) = (&key.tenant_id, &key.conversation_id);
        let tokens = store.state.push_tokens(t, c).await.unwrap_or_default();
        if tokens.is_empty() {
            return;
        }
        let Ok(Some(conversation)) = store.conversations.get_conversation(t, c).await else {
            return;
        };
        let connections =
            store.connections.list_channels(t, &conversation.bot_id).await.unwrap_or_default();
        let Some(connection) =
            connections.into_iter().find(|c| c.kind == parla_engine::model::Channel::Push)
        else {
            return; // The bot has no push connection.
        };
        let title = match store.catalog.get_bot(t, &conversation.bot_id).await {
            Ok(Some(bot)) => bot.appearance.title.unwrap_or(bot.name),
            _ => "New message".to_owned(),
        };
        let bearer = match self.fcm_token(&connection).await {
            Ok(bearer) => bearer,
            Err(e) => {
                tracing::warn!(error = %e, "no FCM access token; notifications not sent");
                self.health.failed(&connection.id, &format!("no FCM access token: {e}"));
                return;
            }
        };
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.settings.fcm_api_base.trim_end_matches('/'),
            connection.address
        );
        let body: String = message.text.chars().take(200).collect();
        for token in tokens {
            let payload = json!({"message": {
                "token": token,
                "notification": {"title": title, "body": body},
                "data": {"conversation_id": c.as_str(), "seq": message.seq.to_string()},
            }});
            let build = || self.http.post(&url).bearer_auth(&bearer).json(&payload);
            match self.send_with_retries(&connection.id, build).await {
                Ok(_) => self.health.delivered(&connection.id),
                // The device's, not the connection's: it is not the connection's error.
                Err(e) if e.contains("404") || e.contains("UNREGISTERED") => {
                    tracing::info!("an unregistered device token is forgotten");
                    let _ = store.state.remove_push_token(t, c, &token).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "push notification not sent");
                    self.health.failed(&connection.id, &e);
                }
            }
        }
    }
}
