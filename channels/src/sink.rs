//! The outbound sink of a channel conversation, shared by every channel: delivers the bot's
//! and agents' stored messages to the contact in seq order, remembering in the store how far
//! it got, so a restart resumes where it stopped.

use std::{sync::Arc, time::Duration};

use parla_engine::{
    bus::Event,
    feed::{ConversationFeed, FeedItem},
    model::{
        Channel, ChannelConnection, ConversationId, ConversationKey, Delivery, DeliveryStatus,
        Sender, TenantId, now_ms,
    },
};

use crate::Channels;

/// A sink with nothing to deliver this long stops (the tenant's watcher restarts it).
const SINK_IDLE: Duration = Duration::from_secs(600);

impl Channels {
    /// Starts the outbound sink of a channel conversation unless it runs (widget
    /// conversations have none).
    pub(crate) async fn ensure_sink_for(self: &Arc<Self>, tenant: &TenantId, id: &ConversationId) {
        if !self.leads(tenant) {
            self.watch(tenant); // The holder delivers; this node may take over one day.
            return;
        }
        let key = (tenant.clone(), id.clone());
        if self.sinks.lock().get(&key).is_some_and(|s| !s.is_finished()) {
            return;
        }
        if let Ok(Some((connection, contact))) =
            self.stores.state.conversation_contact(tenant, id).await
        {
            let key = ConversationKey { tenant_id: tenant.clone(), conversation_id: id.clone() };
            self.ensure_sink(&key, &connection, &contact);
        }
    }

    /// Starts the conversation's outbound sink unless it runs.
    pub(crate) fn ensure_sink(
        self: &Arc<Self>,
        key: &ConversationKey,
        connection: &str,
        contact: &str,
    ) {
        if !self.leads(&key.tenant_id) {
            self.watch(&key.tenant_id); // The holder delivers; this node may take over one day.
            return;
        }
        let mut sinks = self.sinks.lock();
        let id = (key.tenant_id.clone(), key.conversation_id.clone());
        if sinks.get(&id).is_some_and(|s| !s.is_finished()) {
            return;
        }
        let sink = self.clone().sink(key.clone(), connection.to_owned(), contact.to_owned());
        let task = self.runtime.spawn(sink);
        sinks.insert(id, task.abort_handle());
    }

    /// Delivers the conversation's bot and agent messages to the contact, in seq order (read
    /// through a [`ConversationFeed`] from the stored cursor), while there is something to
    /// deliver; stops after an idle spell (the tenant's watcher starts it again for the next
    /// reply), or when this node no longer leads the tenant's delivery.
    async fn sink(self: Arc<Self>, key: ConversationKey, connection: String, contact: String) {
        let store = self.stores.clone();
        let (t, c) = (&key.tenant_id, &key.conversation_id);
        // Never guess where delivery stands: a read error stops the sink (the next reply
        // starts it again) rather than resending from the start.
        let started = match store.state.channel_cursor(t, c).await {
            Ok(cursor) => self.last_inbound(&key, cursor).await.map(|last| (cursor, last)),
            Err(e) => {
                tracing::warn!(error = %e, "channel sink could not read its cursor");
                None
            }
        };
        let Some((mut cursor, mut last_inbound)) = started else {
            self.sinks.lock().remove(&(t.clone(), c.clone()));
            return;
        };
        let mut feed = ConversationFeed::open(&self.engine, key.clone(), None, cursor).await;
        loop {
            let message = match tokio::time::timeout(SINK_IDLE, feed.next()).await {
                Ok(Ok(FeedItem::Message(message))) => message,
                Ok(Ok(FeedItem::Live(event))) => match &*event {
                    Event::Message { message } | Event::StreamEnd { message, .. } => {
                        message.clone()
                    }
                    _ => continue,
                },
                Ok(Err(e)) => {
                    // The feed reads the gap again with a later stored message's event.
                    tracing::warn!(error = %e, "channel sink could not read the conversation");
                    continue;
                }
                Err(_) => {
                    // Idle: leave, then look once more — a reply stored while the watcher
                    // still saw this sink running would otherwise wait for the next one.
                    self.sinks.lock().remove(&(t.clone(), c.clone()));
                    if let Ok(Some(last)) = store.conversations.last_message(t, c).await
                        && last.seq > cursor
                    {
                        self.ensure_sink(&key, &connection, &contact);
                    }
                    return;
                }
            };
            if message.seq <= cursor {
                // Handed out again (the end of a stream whose message a gap's replay already
                // gave): delivered once, by seq.
                continue;
            }
            if !self.leads(t) {
                // Another node delivers now: it resumes from the stored cursor.
                break;
            }
            if message.sender == Sender::User {
                last_inbound = last_inbound.max(message.created_at);
            } else if message.delivery.is_some() {
                // Already handed to the provider (or refused by it) by another sink — this
                // node's previous one, or the node that held the lease before — which had not
                // recorded its cursor yet (a replayed message carries its delivery record; a
                // live one is new, past every cursor): never sent twice.
            } else {
                let connection = match store.connections.channel_by_id(&connection).await {
                    Ok(Some(connection)) => connection,
                    Ok(None) => {
                        let text = "the conversation's channel was disconnected; replies are not delivered";
                        self.engine.announce_failure(&key, "channel_delivery_failed", text);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "channel sink could not read its connection");
                        break;
                    }
                };
                let sent = self.deliver(&key, &message, &connection, &contact, last_inbound).await;
                if let Err(e) = sent {
                    // Visible to the workspace's agents, not silent; the sink moves on so one
                    // undeliverable message does not block the conversation.
                    tracing::error!(conversation = %c, seq = message.seq, error = %e, "channel delivery failed");
                    let text = format!("message {} was not delivered: {e}", message.seq);
                    self.engine.announce_failure(&key, "channel_delivery_failed", &text);
                }
            }
            cursor = message.seq;
            if let Err(e) = store.state.set_channel_cursor(t, c, cursor).await {
                tracing::warn!(error = %e, "could not record channel progress");
            }
        }
        self.sinks.lock().remove(&(t.clone(), c.clone()));
    }

    /// When the contact last wrote, as of `cursor` (0: not in the page before it); `None`
    /// when the store cannot say.
    async fn last_inbound(&self, key: &ConversationKey, cursor: u64) -> Option<i64> {
        let from = cursor.saturating_sub(100);
        let page = self.engine.history(key, from, 100).await.ok()?;
        Some(
            page.iter()
                .filter(|m| m.seq <= cursor && m.sender == Sender::User)
                .map(|m| m.created_at)
                .max()
                .unwrap_or(0),
        )
    }

    /// A provider's report on a message it was given: moves its delivery forward (never
    /// back: a late "delivered" after "read" changes nothing); a failure is announced.
    pub(crate) async fn report(
        &self,
        connection: &ChannelConnection,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) {
        let store = &self.stores;
        // Looked up, compared and written in one store transaction: two reports at once
        // cannot move it back.
        let moved =
            store.state.advance_delivery(&connection.id, provider_id, status, error.clone()).await;
        let (tenant, id, seq) = match moved {
            Ok(Some(moved)) => moved,
            Ok(None) => return, // Not ours, or not further on.
            Err(e) => {
                tracing::warn!(error = %e, "could not record a delivery report");
                return;
            }
        };
        if status == DeliveryStatus::Failed {
            let key = ConversationKey { tenant_id: tenant, conversation_id: id };
            let why = error.unwrap_or_else(|| "no reason given".into());
            let text = format!("message {seq} was not delivered: {why}");
            self.health.failed(&connection.id, &text);
            self.engine.announce_failure(&key, "channel_delivery_failed", &text);
        }
    }

    /// One stored message to the contact, the way its channel wants it, piece by piece; its
    /// delivery (with each accepted piece's provider id, indexed at once so an early status
    /// report finds it) is recorded on the message.
    async fn deliver(
        &self,
        key: &ConversationKey,
        message: &parla_engine::model::Message,
        connection: &ChannelConnection,
        contact: &str,
        last_inbound: i64,
    ) -> Result<(), String> {
        let window = i64::try_from(self.settings.whatsapp_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let in_window = now_ms() - last_inbound < window;
        let pieces = match connection.kind {
            // Outside the window the template carries the text as one parameter.
            Channel::Whatsapp if !in_window => vec![message.text.clone()],
            Channel::Whatsapp => {
                crate::split_message(&message.text, self.settings.whatsapp_max_chars)
            }
            _ => crate::split_message(&message.text, crate::sms::MAX_SMS_CHARS),
        };
        let mut delivery = Delivery {
            status: DeliveryStatus::Sent,
            provider_ids: Vec::new(),
            error: None,
            updated_at: now_ms(),
        };
        let mut outcome = Ok(());
        for piece in &pieces {
            let sent = match connection.kind {
                Channel::Whatsapp if !in_window => {
                    self.send_template(connection, contact, piece).await
                }
                Channel::Whatsapp => self.send_text(connection, contact, piece).await,
                Channel::Sms => self.send_sms(connection, contact, piece).await,
                other => Err(format!("no sender for {other:?}")),
            };
            match sent {
                Ok(ids) => delivery.provider_ids.extend(ids),
                Err(e) => {
                    delivery.status = DeliveryStatus::Failed;
                    delivery.error = Some(e.clone());
                    outcome = Err(e);
                }
            }
            delivery.updated_at = now_ms();
            let (t, c) = (&key.tenant_id, &key.conversation_id);
            let store = &self.stores;
            if let Err(e) =
                store.state.set_delivery(t, c, message.seq, &connection.id, &delivery).await
            {
                tracing::warn!(error = %e, "could not record a delivery");
            }
            if outcome.is_err() {
                break; // The rest of a message that failed is not sent.
            }
        }
        match &outcome {
            Ok(()) => self.health.delivered(&connection.id),
            Err(e) => self.health.failed(&connection.id, e),
        }
        outcome
    }

    /// Sends the request `build` makes, paced per business number, retrying 429, 5xx and
    /// network errors with backoff (a provider's `Retry-After` wins); returns the provider's
    /// JSON answer.
    pub(crate) async fn send_with_retries(
        &self,
        address: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, String> {
        let limiter = self.limiter(address);
        let attempts = self.settings.send_attempts.max(1);
        let mut delay = Duration::from_millis(self.settings.retry_base_ms);
        for attempt in 1..=attempts {
            limiter.until_ready().await;
            let sent = build().send().await;
            let (retryable, reason, wait) = match sent {
                Ok(response) if response.status().is_success() => {
                    return Ok(response.json().await.unwrap_or_default());
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let detail: serde_json::Value = response.json().await.unwrap_or_default();
                    // Graph API errors: {"error": {"message"}}; Twilio's: {"message"}.
                    let message = detail["error"]["message"]
                        .as_str()
                        .or(detail["message"].as_str())
                        .unwrap_or("no detail")
                        .to_owned();
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    (retryable, format!("the provider answered {status}: {message}"), retry_after)
                }
                // A timeout may have been delivered: resending could send it twice.
                Err(e) if e.is_timeout() => (
                    false,
                    "the provider did not answer in time; it may or may not have it".into(),
                    None,
                ),
                Err(e) => (true, format!("network: {}", e.without_url()), None),
            };
            if !retryable || attempt == attempts {
                return Err(reason);
            }
            tracing::info!(attempt, reason = %reason, "channel send retried");
            tokio::time::sleep(wait.unwrap_or(delay).min(Duration::from_secs(60))).await;
            delay *= 2;
        }
        Err("no attempt made".into())
    }
}
