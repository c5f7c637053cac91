//! Parla's messaging channels: customers reach the same conversation actors over WhatsApp, SMS
//! (Twilio) and push notifications (FCM).
//!
//! Each channel is a folder of the same shape — `mod.rs` (the provider's rules and the sealed
//! `Secrets`), `webhook.rs` (what the provider sends us; push has none) and `client.rs` (what
//! we send it) — and shares the rest:
//! - **connections** per bot ([`parla_engine::model::ChannelConnection`]), managed through the
//!   admin API, with credentials sealed at rest under the server's master keys (`parla_domain::sealing`);
//! - a **webhook** that checks the provider's signature over the raw body before anything is
//!   read, maps the sender to one conversation per (connection, contact), and hands each
//!   message to the conversation's actor in arrival order, idempotent by the provider's
//!   message id; the provider hears 200 only once every message is stored;
//! - an **outbound sink** per conversation that delivers the bot's and agents' stored
//!   messages in seq order, cut to the provider's size limit at paragraph or sentence
//!   boundaries, paced per number, retried with backoff on 429 and 5xx, and remembers in the
//!   store how far it got (so a restart resumes, and nothing is sent twice on purpose);
//! - its **health** ([`health`]): when the provider last reached us, when it last accepted a
//!   message, the last failure — in memory, per node.
//!
//! In a cluster every admin node watches every tenant with a connection, but only the holder of
//! the tenant's `channels:{tenant}` lease delivers (starts sinks, sends push notifications), so
//! a reply goes out once; when the holder dies another node takes the lease within
//! [`parla_engine::engine::LEASE_TERM`] and catches up from the stored delivery cursors.
//!
//! Dependency direction: `channels` → `engine`; never another transport.

mod health;
pub mod push;
mod sink;
pub mod sms;
pub mod whatsapp;

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use parla_config::ChannelSettings;
use parla_domain::sealing::Sealer;
use parla_domain::store::{Catalog, ChannelState, Connections, Conversations, Store};
use parla_engine::{
    Engine,
    model::{ConversationId, TenantId},
};
use tokio::runtime::Handle;

/// How often a node in a cluster looks for tenants with new channel connections.
const RESCAN: Duration = Duration::from_secs(30);

/// The channels of one server.
#[derive(Debug)]
pub struct Channels {
    engine: Engine,
    stores: ChannelStores,
    /// The server's master keys (channel credentials are sealed whole, the connection id bound
    /// to them).
    sealer: Arc<dyn Sealer>,
    settings: ChannelSettings,
    http: reqwest::Client,
    runtime: Handle,
    /// Outbound sinks running, by conversation.
    sinks: Mutex<HashMap<(TenantId, ConversationId), tokio::task::AbortHandle>>,
    /// Per business number pacing.
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    /// Tenants whose feed is watched for replies to deliver.
    watched: Mutex<HashSet<TenantId>>,
    /// Tenants this node delivers for, until when (`None`: for good, on a single node; in a
    /// cluster, until the tenant's lease could have lapsed since it was last renewed).
    leading: Mutex<HashMap<TenantId, Option<Instant>>>,
    /// FCM access tokens by connection, until a minute before they expire.
    fcm_tokens: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// What this node saw of each connection (what the console shows).
    health: health::HealthBook,
}

/// The store ports the channels use, and no other: their connections, what they remember per
/// contact, the conversations they deliver (read: a visitor's message goes in through the
/// engine, [`Engine::post_visitor_message`], whose actor is the conversation's one writer),
/// and the bots' names.
#[derive(Debug, Clone)]
pub struct ChannelStores {
    pub connections: Arc<dyn Connections>,
    pub state: Arc<dyn ChannelState>,
    pub conversations: Arc<dyn Conversations>,
    pub catalog: Arc<dyn Catalog>,
}

impl ChannelStores {
    /// The ports of one store that implements them all.
    pub fn of(store: &Arc<dyn Store>) -> Self {
        Self {
            connections: store.clone(),
            state: store.clone(),
            conversations: store.clone(),
            catalog: store.clone(),
        }
    }
}

impl Channels {
    /// Builds the channels on the current runtime; credentials are sealed with `sealer`.
    pub fn new(
        engine: Engine,
        stores: ChannelStores,
        settings: ChannelSettings,
        sealer: Arc<dyn Sealer>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            engine,
            stores,
            sealer,
            settings,
            http,
            runtime: Handle::current(),
            sinks: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            leading: Mutex::new(HashMap::new()),
            fcm_tokens: Mutex::new(HashMap::new()),
            health: health::HealthBook::default(),
        })
    }

    /// Watches every tenant with a connection (call once, at start). In a cluster it looks
    /// again every [`RESCAN`], for connections made on other nodes.
    pub async fn start(self: &Arc<Self>) {
        self.watch_all().await;
        if self.engine.clustered() {
            let weak = Arc::downgrade(self);
            self.runtime.spawn(async move {
                let mut tick = tokio::time::interval(RESCAN);
                tick.tick().await; // The first tick is now: done above.
                loop {
                    tick.tick().await;
                    let Some(this) = weak.upgrade() else { break };
                    this.watch_all().await;
                }
            });
        }
    }

    async fn watch_all(self: &Arc<Self>) {
        match self.stores.connections.all_channels().await {
            Ok(all) => {
                for connection in all {
                    self.watch(&connection.tenant_id);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not list channel connections"),
        }
    }

    /// Delivers `tenant`'s bot and agent messages on its channels from now on, and what its
    /// recent channel conversations still owe (after a restart).
    pub fn watch(self: &Arc<Self>, tenant: &TenantId) {
        if !self.watched.lock().insert(tenant.clone()) {
            return;
        }
        if self.engine.clustered() {
            self.runtime.spawn(self.clone().hold_lease(tenant.clone()));
        } else {
            self.leading.lock().insert(tenant.clone(), None); // Nobody else delivers.
            let this = self.clone();
            let tenant = tenant.clone();
            // What a previous run left undelivered.
            self.runtime.spawn(async move { this.catch_up(&tenant).await });
        }
        self.runtime.spawn(self.clone().watcher(tenant.clone()));
    }

    /// Whether this node delivers `tenant`'s channel messages now. Checked before each send:
    /// past its deadline the lease may be another node's.
    pub(crate) fn leads(&self, tenant: &TenantId) -> bool {
        match self.leading.lock().get(tenant) {
            Some(None) => true,
            Some(Some(until)) => Instant::now() < *until,
            None => false,
        }
    }

    /// Keeps `tenant`'s channel lease in a cluster: renewed on a tick of its own (whatever
    /// the deliveries are doing), valid here until a margin before it could lapse in Redis
    /// (counted from before the renewal was sent). A renewal refused, or unanswered (Redis
    /// unreachable), stops this node's sinks: better late than twice — the cursors in the
    /// store let the next holder resume.
    async fn hold_lease(self: Arc<Self>, tenant: TenantId) {
        let name = format!("channels:{}", tenant.0);
        let mut tick = tokio::time::interval(parla_engine::engine::LEASE_TERM / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let held = match self.engine.lease(&name).await {
                parla_engine::engine::Lease::Held { until } => Some(until),
                _ => None,
            };
            let holds = held.is_some();
            let gained = {
                let mut leading = self.leading.lock();
                if let Some(until) = held {
                    let was = leading.insert(tenant.clone(), Some(until));
                    was.is_none_or(|w| w.is_some_and(|w| Instant::now() >= w))
                } else {
                    leading.remove(&tenant);
                    false
                }
            };
            if gained {
                tracing::info!(tenant = %tenant, "delivering the tenant's channel messages");
                // What the previous holder (or a previous run) left undelivered.
                let (this, tenant) = (self.clone(), tenant.clone());
                self.runtime.spawn(async move { this.catch_up(&tenant).await });
            } else if !holds && self.has_sinks(&tenant) {
                tracing::info!(tenant = %tenant, "not (or no longer surely) the tenant's channel deliverer");
                self.stop_sinks(&tenant);
            }
        }
    }

    fn has_sinks(&self, tenant: &TenantId) -> bool {
        self.sinks.lock().keys().any(|(t, _)| t == tenant)
    }

    async fn watcher(self: Arc<Self>, tenant: TenantId) {
        use parla_engine::{bus::TenantEvent, model::Sender};
        use tokio::sync::broadcast::error::RecvError;
        let mut feed = self.engine.subscribe_tenant(&tenant).await;
        loop {
            let event = feed.recv().await;
            if !self.leads(&tenant) {
                if matches!(event, Err(RecvError::Closed)) {
                    break;
                }
                continue;
            }
            match event {
                Ok(event) => {
                    let TenantEvent::Conversation { conversation_id, last_message, .. } = &*event
                    else {
                        continue;
                    };
                    if let Some(message) =
                        last_message.as_ref().filter(|m| m.sender != Sender::User)
                    {
                        self.ensure_sink_for(&tenant, conversation_id).await;
                        let key = parla_engine::model::ConversationKey {
                            tenant_id: tenant.clone(),
                            conversation_id: conversation_id.clone(),
                        };
                        let (this, message) = (self.clone(), message.clone());
                        self.runtime.spawn(async move { this.notify(&key, &message).await });
                    }
                }
                // Events were dropped: the recent conversations catch up from the store.
                Err(RecvError::Lagged(_)) => {
                    let (this, tenant) = (self.clone(), tenant.clone());
                    self.runtime.spawn(async move { this.catch_up(&tenant).await });
                }
                Err(RecvError::Closed) => break,
            }
        }
    }

    /// Stops `tenant`'s sinks (another node delivers now; it resumes from their cursors).
    fn stop_sinks(&self, tenant: &TenantId) {
        self.sinks.lock().retain(|(t, _), sink| {
            if t == tenant {
                sink.abort();
            }
            t != tenant
        });
    }

    /// Starts a sink for each of `tenant`'s channel conversations that owes its contact
    /// something (its last stored message is past its delivery cursor).
    async fn catch_up(self: &Arc<Self>, tenant: &TenantId) {
        let store = &self.stores;
        let Ok(conversations) = store.state.channel_conversations(tenant).await else { return };
        for id in conversations {
            let last = store
                .conversations
                .last_message(tenant, &id)
                .await
                .ok()
                .flatten()
                .map_or(0, |m| m.seq);
            let delivered = store.state.channel_cursor(tenant, &id).await.unwrap_or(u64::MAX);
            if last > delivered {
                self.ensure_sink_for(tenant, &id).await;
            }
        }
    }

    /// These channels as the admin API's port.
    pub fn admin(self: &Arc<Self>) -> Arc<dyn parla_domain::channels::ChannelAdmin> {
        Arc::new(Admin(self.clone()))
    }

    /// The conversation of `contact` on `connection`: read when it exists (no write on the
    /// per-message path), created with its mapping in one transaction when it does not.
    async fn contact_conversation(
        &self,
        connection: &parla_engine::model::ChannelConnection,
        contact: &str,
    ) -> Result<parla_engine::model::Conversation, parla_engine::EngineError> {
        use parla_engine::model::{Conversation, ConversationId, Handling, now_ms};
        let store = &self.stores;
        let tenant = &connection.tenant_id;
        if let Some(existing) =
            store.state.find_contact_conversation(tenant, &connection.id, contact).await?
        {
            return Ok(existing);
        }
        // Counted against the month's conversations (refused past the plan's limit), taken
        // back if another first message created it meanwhile.
        let month = self.engine.billing().admit_conversation(tenant).await?;
        let fresh = Conversation {
            id: ConversationId::generate(),
            tenant_id: tenant.clone(),
            bot_id: connection.bot_id.clone(),
            resume_token_sha256: String::new(), // Not resumable from a widget.
            source: connection.kind,
            user_agent: None,
            started_at: now_ms(),
            handling: Handling::default(),
            sentiment_sum: 0.0,
            sentiment_count: 0,
            stats: Default::default(),
        };
        match store.state.contact_conversation(&connection.id, contact, &fresh).await {
            Ok(found) => {
                if found.id != fresh.id {
                    self.engine.billing().unadmit(tenant, &month).await;
                }
                Ok(found)
            }
            Err(e) => {
                self.engine.billing().unadmit(tenant, &month).await;
                Err(e.into())
            }
        }
    }

    /// A connection's credentials, unsealed.
    fn open_secrets<T: serde::de::DeserializeOwned>(
        &self,
        connection: &parla_engine::model::ChannelConnection,
    ) -> Result<T, String> {
        let plain = self
            .sealer
            .open(&connection.id, &connection.sealed_secrets)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&plain).map_err(|e| e.to_string())
    }

    /// Mounts the channels' webhooks.
    pub fn configure(self: &Arc<Self>) -> impl FnOnce(&mut actix_web::web::ServiceConfig) + use<> {
        let channels = self.clone();
        move |cfg| {
            whatsapp::routes(cfg, channels.clone());
            sms::routes(cfg, channels);
        }
    }

    /// The pacing of one business number.
    fn limiter(&self, address: &str) -> Arc<DefaultDirectRateLimiter> {
        let per_second =
            NonZeroU32::new(self.settings.whatsapp_rate_per_second).unwrap_or(NonZeroU32::MIN);
        self.limiters
            .lock()
            .entry(address.to_owned())
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(per_second))))
            .clone()
    }
}

/// Cuts `text` into pieces of at most `max` characters, preferring paragraph, then sentence,
/// then word boundaries, never splitting a character. Pieces are trimmed; none is empty.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        // Byte offset of the `max`-th character: the most this piece may hold.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let floor = limit / 2; // A boundary in the first half would waste the message.
        let cut = [
            window.rfind("\n\n").map(|i| i + 2),
            [". ", "! ", "? ", ".\n", "!\n", "?\n"]
                .iter()
                .filter_map(|p| window.rfind(p).map(|i| i + p.len()))
                .max(),
            window
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_whitespace())
                .map(|(i, c)| i + c.len_utf8()),
        ]
        .into_iter()
        .flatten()
        .find(|&i| i > floor)
        .unwrap_or(limit);
        let piece = rest[..cut].trim();
        if !piece.is_empty() {
            pieces.push(piece.to_owned());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::split_message;

    #[test]
    fn long_answers_are_cut_at_boundaries_within_the_limit() {
        let sentence = "Parla streams every answer as it is written. ";
        let text = sentence.repeat(250); // ≈ 11,000 characters.
        let pieces = split_message(&text, 4096);
        assert!(pieces.len() == 3, "{}", pieces.len());
        assert!(pieces.iter().all(|p| p.chars().count() <= 4096));
        assert!(pieces.iter().all(|p| p.ends_with('.')), "cut after sentences");
        assert_eq!(pieces.join(" "), text.trim(), "nothing lost, nothing added");

        let paragraphs = format!("{}\n\n{}", "a ".repeat(1500), "b ".repeat(1500));
        let pieces = split_message(&paragraphs, 4096);
        assert_eq!(pieces[0], "a ".repeat(1500).trim(), "the paragraph break wins");

        let unbroken = "é".repeat(5000);
        let pieces = split_message(&unbroken, 4096);
        assert_eq!(pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(), [4096, 904]);
        assert_eq!(split_message("  short  ", 4096), ["short"]);
        // Wide spaces are boundaries too, and never split in their middle.
        let ideographic = "語\u{3000}".repeat(3000);
        let pieces = split_message(&ideographic, 4096);
        assert!(pieces.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(pieces.concat().chars().filter(|c| *c == '語').count(), 3000);
        assert!(split_message("   ", 4096).is_empty());
    }
}

/// [`Channels`] as the domain's `ChannelAdmin` (watching needs the `Arc`).
#[derive(Debug)]
struct Admin(Arc<Channels>);

impl parla_domain::channels::ChannelAdmin for Admin {
    fn seal(&self, connection_id: &str, plain: &[u8]) -> String {
        self.0.sealer.seal(connection_id, plain)
    }

    fn watch(&self, tenant: &TenantId) {
        self.0.watch(tenant);
    }

    fn health(&self, connection_id: &str) -> parla_domain::channels::ChannelHealth {
        self.0.health.get(connection_id)
    }
}
