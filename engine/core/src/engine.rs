//! The engine facade that transports call: open a conversation, send events, subscribe.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use async_trait::async_trait;
use base64::Engine as _;
use parking_lot::Mutex;
use parla_config::EngineSettings;
use parla_domain::knowledge::KnowledgeBase;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::{
    EngineError,
    bus::{Bus, BusError, Envelope, Event, Inbound, InboundHandler, Subscription},
    error::WireError,
    input::VisitorInput,
    metrics::{Metrics, StoreOp},
    model::*,
    responder::Responder,
    store::Store,
    supervisor::TenantSupervisor,
};

use parla_domain::model::PrivacySettings;

/// What every actor and supervisor needs: the ports, the settings, where to spawn.
pub(crate) struct Deps {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub responder: Arc<dyn Responder>,
    pub settings: EngineSettings,
    /// The runtime actors run on. Captured at construction, so that a transport calling the
    /// engine from its own runtime (actix-web's per-worker ones) never hosts an actor.
    pub runtime: Handle,
    pub metrics: Arc<Metrics>,
    /// Bumped when a bot or its intents change, so live actors reload them before their next
    /// reply (a change takes effect on the next message, no restart). Absent = version 0.
    pub bot_versions: parking_lot::Mutex<HashMap<BotId, u64>>,
    /// Each bot with its intents as last loaded, shared by all its live actors: one copy per
    /// bot rather than per conversation, and no store read when an actor starts.
    pub bots: parking_lot::Mutex<HashMap<(TenantId, BotId), LoadedBot>>,
    /// Told each stored answer whose intent has actions (webhooks).
    pub hooks: Arc<dyn parla_domain::hooks::IntentHooks>,
    pub knowledge: Arc<dyn KnowledgeBase>,
    pub presence: Arc<crate::presence::Presence>,
    /// Plans, usage and limits.
    pub billing: Arc<crate::billing::Billing>,
    /// Marketplace bots this node loaded, by the creator's bot they follow: a change of the
    /// creator's bot reloads them too.
    pub installs: parking_lot::Mutex<HashMap<BotId, std::collections::HashSet<(TenantId, BotId)>>>,
    /// Each workspace's privacy settings as last read (see [`Deps::privacy`]).
    pub privacy: parking_lot::Mutex<HashMap<TenantId, (std::time::Instant, PrivacySettings)>>,
}

/// How long a workspace's privacy settings are trusted from cache: a change reaches every node
/// within it.
pub(crate) const PRIVACY_TTL: std::time::Duration = std::time::Duration::from_secs(3);

/// A bot and its intents, loaded at `version` (see [`Deps::bot_versions`]).
#[derive(Debug, Clone)]
pub(crate) struct LoadedBot {
    pub version: u64,
    loaded_at: std::time::Instant,
    pub bot: Arc<Bot>,
    pub intents: Arc<Vec<Intent>>,
    pub index: Arc<crate::responder::builtin::IntentIndex>,
}

impl Deps {
    /// Awaits a store call, timed as `op` (`parla_store_operation_seconds`).
    pub async fn timed<T>(&self, op: StoreOp, call: impl Future<Output = T>) -> T {
        self.metrics.store_call(op, call).await
    }

    /// The workspace's privacy settings (cached for [`PRIVACY_TTL`]); on a store failure, the
    /// last known or, never read, everything masked: a hiccup never stores clear text a
    /// workspace asked to mask.
    pub async fn privacy(&self, tenant: &TenantId) -> PrivacySettings {
        let cached = self.privacy.lock().get(tenant).copied();
        if let Some((at, settings)) = cached
            && at.elapsed() < PRIVACY_TTL
        {
            return settings;
        }
        match self.timed(StoreOp::GetTenant, self.store.get_tenant(tenant)).await {
            Ok(found) => {
                let settings = found.map(|t| t.privacy).unwrap_or_default();
                self.privacy.lock().insert(tenant.clone(), (std::time::Instant::now(), settings));
                settings
            }
            Err(_) => cached
                .map(|(_, s)| s)
                .unwrap_or(PrivacySettings { redact_transcripts: true, redact_llm: true }),
        }
    }

    pub fn bot_version(&self, bot: &BotId) -> u64 {
        self.bot_versions.lock().get(bot).copied().unwrap_or(0)
    }

    /// The bot and its intents at their current version: from the cache, or read from the
    /// store and cached. `None` when the bot does not exist (any more).
    pub async fn load_bot(
        &self,
        tenant: &TenantId,
        bot: &BotId,
    ) -> Result<Option<LoadedBot>, crate::store::StoreError> {
        // Read before loading: a change during the load bumps it again, so what we cache is
        // never mistaken for the newer version.
        let version = self.bot_version(bot);
        let key = (tenant.clone(), bot.clone());
        // Re-read now and then all the same: in a cluster, a change is announced over Redis
        // pub/sub, which may drop it.
        let fresh = |b: &&LoadedBot| {
            b.version == version && b.loaded_at.elapsed() < std::time::Duration::from_secs(60)
        };
        if let Some(loaded) = self.bots.lock().get(&key).filter(fresh) {
            return Ok(Some(loaded.clone()));
        }
        let started = std::time::Instant::now();
        let Some(found) = self.store.get_bot(tenant, bot).await? else {
            self.bots.lock().remove(&key);
            return Ok(None);
        };
        // An installed bot answers with the creator's bot: its messages, personality, language
        // and intents (its own name, appearance, origins and channels stay its own).
        let (found, intents) = match found.installed_from.clone() {
            None => (found, self.store.list_intents(tenant, bot).await?),
            Some(from) => {
                self.installs
                    .lock()
                    .entry(from.bot_id.clone())
                    .or_default()
                    .insert((tenant.clone(), bot.clone()));
                match self.store.get_bot(&from.tenant_id, &from.bot_id).await? {
                    Some(source) => {
                        let intents =
                            self.store.list_intents(&from.tenant_id, &from.bot_id).await?;
                        let config = source.config;
                        (Bot { config, language: source.language, ..found }, intents)
                    }
                    // The creator deleted it: the fallback message alone.
                    None => (found, Vec::new()),
                }
            }
        };
        self.metrics.store_took(StoreOp::LoadBot, started.elapsed());
        let loaded = LoadedBot {
            version,
            loaded_at: std::time::Instant::now(),
            bot: Arc::new(found),
            index: Arc::new(crate::responder::builtin::IntentIndex::new(&intents)),
            intents: Arc::new(intents),
        };
        let mut bots = self.bots.lock();
        if bots.get(&key).is_none_or(|cached| cached.version <= version) {
            bots.insert(key, loaded.clone());
        }
        Ok(Some(loaded))
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("store", &self.store)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// A request to open (or resume) a visitor's conversation with a bot.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub bot_id: BotId,
    /// To resume: the conversation and the token the visitor got when it was created.
    pub resume: Option<(ConversationId, String)>,
    pub user_agent: Option<String>,
    /// Where a new conversation comes from. [`Channel::Preview`] opens the bot whatever its
    /// status and origins, so only the admin API asks for it, once it has checked that the bot
    /// is the caller's tenant's and that the caller may edit it (`bots:write`).
    pub source: Channel,
    /// The browser page's `Origin`, checked against the bot's allowed origins; `None` for
    /// clients that are not browser pages.
    pub origin: Option<String>,
}

/// Conversations waiting for or held by agents an inbox shows at most (the longest waiting
/// first): more than a desk of agents can work through, and a bound on one answer's size. The
/// dispatcher reads them all, a page at a time.
pub const INBOX_NEEDING_AGENTS: usize = 1_000;

/// Conversations read from the store's index of those needing agents per page.
const NEEDING_AGENTS_PAGE: usize = 500;

/// Store reads an inbox makes at once (each entry's last message).
const INBOX_READS_AT_ONCE: usize = 16;

/// How [`Engine::delete_conversation`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted (or already gone).
    Deleted,
    /// Its actor could not delete it (a store failure); why, fit for a tenant.
    Refused(String),
    /// Not confirmed in time: it may yet happen; retry.
    TimedOut,
}

/// An open conversation.
#[derive(Debug, Clone)]
pub struct Opened {
    pub key: ConversationKey,
    pub bot: Bot,
    /// The secret that lets this visitor resume the conversation later.
    pub resume_token: String,
    /// The highest stored seq.
    pub last_seq: u64,
    /// Who handles it (a resumed conversation may be with an agent).
    pub handling: Handling,
    /// A new conversation is not stored yet: see [`Pending`].
    pub pending: Option<Pending>,
}

/// A conversation a visitor opened but has not written in yet: nothing is stored and no actor
/// runs for it until [`Engine::materialize`] (the visitor's first message). An anonymous
/// `hello` therefore costs no disk, no analytics row, no inbox entry and no actor, so a flood
/// of them cannot push real visitors out of anything. The bot's greeting is decided now, with
/// its seq and id, so the visitor sees it at once and the store later holds exactly what was
/// shown.
#[derive(Debug, Clone)]
pub struct Pending {
    pub conversation: Conversation,
    /// The bot's welcome message as seq 1, when the bot has one.
    pub greeting: Option<Message>,
}

/// How many of the newest conversations an agent's inbox looks at.
pub const INBOX_SCAN: usize = 500;

/// How long a cluster-wide lease lasts unless renewed ([`Engine::lease`]).
pub const LEASE_TERM: std::time::Duration = std::time::Duration::from_secs(3);
/// A held lease counts here until this long before it could lapse in Redis (clock drift, the
/// time a renewal's answer took).
pub const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_millis(750);

/// What [`Engine::lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This node holds it (always, on a single node), surely until `until`.
    Held { until: std::time::Instant },
    /// Another node holds it.
    Elsewhere,
    /// The cluster could not say (Redis unreachable); `until` is when the term would end had
    /// this node held it. The caller chooses whether to act.
    Unknown { until: std::time::Instant },
}

/// The engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deps: Arc<Deps>,
    /// The longest visitor text ([`Engine::max_text_chars`]).
    max_text_chars: usize,
    /// One supervisor per tenant with live conversations; created on first use.
    tenants: Mutex<HashMap<TenantId, Arc<TenantSupervisor>>>,
    /// Tenants whose dispatcher runs (started when their first agent signs in).
    dispatchers: Mutex<std::collections::HashSet<TenantId>>,
    /// Visitor sockets open per conversation (so channels know who is offline).
    visitors: Mutex<HashMap<ConversationKey, usize>>,
    /// The last readiness probe and when it ran. An async mutex held across the probe: callers
    /// arriving meanwhile wait for its result instead of probing again.
    readiness: tokio::sync::Mutex<Option<(std::time::Instant, Arc<crate::health::Readiness>)>>,
}

/// Holds a visitor's socket as connected until dropped.
#[derive(Debug)]
pub struct VisitorGuard {
    engine: Weak<Inner>,
    key: ConversationKey,
}

impl Drop for VisitorGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.engine.upgrade() {
            let mut visitors = inner.visitors.lock();
            if let Some(n) = visitors.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    visitors.remove(&self.key);
                }
            }
        }
    }
}

/// The engine without keeping it alive (for its own background tasks).
#[derive(Debug, Clone)]
pub(crate) struct WeakEngine(Weak<Inner>);

impl WeakEngine {
    pub(crate) fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

/// The bus's inbound handler: routes to the tenant's supervisor. Weak, so the bus does not keep
/// the engine alive.
struct Router(Weak<Inner>);

#[async_trait]
impl InboundHandler for Router {
    async fn handle(&self, envelope: Envelope) -> Result<(), EngineError> {
        let inner = self.0.upgrade().ok_or(EngineError::ShuttingDown)?;
        let supervisor = inner.supervisor(&envelope.key.tenant_id);
        supervisor.deliver(envelope).await
    }

    async fn release(&self, which: crate::bus::Releasing) {
        let Some(inner) = self.0.upgrade() else { return };
        let supervisors: Vec<_> = inner.tenants.lock().values().cloned().collect();
        // Every moving actor is told at once, before any wait: a caller that stops waiting
        // (the handover's time is up) leaves none of them untold.
        let released: Vec<_> = supervisors.iter().flat_map(|s| s.release(&which)).collect();
        tracing::info!(released = released.len(), "releasing conversations to other nodes");
        futures_util::future::join_all(released.iter().map(|h| h.stopped())).await;
        tracing::info!(released = released.len(), "released conversations to other nodes");
    }

    fn bot_changed(&self, tenant: &TenantId, bot: &BotId) {
        if let Some(inner) = self.0.upgrade() {
            inner.bot_changed_here(tenant, bot);
        }
    }
}

impl Inner {
    /// `bot` (of `tenant`) changed: this node's live conversations reload it before their
    /// next reply. (The bus's handler calls this for other nodes' changes: the bus reaches the
    /// actors' host, never the facade.)
    fn bot_changed_here(&self, tenant: &TenantId, bot: &BotId) {
        // The bot, and the marketplace copies of it this node hosts (they follow it).
        let installs = self.deps.installs.lock().get(bot).cloned().unwrap_or_default();
        let changed = std::iter::once((tenant.clone(), bot.clone())).chain(installs);
        for (tenant, bot) in changed {
            *self.deps.bot_versions.lock().entry(bot.clone()).or_insert(0) += 1;
            let supervisor = self.tenants.lock().get(&tenant).cloned();
            if let Some(supervisor) = supervisor {
                supervisor.notify_all(|| Inbound::BotChanged { bot: bot.clone() });
            }
        }
    }

    fn supervisor(&self, tenant: &TenantId) -> Arc<TenantSupervisor> {
        self.tenants
            .lock()
            .entry(tenant.clone())
            .or_insert_with(|| TenantSupervisor::new(tenant.clone(), self.deps.clone()))
            .clone()
    }
}

/// What an engine is built from: the ports' adapters, which the binary chooses (the engine
/// names none), and the settings.
#[derive(Debug)]
pub struct EngineParts {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub responder: Arc<dyn Responder>,
    /// Told each stored answer whose intent has actions (webhooks).
    pub hooks: Arc<dyn parla_domain::hooks::IntentHooks>,
    /// Built by the caller, so adapters can count into it (webhook outcomes).
    pub metrics: Arc<Metrics>,
    pub settings: EngineSettings,
    /// The bots' knowledge bases: searched for each answer, forgotten with a deleted bot, and
    /// handed to the admin API ([`Engine::knowledge`]).
    pub knowledge: Arc<dyn KnowledgeBase>,
    /// The longest visitor text, in characters, however it comes in (`gateway.max_text_chars`).
    pub max_text_chars: usize,
    /// Plans, usage and limits (built by the caller: the admin API shares it).
    pub billing: Arc<crate::billing::Billing>,
}

impl Engine {
    /// Builds an engine on the current tokio runtime and binds it to its bus.
    pub fn new(parts: EngineParts) -> Self {
        let EngineParts {
            store,
            bus,
            responder,
            hooks,
            metrics,
            settings,
            knowledge,
            max_text_chars,
            billing,
        } = parts;
        let presence = crate::presence::Presence::new(
            std::time::Duration::from_millis(settings.presence_timeout_ms.max(1)),
            bus.clone(),
        );
        presence.start_sweeper();
        let deps = Arc::new(Deps {
            store,
            bus: bus.clone(),
            responder,
            settings,
            runtime: Handle::current(),
            metrics,
            bot_versions: parking_lot::Mutex::new(HashMap::new()),
            bots: parking_lot::Mutex::new(HashMap::new()),
            hooks,
            knowledge,
            presence,
            billing,
            installs: parking_lot::Mutex::new(HashMap::new()),
            privacy: parking_lot::Mutex::new(HashMap::new()),
        });
        let inner = Arc::new(Inner {
            deps,
            max_text_chars: max_text_chars.max(1),
            tenants: Mutex::new(HashMap::new()),
            dispatchers: Mutex::new(std::collections::HashSet::new()),
            visitors: Mutex::new(HashMap::new()),
            readiness: tokio::sync::Mutex::new(None),
        });
        bus.bind(Arc::new(Router(Arc::downgrade(&inner))));
        Self { inner }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.deps.store
    }

    /// Plans, usage and limits.
    pub fn billing(&self) -> &Arc<crate::billing::Billing> {
        &self.inner.deps.billing
    }

    /// Takes or renews the cluster-wide lease `name` for [`LEASE_TERM`] (see
    /// [`crate::bus::Bus::lease`]); callers renew it every third of the term.
    pub async fn lease(&self, name: &str) -> Lease {
        let asked = std::time::Instant::now();
        // Counted from before the request: the lease may have been renewed at its start.
        let until = asked + LEASE_TERM - LEASE_MARGIN;
        match self.inner.deps.bus.lease(name, LEASE_TERM).await {
            None | Some(Ok(true)) => Lease::Held { until },
            Some(Ok(false)) => Lease::Elsewhere,
            Some(Err(e)) => {
                tracing::warn!(error = %e, lease = name, "lease unknown");
                Lease::Unknown { until }
            }
        }
    }

    /// Whether other nodes share the work (distributed mode).
    pub fn clustered(&self) -> bool {
        self.inner.deps.bus.redelivers()
    }

    /// The longest visitor text, in characters: every transport checks a visitor's text
    /// against it with `parla_domain::input` (the widget and the REST API refuse longer, the
    /// channels store it cut).
    pub fn max_text_chars(&self) -> usize {
        self.inner.max_text_chars
    }

    /// The bots' knowledge bases: documents and retrieval.
    pub fn knowledge(&self) -> &Arc<dyn KnowledgeBase> {
        &self.inner.deps.knowledge
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.deps.metrics
    }

    /// Whether this node can do its work: every port it depends on answered a cheap request
    /// in time (see [`crate::health`]). Probed at most once per [`crate::health::CACHE_FOR`].
    pub async fn readiness(&self) -> Arc<crate::health::Readiness> {
        let mut last = self.inner.readiness.lock().await;
        if let Some((at, readiness)) = last.as_ref()
            && at.elapsed() < crate::health::CACHE_FOR
        {
            return readiness.clone();
        }
        let readiness = Arc::new(crate::health::probe(&self.inner.deps).await);
        crate::health::log_changes(last.as_ref().map(|(_, r)| &**r), &readiness);
        *last = Some((std::time::Instant::now(), readiness.clone()));
        readiness
    }

    /// Every metric in Prometheus' text format ([`crate::metrics::CONTENT_TYPE`]), with each
    /// tenant's live conversations read from its supervisor now.
    pub fn render_metrics(&self) -> String {
        // Copied out first: a supervisor's lock is never taken under the tenants' lock.
        let supervisors: Vec<_> = self.inner.tenants.lock().values().cloned().collect();
        let tenants = supervisors.iter().map(|s| (s.tenant().as_str().to_owned(), s.live()));
        self.inner.deps.metrics.render(tenants)
    }

    /// The bot a page at `origin` may chat with: it exists, is active, and allows the origin
    /// (the rule a widget's `hello` and its public settings both apply).
    pub async fn embeddable_bot(
        &self,
        id: &BotId,
        origin: Option<&str>,
    ) -> Result<Bot, EngineError> {
        let bot = self.existing_bot(id).await?;
        embeddable(&bot, origin)?;
        paid_for(&self.inner.deps, &bot).await?;
        Ok(bot)
    }

    /// Bot `id`, whatever its status.
    async fn existing_bot(&self, id: &BotId) -> Result<Bot, EngineError> {
        let (store, deps) = (&self.inner.deps.store, &self.inner.deps);
        deps.timed(StoreOp::ResolveBot, store.resolve_bot(id))
            .await?
            .ok_or(EngineError::BotNotFound)
    }

    /// `text` with a lone `/shortcut` replaced by the tenant's canned response of that name
    /// (what an agent types); `Err(shortcut)` when it names none.
    pub async fn expand_canned(
        &self,
        tenant: &TenantId,
        text: String,
    ) -> Result<Result<String, String>, EngineError> {
        let trimmed = text.trim();
        let Some(shortcut) = trimmed.strip_prefix('/').filter(|s| is_shortcut(s)) else {
            return Ok(Ok(text));
        };
        let all = self.inner.deps.store.list_canned(tenant).await?;
        let found = all.into_iter().find(|c| c.shortcut == shortcut).map(|c| c.text);
        Ok(found.ok_or_else(|| shortcut.to_owned()))
    }

    /// Registers a device to notify of the conversation's replies while its visitor is away.
    pub async fn add_push_token(
        &self,
        key: &ConversationKey,
        token: &str,
    ) -> Result<(), EngineError> {
        let store = &self.inner.deps.store;
        Ok(store.add_push_token(&key.tenant_id, &key.conversation_id, token).await?)
    }

    /// Opens a new conversation with an active bot, or resumes one with its token.
    ///
    /// A preview ([`Channel::Preview`]) is the exception to "active" and to the bot's allowed
    /// origins: a new one is opened whatever the bot's status (the admin API asks, for a caller
    /// who may edit the bot), and one is resumed with its token from any page. The conversation
    /// is therefore looked up before those checks, and a preview passes them only with its
    /// right token; any other resume meets the checks first, as an unknown conversation does.
    pub async fn open(&self, request: OpenRequest) -> Result<Opened, EngineError> {
        let (store, deps) = (&self.inner.deps.store, &self.inner.deps);
        let bot = self.existing_bot(&request.bot_id).await?;
        let resumed = match &request.resume {
            Some((conversation_id, token)) => {
                // The bot's tenant: another tenant's conversation is not found through it.
                let conversation = store.get_conversation(&bot.tenant_id, conversation_id);
                let conversation = deps
                    .timed(StoreOp::GetConversation, conversation)
                    .await?
                    .filter(|c| c.bot_id == bot.id);
                let token_ok = conversation.as_ref().is_some_and(|c| {
                    constant_time_eq(token_hash(token).as_bytes(), c.resume_token_sha256.as_bytes())
                });
                Some((conversation, token_ok))
            }
            None => None,
        };
        let preview = match &resumed {
            Some((conversation, token_ok)) => {
                *token_ok && conversation.as_ref().is_some_and(|c| c.source == Channel::Preview)
            }
            None => request.source == Channel::Preview,
        };
        if !preview {
            embeddable(&bot, request.origin.as_deref())?;
        }
        match request.resume.zip(resumed) {
            Some(((_, token), (conversation, token_ok))) => {
                let conversation = conversation.ok_or(EngineError::ConversationNotFound)?;
                if !token_ok {
                    return Err(EngineError::InvalidResumeToken);
                }
                let key = conversation.key();
                let last_seq = store.last_seq(&key.tenant_id, &key.conversation_id);
                let last_seq = deps.timed(StoreOp::LastSeq, last_seq).await?;
                let handling = conversation.handling;
                Ok(Opened { key, bot, resume_token: token, last_seq, handling, pending: None })
            }
            None => {
                let token = new_resume_token();
                let now = now_ms();
                let conversation = Conversation {
                    id: ConversationId::generate(),
                    tenant_id: bot.tenant_id.clone(),
                    bot_id: bot.id.clone(),
                    resume_token_sha256: token_hash(&token),
                    source: request.source,
                    user_agent: request.user_agent,
                    started_at: now,
                    handling: Handling::default(),
                    sentiment_sum: 0.0,
                    sentiment_count: 0,
                    stats: Default::default(),
                };
                let greeting = bot.config.welcome_message.clone().map(|text| Message {
                    created_at: now,
                    ..Message::text(&conversation.key(), 1, Sender::Bot, text, None)
                });
                Ok(Opened {
                    key: conversation.key(),
                    bot,
                    resume_token: token,
                    last_seq: 0,
                    handling: Handling::default(),
                    pending: Some(Pending { conversation, greeting }),
                })
            }
        }
    }

    /// Stores a conversation [`Engine::open`] left pending, with its greeting, before the
    /// visitor's first message goes to its actor. Idempotent: a retry after a failure (or after
    /// success) stores nothing twice. No actor runs for the conversation yet (none can start
    /// before it is in the store), so this writes alone — save for a resume from another tab
    /// between the two writes, whose actor may greet first: seq 1 is then that greeting, and
    /// this one is not stored (the tab that opened it showed a greeting with another id).
    pub async fn materialize(&self, pending: &Pending) -> Result<(), EngineError> {
        let deps = &self.inner.deps;
        // Its bot may have been deleted since the hello. (Should it go between this read and
        // the write, the conversation's actor deletes it when it wakes: see the actor's
        // `orphaned`.)
        let bot = deps.store.resolve_bot(&pending.conversation.bot_id);
        if deps.timed(StoreOp::ResolveBot, bot).await?.is_none() {
            return Err(EngineError::BotNotFound);
        }
        // Counted against the month's conversations first (refused past the plan's limit);
        // taken back when it was stored before (a retry) or could not be stored.
        let tenant = &pending.conversation.tenant_id;
        let month = deps.billing.admit_conversation(tenant).await?;
        let created = deps.store.create_conversation(&pending.conversation);
        match deps.timed(StoreOp::CreateConversation, created).await {
            Ok(()) => {}
            Err(crate::store::StoreError::ConversationExists) => {
                deps.billing.unadmit(tenant, &month).await;
            }
            Err(e) => {
                deps.billing.unadmit(tenant, &month).await;
                return Err(e.into());
            }
        }
        if let Some(greeting) = &pending.greeting {
            match deps.timed(StoreOp::Append, deps.store.append(greeting)).await {
                Ok(_) => {
                    let channel = pending.conversation.source;
                    deps.metrics.message_stored(channel, crate::metrics::Direction::Out);
                }
                // Seq 1 taken: this greeting was stored by an earlier try (the same message), or
                // the visitor resumed from another tab, whose actor greeted first. Either way
                // the conversation has its first message.
                Err(crate::store::StoreError::SeqConflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Live events of a conversation from now on, plus those addressed to `conn` (acks of its
    /// duplicates, refusals of its events).
    pub async fn subscribe(&self, key: &ConversationKey, conn: Option<ConnId>) -> Subscription {
        self.inner.deps.bus.subscribe(key, conn).await
    }

    /// Stored messages after `after_seq`, in order, at most `limit`.
    pub async fn history(
        &self,
        key: &ConversationKey,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, EngineError> {
        let deps = &self.inner.deps;
        let page =
            deps.store.messages_after(&key.tenant_id, &key.conversation_id, after_seq, limit);
        Ok(deps.timed(StoreOp::MessagesAfter, page).await?)
    }

    /// Sends an event to the conversation's actor (through the bus). Returns once the actor's
    /// mailbox has it; the outcome arrives as events on the conversation's subscription.
    pub async fn send(
        &self,
        key: ConversationKey,
        origin: Option<ConnId>,
        inbound: Inbound,
    ) -> Result<(), EngineError> {
        let envelope = Envelope::new(key, origin, inbound);
        match self.inner.deps.bus.deliver(envelope).await {
            Ok(()) => Ok(()),
            Err(BusError::Refused(e)) => Err(e),
            Err(BusError::Unbound) => Err(EngineError::ShuttingDown),
            Err(BusError::Transport(e)) => {
                tracing::error!(error = %e, "bus delivery failed");
                Err(EngineError::Internal)
            }
        }
    }

    /// Saves `bot` (new or changed) and tells its live conversations, on every node: each
    /// reloads it before its next reply, and one whose bot is no longer active tells its
    /// visitors at once. The one way a bot's settings change, so no caller forgets the news.
    pub async fn save_bot(&self, bot: &Bot) -> Result<(), EngineError> {
        self.inner.deps.store.put_bot(bot).await?;
        self.bot_changed(&bot.tenant_id, &bot.id);
        Ok(())
    }

    /// Saves `bot`'s whole intent list and tells its live conversations (as [`Engine::save_bot`]).
    pub async fn save_intents(
        &self,
        tenant: &TenantId,
        bot: &BotId,
        intents: &[Intent],
    ) -> Result<(), EngineError> {
        self.inner.deps.store.put_intents(tenant, bot, intents).await?;
        self.bot_changed(tenant, bot);
        Ok(())
    }

    /// Tells live conversations that `bot` (of `tenant`) or its intents changed in the store.
    fn bot_changed(&self, tenant: &TenantId, bot: &BotId) {
        self.inner.bot_changed_here(tenant, bot);
        self.inner.deps.bus.announce_bot_changed(tenant, bot);
    }

    /// A visitor's input from a server-side source (the REST API, a channel webhook): checked
    /// ([`VisitorInput::check`], against [`Engine::max_text_chars`]), sent to the
    /// conversation's actor, and returned once stored — `(message, true)` when its
    /// `client_msg_id` was stored before (the original). The actor's refusal comes back as
    /// its error ([`EngineError::NotStored`] for a store failure);
    /// [`EngineError::NotConfirmed`] if not confirmed within `wait`.
    pub async fn post_visitor_message(
        &self,
        key: ConversationKey,
        input: VisitorInput,
        wait: std::time::Duration,
    ) -> Result<(Message, bool), EngineError> {
        input.check(self.max_text_chars())?;
        let conn = ConnId::generate();
        // Subscribe first, so the stored message cannot be published before we listen.
        let mut events = self.subscribe(&key, Some(conn)).await;
        let client_msg_id = input.client_msg_id.clone();
        self.send(key.clone(), Some(conn), Inbound::VisitorMessage(input)).await?;
        let confirmed = async {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    // Fell behind: the confirmation may be among the events dropped. The store
                    // has the message once it is stored (if not yet, the wait runs out and the
                    // caller retries, which the idempotency key makes safe).
                    Err(crate::bus::RecvError::Lagged(_)) => {
                        let (t, c) = (&key.tenant_id, &key.conversation_id);
                        let store = &self.inner.deps.store;
                        if let Ok(Some(message)) =
                            store.message_by_client_id(t, c, &client_msg_id).await
                        {
                            return Ok((message, false));
                        }
                        continue;
                    }
                    Err(crate::bus::RecvError::Closed) => return Err(EngineError::NotStored),
                };
                match &*event {
                    Event::Message { message }
                        if message.client_msg_id.as_deref() == Some(client_msg_id.as_str()) =>
                    {
                        return Ok((message.clone(), false));
                    }
                    Event::Ack { conn: to, message } if *to == conn => {
                        return Ok((message.clone(), true));
                    }
                    Event::Rejected { conn: Some(to), code, message, .. } if *to == conn => {
                        tracing::warn!(code = %code, "a posted visitor message was refused");
                        return Err(refusal(code, message));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(wait, confirmed).await.unwrap_or(Err(EngineError::NotConfirmed))
    }

    /// Deletes a conversation through its actor (the single writer: nothing is appended behind
    /// the deletion; connected sockets are told) and waits for the outcome, at most `wait`.
    pub async fn delete_conversation(
        &self,
        key: &ConversationKey,
        wait: std::time::Duration,
    ) -> Result<Deletion, EngineError> {
        let conn = ConnId::generate();
        // Subscribed first, so the confirmation cannot be published before we listen.
        let mut events = self.subscribe(key, Some(conn)).await;
        self.send(key.clone(), Some(conn), Inbound::Delete).await?;
        let store = &self.inner.deps.store;
        let gone = || async {
            matches!(store.get_conversation(&key.tenant_id, &key.conversation_id).await, Ok(None))
        };
        let outcome = async {
            loop {
                match events.recv().await {
                    Ok(event) => match &*event {
                        Event::Rejected { code, .. } if code == "conversation_deleted" => {
                            return Deletion::Deleted;
                        }
                        Event::Rejected { conn: Some(to), message, .. } if *to == conn => {
                            // Refused because it is gone already: as good as deleted.
                            if gone().await {
                                return Deletion::Deleted;
                            }
                            return Deletion::Refused(message.clone());
                        }
                        _ => {}
                    },
                    // Fell behind: the confirmation may be among the events dropped.
                    Err(crate::bus::RecvError::Lagged(_)) => {
                        if gone().await {
                            return Deletion::Deleted;
                        }
                    }
                    Err(crate::bus::RecvError::Closed) => return Deletion::Deleted,
                }
            }
        };
        Ok(tokio::time::timeout(wait, outcome).await.unwrap_or(Deletion::TimedOut))
    }

    /// Deletes a bot of `tenant` with everything it has: its intents, documents and channel
    /// connections at once (widgets and webhooks find nothing from now on), then every one of
    /// its conversations — messages, form data, notes, push tokens, contact mappings — each
    /// through its own actor, in the background. The store keeps a tombstone until the last
    /// conversation is gone, so a restart finishes the job ([`Engine::resume_bot_deletions`]).
    /// Returns whether the bot existed.
    pub async fn delete_bot(&self, tenant: &TenantId, bot: &BotId) -> Result<bool, EngineError> {
        if !self.inner.deps.store.delete_bot(tenant, bot).await? {
            return Ok(false);
        }
        self.bot_changed(tenant, bot);
        self.knowledge().forget_bot(tenant, bot).await;
        self.spawn_purge(tenant.clone(), bot.clone());
        Ok(true)
    }

    /// Carries on deleting the conversations of bots deleted before a restart.
    pub async fn resume_bot_deletions(&self) -> Result<usize, EngineError> {
        let tombstones = self.inner.deps.store.bot_tombstones().await?;
        let n = tombstones.len();
        for (tenant, bot) in tombstones {
            self.spawn_purge(tenant, bot);
        }
        Ok(n)
    }

    fn spawn_purge(&self, tenant: TenantId, bot: BotId) {
        let weak = WeakEngine(Arc::downgrade(&self.inner));
        self.inner.deps.runtime.spawn(async move {
            let mut pause = std::time::Duration::from_millis(200);
            loop {
                let Some(engine) = weak.upgrade() else { return };
                match engine.purge_bot(&tenant, &bot).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, bot = %bot, error = %e, "deleting a deleted bot's conversations; retrying");
                    }
                }
                drop(engine);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(60));
            }
        });
    }

    /// One pass over a deleted bot's conversations, a page at a time, a few at once; done when
    /// none is left, and then the tombstone goes.
    async fn purge_bot(&self, tenant: &TenantId, bot: &BotId) -> Result<(), EngineError> {
        use futures_util::StreamExt;
        /// Deletions in flight at once: enough to go fast, few enough not to crowd the live
        /// conversations' actors and the store.
        const AT_ONCE: usize = 8;
        let store = &self.inner.deps.store;
        // The tombstone says the owner asked; a deletion of the bot itself that failed part-way
        // (a CQL store writes the tombstone first) is finished before any conversation goes, so
        // a bot that still answers never loses its conversations under it.
        if store.get_bot(tenant, bot).await?.is_some() {
            store.delete_bot(tenant, bot).await?;
            self.bot_changed(tenant, bot);
            self.knowledge().forget_bot(tenant, bot).await;
        }
        let mut deleted = 0usize;
        loop {
            let page = store.list_conversations(tenant, bot, None, 100).await?;
            if page.is_empty() {
                break;
            }
            let outcomes: Vec<_> = futures_util::stream::iter(page)
                .map(|c| async move {
                    self.delete_conversation(&c.key(), std::time::Duration::from_secs(30)).await
                })
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            let mut progress = false;
            for outcome in outcomes {
                match outcome? {
                    Deletion::Deleted => {
                        deleted += 1;
                        progress = true;
                    }
                    Deletion::Refused(why) => {
                        tracing::warn!(%why, "a conversation refused deletion")
                    }
                    Deletion::TimedOut => {}
                }
            }
            if !progress {
                return Err(EngineError::ConversationBusy);
            }
        }
        store.clear_bot_tombstone(tenant, bot).await?;
        tracing::info!(tenant = %tenant, bot = %bot, conversations = deleted, "a deleted bot's conversations are gone");
        Ok(())
    }

    /// Runs an agent's command in the conversation's actor and returns its verdict.
    pub async fn command(
        &self,
        key: ConversationKey,
        command: crate::agents::AgentCommand,
    ) -> Result<crate::agents::CommandOutcome, EngineError> {
        if let Some(outcome) = self.inner.deps.bus.command(&key, &command).await {
            return outcome; // Ran on the node hosting the conversation.
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let supervisor = self.inner.supervisor(&key.tenant_id);
        let msg = crate::actor::ActorMsg::Command(Box::new(command), tx);
        supervisor.deliver_msg(key.conversation_id, msg).await?;
        // Dropped unanswered only if the actor panicked on it.
        rx.await.unwrap_or(Err(EngineError::Internal))
    }

    /// The tenant's inbox: the conversations that wait for an agent or are held by one,
    /// whatever their age (an index, so a flood of other conversations cannot hide one; the
    /// [`INBOX_NEEDING_AGENTS`] longest waiting when there are more), then the newest `scan`
    /// others that are not resolved (the bot's); waiting ones first (see
    /// [`crate::agents::inbox_order`]).
    pub async fn inbox(
        &self,
        tenant: &TenantId,
        scan: usize,
    ) -> Result<Vec<crate::agents::InboxEntry>, EngineError> {
        use futures_util::{StreamExt, TryStreamExt};
        let store = &self.inner.deps.store;
        let mut conversations = self.needing_agents(tenant).await?;
        // Waiting ones by how long they have waited, then those held.
        conversations.sort_by_key(|c| {
            (c.handling.status != ConversationStatus::Escalated, c.handling.waiting_since)
        });
        conversations.truncate(INBOX_NEEDING_AGENTS);
        let mut seen: std::collections::HashSet<ConversationId> =
            conversations.iter().map(|c| c.id.clone()).collect();
        for c in store.list_tenant_conversations(tenant, None, scan).await? {
            let for_agents =
                c.handling.status != ConversationStatus::Resolved && c.source != Channel::Preview;
            if for_agents && seen.insert(c.id.clone()) {
                conversations.push(c);
            }
        }
        let mut entries: Vec<_> = futures_util::stream::iter(conversations)
            .map(|c| async move {
                let last = store.last_message(tenant, &c.id).await?;
                Ok::<_, EngineError>(inbox_entry(&c, last.as_ref()))
            })
            .buffered(INBOX_READS_AT_ONCE)
            .try_collect()
            .await?;
        entries.sort_by(crate::agents::inbox_order);
        Ok(entries)
    }

    /// Every conversation of `tenant` that waits for an agent or is held by one, from the
    /// store's index, a page at a time: none is left out, however many there are, save
    /// previews (the tenant trying its bot is no visitor for agents; the inbox and the
    /// dispatcher read this).
    pub async fn needing_agents(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<Conversation>, EngineError> {
        let store = &self.inner.deps.store;
        let mut all: Vec<Conversation> = Vec::new();
        loop {
            let after = all.last().map(|c| c.id.clone());
            let page =
                store.attention_conversations(tenant, after.as_ref(), NEEDING_AGENTS_PAGE).await?;
            let full = page.len() == NEEDING_AGENTS_PAGE;
            all.extend(page);
            if !full {
                all.retain(|c| c.source != Channel::Preview);
                return Ok(all);
            }
        }
    }

    /// One conversation of `tenant`, as the inbox shows it.
    pub async fn inbox_entry(
        &self,
        tenant: &TenantId,
        id: &ConversationId,
    ) -> Result<Option<crate::agents::InboxEntry>, EngineError> {
        let store = &self.inner.deps.store;
        let Some(c) = store.get_conversation(tenant, id).await? else { return Ok(None) };
        let last = store.last_message(tenant, id).await?;
        Ok(Some(inbox_entry(&c, last.as_ref())))
    }

    /// A visitor's socket is on the conversation until the guard is dropped.
    pub fn visitor_joined(&self, key: &ConversationKey) -> VisitorGuard {
        *self.inner.visitors.lock().entry(key.clone()).or_insert(0) += 1;
        VisitorGuard { engine: Arc::downgrade(&self.inner), key: key.clone() }
    }

    /// How many of the tenant's conversations have a visitor's socket on them; `None` in a
    /// cluster, where this node sees only the sockets it serves.
    pub fn visitors_online(&self, tenant: &TenantId) -> Option<usize> {
        if self.clustered() {
            return None;
        }
        Some(self.inner.visitors.lock().keys().filter(|k| k.tenant_id == *tenant).count())
    }

    /// Whether a visitor's socket is on the conversation (on this node).
    pub fn visitor_connected(&self, key: &ConversationKey) -> bool {
        self.inner.visitors.lock().contains_key(key)
    }

    /// Agents' presence.
    pub fn presence(&self) -> &Arc<crate::presence::Presence> {
        &self.inner.deps.presence
    }

    /// An agent of `tenant` signed in: routes its waiting conversations from now on.
    pub fn agents_active(&self, tenant: &TenantId) {
        if self.inner.dispatchers.lock().insert(tenant.clone()) {
            let weak = WeakEngine(Arc::downgrade(&self.inner));
            self.inner.deps.runtime.spawn(crate::dispatch::run(weak, tenant.clone()));
        }
    }

    /// Tenant-wide events (the live inbox) from now on.
    pub async fn subscribe_tenant(
        &self,
        tenant: &TenantId,
    ) -> tokio::sync::broadcast::Receiver<Arc<crate::bus::TenantEvent>> {
        self.inner.deps.bus.subscribe_tenant(tenant).await
    }

    /// Tells the agent sockets of `account` (on every node, through the tenant's feed) that the
    /// account changed, so each checks its session again: a removed member or one whose
    /// sessions ended stops reading the workspace at once. Called by [`crate::accounts`].
    pub fn account_changed(&self, tenant: &TenantId, account: &crate::model::AccountId) {
        let event = crate::bus::TenantEvent::Member { account_id: account.clone() };
        self.inner.deps.bus.publish_tenant(tenant, event);
    }

    /// Tells everyone watching the conversation (its sockets, its agents) that something about
    /// it failed, with a stable `code`.
    pub fn announce_failure(&self, key: &ConversationKey, code: &str, message: &str) {
        let event = Event::Rejected {
            conn: None,
            client_msg_id: None,
            code: code.to_owned(),
            message: message.to_owned(),
        };
        self.inner.deps.bus.publish(key, event);
    }

    /// Typing indicators are ephemeral: published straight to subscribers, never stored.
    pub fn typing(&self, key: &ConversationKey, origin: Option<ConnId>, sender: Sender, on: bool) {
        self.inner.deps.bus.publish(key, Event::Typing { sender, on, origin });
    }
}

fn inbox_entry(c: &Conversation, last: Option<&Message>) -> crate::agents::InboxEntry {
    let last_seq = last.map_or(0, |m| m.seq);
    crate::agents::InboxEntry {
        conversation_id: c.id.clone(),
        bot_id: c.bot_id.clone(),
        source: c.source,
        started_at: c.started_at,
        handling: c.handling.clone(),
        last_seq,
        last_message: last.map(crate::agents::LastMessage::of),
        unread: last_seq.saturating_sub(c.handling.agent_read_seq),
    }
}

fn new_resume_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a page at `origin` may chat with `bot`: it is active and allows the origin.
/// Whether an installed marketplace bot's subscription lets it take a new conversation.
async fn paid_for(deps: &Deps, bot: &Bot) -> Result<(), EngineError> {
    match &bot.installed_from {
        Some(from) if !deps.billing.entitled(&bot.tenant_id, &from.subscription).await => {
            Err(EngineError::BotUnavailable)
        }
        _ => Ok(()),
    }
}

fn embeddable(bot: &Bot, origin: Option<&str>) -> Result<(), EngineError> {
    if bot.status != BotStatus::Active {
        return Err(EngineError::BotUnavailable);
    }
    if !bot.integration.allows(origin) {
        return Err(EngineError::OriginNotAllowed);
    }
    Ok(())
}

fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The actor's refusal of a posted visitor message (its `Rejected` event) as an error.
fn refusal(code: &str, message: &str) -> EngineError {
    match code {
        // The store failed: nothing was kept, and a retry with the same id is safe.
        "internal" => EngineError::NotStored,
        // The public message already says "invalid form: …".
        "invalid_form" => EngineError::InvalidForm(
            message.strip_prefix("invalid form: ").unwrap_or(message).to_owned(),
        ),
        _ => EngineError::from_wire(WireError { code: code.to_owned(), detail: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (new_resume_token(), new_resume_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 bytes in unpadded base64url");
        assert_eq!(token_hash("x"), token_hash("x"));
        assert_ne!(token_hash("x"), token_hash("y"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
