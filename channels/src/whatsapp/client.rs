//! Sending to WhatsApp: text inside the 24-hour window, the approved template outside it.

use parla_engine::model::ChannelConnection;
use serde_json::json;

use super::Secrets;
use crate::Channels;

impl Channels {
    /// Outside the window: the connection's approved template, the text as its parameter.
    pub(crate) async fn send_template(
        &self,
        connection: &ChannelConnection,
        to: &str,
        text: &str,
    ) -> Result<Vec<String>, String> {
        let Some((name, language)) = &connection.template else {
            return Err("outside the 24-hour window and the connection has no template".into());
        };
        let secrets = self.secrets(connection)?;
        let parameter: String = text.chars().take(1024).collect();
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": name,
                "language": {"code": language},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": parameter}]}],
            },
        });
        let url = self.messages_url(connection);
        let build = || self.http.post(&url).bearer_auth(&secrets.access_token).json(&body);
        let answer = self.send_with_retries(&connection.address, build).await?;
        Ok(wamids(&answer))
    }

    pub(super) fn secrets(&self, connection: &ChannelConnection) -> Result<Secrets, String> {
        self.open_secrets(connection)
    }

    pub(super) fn messages_url(&self, connection: &ChannelConnection) -> String {
        let base = self.settings.whatsapp_api_base.trim_end_matches('/');
        format!("{base}/{}/messages", connection.address)
    }

    /// Sends one piece (at most `whatsapp_max_chars`) as a WhatsApp text message.
    pub(crate) async fn send_text(
        &self,
        connection: &ChannelConnection,
        to: &str,
        piece: &str,
    ) -> Result<Vec<String>, String> {
        let secrets = self.secrets(connection)?;
        let url = self.messages_url(connection);
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": false, "body": piece},
        });
        let build = || self.http.post(&url).bearer_auth(&secrets.access_token).json(&body);
        Ok(wamids(&self.send_with_retries(&connection.address, build).await?))
    }
}

/// The `wamid`s of a send's answer (`{"messages": [{"id"}]}`).
fn wamids(answer: &serde_json::Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
