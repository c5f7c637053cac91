//! Sending an SMS through Twilio's Messages API.

use parla_engine::model::ChannelConnection;

use super::Secrets;
use crate::Channels;

impl Channels {
    /// Sends one piece (at most 1,600 characters) to `to`; refused for a contact who opted
    /// out.
    pub(crate) async fn send_sms(
        &self,
        connection: &ChannelConnection,
        to: &str,
        piece: &str,
    ) -> Result<Vec<String>, String> {
        let opted_out =
            self.stores.state.opted_out(&connection.id, to).await.map_err(|e| e.to_string())?;
        if opted_out {
            return Err("the contact opted out (STOP); they can send START to opt back in".into());
        }
        let secrets = self.open_secrets::<Secrets>(connection)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.twilio_api_base.trim_end_matches('/'),
            secrets.account_sid
        );
        let callback = match self.settings.public_url.trim_end_matches('/') {
            "" => String::new(),
            base => format!("{base}/v1/channels/sms/{}", connection.id),
        };
        let mut form = vec![("To", to), ("From", connection.address.as_str()), ("Body", piece)];
        // Twilio reports delivery (delivered, undelivered…) only to a callback named in the
        // request: possible once the server knows its public URL.
        if !callback.is_empty() {
            form.push(("StatusCallback", callback.as_str()));
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
        let build = || {
            self.http
                .post(&url)
                .basic_auth(&secrets.account_sid, Some(&secrets.auth_token))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
        };
        let answer = self.send_with_retries(&connection.address, build).await?;
        Ok(answer["sid"].as_str().map(str::to_owned).into_iter().collect())
    }
}
