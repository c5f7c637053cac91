//! The distributed bus: several nodes, one conversation actor each.
//!
//! **Inbound** events go through the Kafka topic `{prefix}.inbound`, one record per event, keyed
//! by conversation id and sent to the partition [`partition_of`] names (explicitly, so every
//! node agrees on it without relying on a client's partitioner). Engine nodes share one consumer
//! group: the node assigned a partition hosts the actors of its conversations. `deliver` returns
//! once the broker has the record (`acks=all`, idempotent producer), so a visitor's message the
//! gateway accepted survives any engine node.
//!
//! Offsets are committed only when the engine is **done** with an event: every envelope carries
//! a [`Receipt`]; a visitor message's receipt is held until its reply is stored. A partition's
//! committed offset is the first event not yet done. When a node dies, its partitions move and
//! the new owner reads from there: events are delivered again, which the engine absorbs
//! (`client_msg_id` idempotency; `Start` and `Read` are idempotent) and an actor starting on a
//! conversation answers a visitor message its predecessor stored but never answered
//! ([`Delivery::redelivers`]). On a clean rebalance the old owner first waits (up to the handover
//! time) for the events in hand, commits, then stops the moving actors.
//!
//! **Outbound** events go through Redis pub/sub, one channel per conversation
//! (`{prefix}:c:{tenant}:{conversation}`) and per tenant (`{prefix}:t:{tenant}`): a node
//! subscribes while it has a local subscriber and fans what arrives out through an
//! [`InProcessBus`]. Chosen over a per-node Kafka topic because it needs no registry of which
//! node holds which socket (Redis does the routing), adds no disk write per token, and measured
//! faster on loopback (BENCHMARKS.md, "delivery route"). Pub/sub is at-most-once: a node that
//! loses its Redis connection misses live events, as a lagging subscriber does, and recovers the
//! stored messages from the store.
//!
//! # Layout
//! - this file: [`ClusterBus`] (the domain's `Bus`), [`partition_of`].
//! - [`limits`]: [`RedisLimits`], the domain's `SharedLimits` (the admin API's auth budgets and
//!   login backoffs, shared by every node).

pub mod limits;
pub use limits::RedisLimits;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use rdkafka::{
    ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::{broadcast, mpsc, oneshot};

use parla_domain::{
    EngineError,
    agents::{AgentCommand, CommandOutcome},
    bus::{
        BusError, Coordination, Delivery, Envelope, Event, Feed, InboundHandler, Probe, Receipt,
        Subscription, TenantEvent, local::InProcessBus,
    },
    error::WireError,
    model::{AccountId, BotId, ConnId, ConversationId, ConversationKey, TenantId},
    presence::{AgentPresence, PresenceStatus},
};

/// What the distributed bus needs to know.
#[derive(Debug, Clone)]
pub struct ClusterBusSettings {
    pub brokers: String,
    pub topic_prefix: String,
    /// Partitions of a topic this bus creates (an existing topic keeps its own count).
    pub partitions: u32,
    pub replication: u16,
    pub redis_url: String,
    /// This node's name (the Kafka client id).
    pub node_id: String,
    /// Consume the inbound topic and host actors (an engine node).
    pub consume: bool,
    /// How long a node that dies keeps its partitions (Kafka's session timeout).
    pub session_timeout: Duration,
    /// How long a node handing partitions over waits for the events in hand.
    pub handover: Duration,
    /// Events buffered per local subscriber.
    pub buffer: usize,
}

/// Why a record or event could not be decoded, without its content: serde's message may
/// quote a value, and a value may be a visitor's message text.
fn decode_error(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}

/// The partition of a conversation's inbound events: FNV-1a of its id, modulo the partitions.
/// Stable across nodes, versions and languages.
pub fn partition_of(conversation: &ConversationId, partitions: u32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in conversation.0.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as i32
}

/// Kafka inbound, Redis outbound (see the module docs).
pub struct ClusterBus {
    settings: ClusterBusSettings,
    inbound_topic: String,
    partitions: u32,
    producer: FutureProducer,
    local: Arc<InProcessBus>,
    route: Arc<RedisRoute>,
    handler: Arc<OnceLock<Arc<dyn InboundHandler>>>,
    /// Stops the consumer thread (engine nodes).
    stop: Arc<AtomicBool>,
    consumer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for ClusterBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBus")
            .field("inbound_topic", &self.inbound_topic)
            .field("partitions", &self.partitions)
            .field("node", &self.settings.node_id)
            .finish_non_exhaustive()
    }
}

fn transport(context: &str) -> impl Fn(rdkafka::error::KafkaError) -> BusError + '_ {
    move |e| BusError::Transport(format!("{context}: {e}"))
}

impl ClusterBus {
    /// Connects to Kafka and Redis and creates the inbound topic if it is missing. An engine
    /// node starts consuming when the engine binds to it.
    pub async fn connect(settings: ClusterBusSettings) -> Result<Arc<Self>, BusError> {
        let inbound_topic = format!("{}.inbound", settings.topic_prefix);
        let mut common = ClientConfig::new();
        common
            .set("bootstrap.servers", &settings.brokers)
            .set("client.id", format!("parla-{}", settings.node_id))
            // Small records must leave at once (Nagle would hold them for the peer's ACK).
            .set("socket.nagle.disable", "true");
        let admin: AdminClient<DefaultClientContext> =
            common.create().map_err(transport("kafka admin client"))?;
        let partitions = ensure_topic(&admin, &inbound_topic, &settings).await?;
        let producer: FutureProducer = common
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Latency first: a visitor waits on every record.
            .set("linger.ms", "0")
            .set("message.timeout.ms", "15000")
            .create()
            .map_err(transport("kafka producer"))?;
        let local = Arc::new(InProcessBus::new(settings.buffer));
        let handler: Arc<OnceLock<Arc<dyn InboundHandler>>> = Arc::new(OnceLock::new());
        let route = RedisRoute::connect(&settings, local.clone(), handler.clone()).await?;
        tracing::info!(topic = %inbound_topic, partitions, node = %settings.node_id, "cluster bus connected");
        Ok(Arc::new(Self {
            settings,
            inbound_topic,
            partitions,
            producer,
            local,
            route,
            handler,
            stop: Arc::new(AtomicBool::new(false)),
            consumer: Mutex::new(None),
        }))
    }

    /// Partitions of the inbound topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Stops consuming: waits (up to the handover time) for the events in hand, commits, and
    /// leaves the consumer group, so the partitions move at once instead of after the session
    /// timeout. Idempotent.
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.consumer.lock().take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    fn start_consumer(&self, handler: Arc<dyn InboundHandler>) -> Result<(), BusError> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let context = Rebalancer {
            pending: pending.clone(),
            handler: handler.clone(),
            runtime: tokio::runtime::Handle::current(),
            partitions: self.partitions,
            handover: self.settings.handover,
        };
        let session = self.settings.session_timeout.as_millis().max(6000).to_string();
        let heartbeat = (self.settings.session_timeout.as_millis() / 6).max(500).to_string();
        let consumer: BaseConsumer<Rebalancer> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("client.id", format!("parla-{}", self.settings.node_id))
            .set("group.id", format!("{}.engine", self.settings.topic_prefix))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session)
            .set("heartbeat.interval.ms", heartbeat)
            .set("fetch.wait.max.ms", "5")
            .set("socket.nagle.disable", "true")
            // Incremental: a node joining or leaving moves only the partitions that change
            // hands; the others keep their live actors.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(context)
            .map_err(transport("kafka consumer"))?;
        consumer.subscribe(&[&self.inbound_topic]).map_err(transport("kafka subscribe"))?;
        let worker = ConsumerLoop {
            consumer,
            pending,
            handler,
            route: self.route.clone(),
            runtime: tokio::runtime::Handle::current(),
            stop: self.stop.clone(),
            handover: self.settings.handover,
        };
        let thread = std::thread::Builder::new()
            .name("parla-kafka-inbound".into())
            .spawn(move || worker.run())
            .map_err(|e| BusError::Transport(format!("consumer thread: {e}")))?;
        *self.consumer.lock() = Some(thread);
        Ok(())
    }
}

impl Drop for ClusterBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Creates the topic if missing; returns its partition count.
async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    settings: &ClusterBusSettings,
) -> Result<u32, BusError> {
    let partitions = i32::try_from(settings.partitions).unwrap_or(i32::MAX);
    let new =
        NewTopic::new(topic, partitions, TopicReplication::Fixed(settings.replication.into()));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new], &options).await.map_err(transport("create topic"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "created the inbound topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BusError::Transport(format!("create topic {name}: {code}")));
            }
        }
    }
    // Metadata may lag a fresh topic by a moment.
    for _ in 0..50 {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(transport("topic metadata"))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if count > 0 {
            return Ok(count as u32);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BusError::Transport(format!("topic {topic} has no partitions")))
}

#[async_trait]
impl Delivery for ClusterBus {
    async fn deliver(&self, envelope: Envelope) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&envelope)
            .map_err(|e| BusError::Transport(format!("encode: {e}")))?;
        let conversation = envelope.key.conversation_id.0.as_str();
        let record = FutureRecord::to(&self.inbound_topic)
            .key(conversation)
            .payload(&payload)
            .partition(partition_of(&envelope.key.conversation_id, self.partitions));
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| BusError::Transport(format!("kafka produce: {e}")))
    }

    fn bind(&self, handler: Arc<dyn InboundHandler>) {
        if self.handler.set(handler.clone()).is_err() {
            tracing::warn!("cluster bus bound twice; keeping the first engine");
            return;
        }
        if self.settings.consume
            && let Err(e) = self.start_consumer(handler)
        {
            tracing::error!(error = %e, "the inbound consumer did not start");
        }
    }

    fn redelivers(&self) -> bool {
        true
    }

    async fn command(
        &self,
        key: &ConversationKey,
        command: &AgentCommand,
    ) -> Option<Result<CommandOutcome, EngineError>> {
        let request = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.route.replies.lock().insert(request.clone(), tx);
        // Forgets the waiter however this call ends (a cancelled caller included).
        let _waiting = Waiting { route: &self.route, request: request.clone() };
        let inbound = parla_domain::bus::Inbound::Command {
            request: request.clone(),
            reply_to: self.settings.node_id.clone(),
            command: command.clone(),
        };
        let sent = self.deliver(Envelope::new(key.clone(), None, inbound)).await;
        let outcome = match sent {
            Ok(()) => match tokio::time::timeout(COMMAND_WAIT, rx).await {
                Ok(Ok(outcome)) => outcome.map_err(EngineError::from_wire),
                // Not answered in time (the conversation's node is failing over): the caller
                // may retry; a claim or a reply is idempotent for the same agent.
                Ok(Err(_)) | Err(_) => Err(EngineError::ConversationBusy),
            },
            Err(e) => {
                tracing::error!(error = %e, "an agent command could not be sent");
                Err(EngineError::Internal)
            }
        };
        Some(outcome)
    }

    fn answer(&self, reply_to: &str, request: &str, outcome: &Result<CommandOutcome, EngineError>) {
        let answer = Answer {
            request: request.to_owned(),
            outcome: outcome.clone().map_err(|e| e.to_wire()),
        };
        self.route.publish(node_channel(&self.settings.topic_prefix, reply_to), &answer);
    }
}

#[async_trait]
impl Feed for ClusterBus {
    fn publish(&self, key: &ConversationKey, event: Event) {
        self.route.publish(conversation_channel(&self.settings.topic_prefix, key), &event);
    }

    async fn subscribe(&self, key: &ConversationKey, conn: Option<ConnId>) -> Subscription {
        let channel = conversation_channel(&self.settings.topic_prefix, key);
        let guard = self.route.watch(channel, Watched::Conversation(key.clone())).await;
        self.local.subscribe(key, conn).await.with_route_guard(Box::new(guard))
    }

    fn publish_tenant(&self, tenant: &TenantId, event: TenantEvent) {
        let channel = format!("{}:t:{}", self.settings.topic_prefix, tenant.0);
        self.route.publish(channel, &event);
    }

    async fn subscribe_tenant(&self, tenant: &TenantId) -> broadcast::Receiver<Arc<TenantEvent>> {
        let channel = format!("{}:t:{}", self.settings.topic_prefix, tenant.0);
        // The tenant feed lives as long as the node: tenants with agents are few.
        let guard = self.route.watch(channel, Watched::Tenant(tenant.clone())).await;
        std::mem::forget(guard);
        self.local.subscribe_tenant(tenant).await
    }

    fn announce_bot_changed(&self, tenant: &TenantId, bot: &BotId) {
        let channel = format!("{}:bots", self.settings.topic_prefix);
        self.route.publish(channel, &BotChanged { tenant: tenant.clone(), bot: bot.clone() });
    }
}

#[async_trait]
impl Coordination for ClusterBus {
    fn share_presence(&self, tenant: &TenantId, presence: &AgentPresence, ttl: Duration) {
        let keys = presence_keys(&self.settings.topic_prefix, tenant);
        let member = format!("{}@{}", presence.agent.id.0, self.settings.node_id);
        let record = match presence.status {
            PresenceStatus::Offline => String::new(),
            _ => serde_json::to_string(presence).unwrap_or_default(),
        };
        let ttl_ms = ttl.as_millis().max(1) as u64;
        // One queue, written in order: an agent's later status never lands before an earlier.
        let _ = self.route.shares.send(Share { keys, member, record, ttl_ms });
    }

    async fn cluster_presence(&self, tenant: &TenantId) -> Option<Vec<AgentPresence>> {
        let keys = presence_keys(&self.settings.topic_prefix, tenant);
        let mut conn = self.route.conn.clone();
        let read: redis::RedisResult<Vec<String>> =
            self.route.read_presence.key(&keys.0).key(&keys.1).invoke_async(&mut conn).await;
        let records = match read {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "shared presence unavailable; seeing this node only");
                return Some(Vec::new());
            }
        };
        // The best status of each agent over the nodes it is on.
        let mut best: HashMap<AccountId, AgentPresence> = HashMap::new();
        for p in records.iter().filter_map(|r| serde_json::from_str::<AgentPresence>(r).ok()) {
            match best.get(&p.agent.id) {
                Some(known) if known.status <= p.status => {}
                _ => {
                    best.insert(p.agent.id.clone(), p);
                }
            }
        }
        Some(best.into_values().collect())
    }

    async fn lease(&self, name: &str, ttl: Duration) -> Option<Result<bool, BusError>> {
        let key = format!("{}:lease:{name}", self.settings.topic_prefix);
        let mut conn = self.route.conn.clone();
        let held: redis::RedisResult<i64> = self
            .route
            .lease
            .key(key)
            .arg(&self.settings.node_id)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await;
        Some(held.map(|held| held == 1).map_err(|e| BusError::Transport(format!("lease: {e}"))))
    }
}

#[async_trait]
impl Probe for ClusterBus {
    async fn probe(&self, timeout: Duration) -> Vec<(&'static str, Result<(), String>)> {
        // Kafka: the inbound topic's metadata from a broker (what producing needs first).
        // librdkafka's call blocks, so it runs on the blocking pool, bounded by its own timeout.
        let producer = self.producer.clone();
        let topic = self.inbound_topic.clone();
        let kafka = async move {
            let fetched = tokio::task::spawn_blocking(move || {
                rdkafka::producer::Producer::client(&producer)
                    .fetch_metadata(Some(&topic), timeout)
                    .map(drop)
            });
            match tokio::time::timeout(timeout, fetched).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!("metadata: {e}")),
                Ok(Err(_)) => Err("the metadata request panicked".to_owned()),
                Err(_) => Err(format!("no answer in {} ms", timeout.as_millis())),
            }
        };
        // Redis: a PING on the connection leases and shared presence use.
        let mut conn = self.route.conn.clone();
        let redis = async move {
            let ping = redis::cmd("PING");
            match tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("ping: {e}")),
                Err(_) => Err(format!("no answer in {} ms", timeout.as_millis())),
            }
        };
        let (kafka, redis) = tokio::join!(kafka, redis);
        vec![("kafka", kafka), ("redis", redis)]
    }
}

/// Removes a command's waiter when dropped.
struct Waiting<'a> {
    route: &'a RedisRoute,
    request: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.route.replies.lock().remove(&self.request);
    }
}

/// How long an agent's command may take on another node before the caller is told to retry.
const COMMAND_WAIT: Duration = Duration::from_secs(15);

/// The outcome of another node's command, on its way back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Answer {
    request: String,
    outcome: Result<CommandOutcome, WireError>,
}

/// One agent's presence on this node, on its way to Redis.
struct Share {
    keys: (String, String),
    member: String,
    record: String,
    ttl_ms: u64,
}

/// Writes this node's presence records in the order they were made.
async fn share_loop(
    mut conn: redis::aio::ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Share>,
) {
    let script = redis::Script::new(SHARE_PRESENCE);
    while let Some(share) = rx.recv().await {
        let shared = script
            .key(&share.keys.0)
            .key(&share.keys.1)
            .arg(share.member)
            .arg(share.record)
            .arg(share.ttl_ms)
            .invoke_async::<()>(&mut conn)
            .await;
        if let Err(e) = shared {
            tracing::warn!(error = %e, "could not share an agent's presence");
        }
    }
}

/// Shared presence, per tenant: a sorted set of `agent@node` scored by when the entry expires
/// (ms on Redis's clock, so the nodes' clocks do not matter), and a hash of the same members to
/// their [`AgentPresence`].
fn presence_keys(prefix: &str, tenant: &TenantId) -> (String, String) {
    (format!("{prefix}:presence:{}", tenant.0), format!("{prefix}:presence-of:{}", tenant.0))
}

/// Records (ARGV[2] non-empty) or removes one `agent@node` entry of the shared presence.
const SHARE_PRESENCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 1
";

/// Drops the expired entries of the shared presence and returns the live ones (in slices of
/// 500: Lua's `unpack` has a limit, and a script is not rolled back when a command fails).
const READ_PRESENCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for i = 1, #live, 500 do
  local part = redis.call('HMGET', KEYS[2], unpack(live, i, math.min(i + 499, #live)))
  for _, v in ipairs(part) do
    if v then table.insert(out, v) end
  end
end
return out
";

/// Takes the lease KEYS[1] for node ARGV[1] for ARGV[2] ms if it is free or already this
/// node's; 1 if held.
const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

fn node_channel(prefix: &str, node: &str) -> String {
    format!("{prefix}:n:{node}")
}

fn conversation_channel(prefix: &str, key: &ConversationKey) -> String {
    format!("{prefix}:c:{}:{}", key.tenant_id.0, key.conversation_id.0)
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct BotChanged {
    tenant: TenantId,
    bot: BotId,
}

// ---------------------------------------------------------------------------------------------
// Inbound: the consumer thread and its offsets.

/// Events handed to the engine and not yet done, per partition, in offset order.
#[derive(Default)]
struct Pending {
    partitions: HashMap<i32, PartitionWork>,
}

#[derive(Default)]
struct PartitionWork {
    waiting: VecDeque<(i64, oneshot::Receiver<()>)>,
    /// The next offset to commit (one past the last event done in order), if it moved.
    done_up_to: Option<i64>,
    committed: Option<i64>,
    /// An event was abandoned: nothing past it may be committed by this node.
    stuck: bool,
}

impl Pending {
    /// Moves each partition's watermark past the events done, in order.
    fn advance(&mut self) {
        for work in self.partitions.values_mut() {
            while !work.stuck {
                let Some((offset, rx)) = work.waiting.front_mut() else { break };
                match rx.try_recv() {
                    Ok(()) => {
                        work.done_up_to = Some(*offset + 1);
                        work.waiting.pop_front();
                    }
                    Err(oneshot::error::TryRecvError::Empty) => break,
                    Err(oneshot::error::TryRecvError::Closed) => work.stuck = true,
                }
            }
        }
    }

    /// Offsets to commit for `only` (all partitions when `None`), marked as committed.
    fn take_commit(&mut self, topic: &str, only: Option<&[i32]>) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, work) in &mut self.partitions {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            if let Some(offset) = work.done_up_to
                && work.committed != Some(offset)
                && list.add_partition_offset(topic, *partition, Offset::Offset(offset)).is_ok()
            {
                work.committed = Some(offset);
            }
        }
        (list.count() > 0).then_some(list)
    }

    /// Whether an event of `only` (every partition when `None`) is still in hand.
    fn busy(&self, only: Option<&[i32]>) -> bool {
        self.partitions.iter().any(|(p, w)| {
            only.is_none_or(|only| only.contains(p)) && !w.stuck && !w.waiting.is_empty()
        })
    }
}

/// Waits, up to `within`, until the events of `only` (all when `None`) in hand are done.
fn wait_until_done(pending: &Mutex<Pending>, only: Option<&[i32]>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        {
            let mut pending = pending.lock();
            pending.advance();
            if !pending.busy(only) || Instant::now() >= deadline {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hands partitions over cleanly (see the module docs). Runs on the consumer thread, inside
/// `poll`, so it may block.
struct Rebalancer {
    pending: Arc<Mutex<Pending>>,
    handler: Arc<dyn InboundHandler>,
    runtime: tokio::runtime::Handle,
    partitions: u32,
    handover: Duration,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let revoked: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        if revoked.is_empty() {
            return;
        }
        let topic = list.elements().first().map(|e| e.topic().to_owned()).unwrap_or_default();
        tracing::info!(?revoked, "handing partitions over");
        wait_until_done(&self.pending, Some(&revoked), self.handover);
        let commit = self.pending.lock().take_commit(&topic, Some(&revoked));
        if let Some(commit) = commit
            && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "commit before handing partitions over failed");
        }
        let mut pending = self.pending.lock();
        for partition in &revoked {
            pending.partitions.remove(partition);
        }
        drop(pending);
        let partitions = self.partitions;
        let which: parla_domain::bus::Releasing = Arc::new(move |key: &ConversationKey| {
            revoked.contains(&partition_of(&key.conversation_id, partitions))
        });
        // The moving actors stop after the message in hand; their successors on the new
        // owner start only once this returns (the partition is not assigned before).
        let handover = self.handover;
        let release = self.handler.release(which);
        // The timer is made inside the runtime (this thread is not one of its workers).
        let released =
            self.runtime.block_on(async move { tokio::time::timeout(handover, release).await });
        if released.is_err() {
            tracing::warn!("actors still stopping after the handover wait; handing over anyway");
        }
    }

    /// A commit that failed (a rebalance in progress, a broker away) is forgotten, so the next
    /// round commits those offsets again instead of believing them committed.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        let Err(e) = result else { return };
        tracing::warn!(error = %e, "an offset commit failed; it will be retried");
        let mut pending = self.pending.lock();
        for element in offsets.elements() {
            if let (Some(work), Offset::Offset(offset)) =
                (pending.partitions.get_mut(&element.partition()), element.offset())
                && work.committed == Some(offset)
            {
                work.committed = None;
            }
        }
    }

    /// Logs the node's whole assignment after each change (cooperative rebalancing hands out
    /// and takes back only the partitions that move).
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(error = %e, "rebalance failed");
            return;
        }
        let mut assigned: Vec<i32> = match consumer.assignment() {
            Ok(list) => list.elements().iter().map(|e| e.partition()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the assignment");
                return;
            }
        };
        assigned.sort_unstable();
        tracing::info!(?assigned, "partitions assigned");
    }
}

struct ConsumerLoop {
    consumer: BaseConsumer<Rebalancer>,
    pending: Arc<Mutex<Pending>>,
    handler: Arc<dyn InboundHandler>,
    route: Arc<RedisRoute>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    handover: Duration,
}

impl ConsumerLoop {
    fn run(self) {
        const COMMIT_EVERY: Duration = Duration::from_millis(100);
        let mut last_commit = Instant::now();
        let topic = self
            .consumer
            .subscription()
            .ok()
            .and_then(|s| s.elements().first().map(|e| e.topic().to_owned()));
        let topic = topic.unwrap_or_default();
        while !self.stop.load(Ordering::SeqCst) {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(record)) => {
                    let (partition, offset) = (record.partition(), record.offset());
                    let decoded = record.payload().map(serde_json::from_slice::<Envelope>);
                    let (receipt, done) = Receipt::new();
                    self.pending
                        .lock()
                        .partitions
                        .entry(partition)
                        .or_default()
                        .waiting
                        .push_back((offset, done));
                    match decoded {
                        Some(Ok(mut envelope)) => {
                            tracing::debug!(partition, offset, conversation = %envelope.key.conversation_id, "inbound event");
                            envelope.receipt = receipt;
                            self.hand_over(envelope);
                        }
                        // Not ours to read (a newer version's, or garbage): skipped, counted
                        // as done so it cannot hold the partition back.
                        Some(Err(e)) => {
                            tracing::error!(partition, offset, error = %decode_error(&e), "undecodable inbound record skipped");
                        }
                        None => tracing::error!(partition, offset, "empty inbound record skipped"),
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer"),
                None => {}
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.commit(&topic, CommitMode::Async);
            }
        }
        // Leaving: let the events in hand finish, commit, and leave the group at once.
        wait_until_done(&self.pending, None, self.handover);
        self.commit(&topic, CommitMode::Sync);
        self.consumer.unsubscribe();
        tracing::info!("inbound consumer stopped");
    }

    fn commit(&self, topic: &str, mode: CommitMode) {
        let list = {
            let mut pending = self.pending.lock();
            pending.advance();
            pending.take_commit(topic, None)
        };
        if let Some(list) = list
            && let Err(e) = {
                tracing::debug!(offsets = ?list.to_topic_map(), "committing");
                self.consumer.commit(&list, mode)
            }
        {
            tracing::warn!(error = %e, "offset commit failed (the events will be delivered again)");
        }
    }

    /// Gives an event to the engine, in order (waits while the actor's mailbox is full). A
    /// refusal goes back to the connection that sent the event.
    fn hand_over(&self, envelope: Envelope) {
        let (key, origin) = (envelope.key.clone(), envelope.origin);
        let client_msg_id = envelope.inbound.client_msg_id().map(str::to_owned);
        let command = match &envelope.inbound {
            parla_domain::bus::Inbound::Command { request, reply_to, .. } => {
                Some((request.clone(), reply_to.clone()))
            }
            _ => None,
        };
        // Kept to mark a refusal done: its sender is told, below.
        let receipt = envelope.receipt.clone();
        if let Err(e) = self.runtime.block_on(self.handler.handle(envelope)) {
            receipt.done();
            if let Some((request, reply_to)) = command {
                let answer = Answer { request, outcome: Err(e.to_wire()) };
                self.route.publish(node_channel(&self.route.prefix, &reply_to), &answer);
                return;
            }
            let event = Event::Rejected {
                conn: origin,
                client_msg_id,
                code: e.code().to_owned(),
                message: e.public_message(),
            };
            let prefix = self.route.prefix.clone();
            self.route.publish(conversation_channel(&prefix, &key), &event);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound: Redis pub/sub.

/// What a Redis channel carries to this node.
#[derive(Debug, Clone)]
enum Watched {
    Conversation(ConversationKey),
    Tenant(TenantId),
    Bots,
    /// Answers to this node's agent commands.
    Answers,
}

/// This node's Redis pub/sub: one connection subscribed to the channels of its local
/// subscribers, one ordered publisher.
struct RedisRoute {
    prefix: String,
    /// Replaced when the pub/sub connection is re-established.
    sink: Mutex<redis::aio::PubSubSink>,
    /// Channel → what it carries and how many local subscriptions need it.
    channels: Mutex<HashMap<String, (Watched, usize)>>,
    /// Orders SUBSCRIBE and UNSUBSCRIBE of one channel (see [`RedisRoute::watch`]).
    order: tokio::sync::Mutex<()>,
    outgoing: mpsc::UnboundedSender<(String, Vec<u8>)>,
    unwatch: mpsc::UnboundedSender<String>,
    /// For plain commands (shared presence, leases).
    conn: redis::aio::ConnectionManager,
    /// This node's presence records, written to Redis in order by [`share_loop`].
    shares: mpsc::UnboundedSender<Share>,
    read_presence: redis::Script,
    lease: redis::Script,
    /// This node's agent commands waiting for their answer, by request id.
    replies: Mutex<HashMap<String, oneshot::Sender<Result<CommandOutcome, WireError>>>>,
}

/// Keeps a channel subscribed while alive.
struct WatchGuard {
    channel: String,
    unwatch: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard").field("channel", &self.channel).finish()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let _ = self.unwatch.send(std::mem::take(&mut self.channel));
    }
}

impl RedisRoute {
    async fn connect(
        settings: &ClusterBusSettings,
        local: Arc<InProcessBus>,
        handler: Arc<OnceLock<Arc<dyn InboundHandler>>>,
    ) -> Result<Arc<Self>, BusError> {
        let redis_error = |e: redis::RedisError| BusError::Transport(format!("redis: {e}"));
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(redis_error)?;
        let (sink, mut stream) = client.get_async_pubsub().await.map_err(redis_error)?.split();
        let publisher = client.get_connection_manager().await.map_err(redis_error)?;
        let conn = publisher.clone();
        let (shares, to_share) = mpsc::unbounded_channel();
        tokio::spawn(share_loop(conn.clone(), to_share));
        let (outgoing, queue) = mpsc::unbounded_channel();
        let (unwatch, unwatched) = mpsc::unbounded_channel();
        let route = Arc::new(Self {
            prefix: settings.topic_prefix.clone(),
            sink: Mutex::new(sink),
            channels: Mutex::new(HashMap::new()),
            order: tokio::sync::Mutex::new(()),
            outgoing,
            unwatch,
            conn,
            shares,
            read_presence: redis::Script::new(READ_PRESENCE),
            lease: redis::Script::new(LEASE),
            replies: Mutex::new(HashMap::new()),
        });
        tokio::spawn(publish_loop(publisher, queue));
        tokio::spawn(unwatch_loop(Arc::downgrade(&route), unwatched));
        let weak = Arc::downgrade(&route);
        tokio::spawn(async move {
            loop {
                while let Some(msg) = stream.next().await {
                    let Some(route) = weak.upgrade() else { return };
                    route.arrived(
                        msg.get_channel_name(),
                        msg.get_payload_bytes(),
                        &local,
                        &handler,
                    );
                }
                tracing::error!("redis pub/sub connection lost; reconnecting");
                match resubscribe(&client, &weak).await {
                    Some(next) => stream = next,
                    None => return, // The route is gone: the bus was dropped.
                }
            }
        });
        let bots = format!("{}:bots", settings.topic_prefix);
        std::mem::forget(route.watch(bots, Watched::Bots).await);
        let answers = node_channel(&settings.topic_prefix, &settings.node_id);
        std::mem::forget(route.watch(answers, Watched::Answers).await);
        Ok(route)
    }

    /// Queues an event for Redis; never blocks (the publisher sends in order, pipelined).
    fn publish(&self, channel: String, event: &impl serde::Serialize) {
        match serde_json::to_vec(event) {
            Ok(payload) => {
                let _ = self.outgoing.send((channel, payload)); // Closed: shutting down.
            }
            Err(e) => tracing::error!(error = %e, "an event could not be encoded"),
        }
    }

    /// Subscribes this node to `channel` (once it returns, the subscription is live).
    async fn watch(&self, channel: String, what: Watched) -> WatchGuard {
        self.channels.lock().entry(channel.clone()).or_insert((what, 0)).1 += 1;
        // Made before any await, so a caller cancelled mid-way still lets go of the channel.
        let guard = WatchGuard { channel: channel.clone(), unwatch: self.unwatch.clone() };
        // SUBSCRIBE is idempotent; sending it for every watcher, in order with any pending
        // UNSUBSCRIBE of the same channel, means the confirmation we await is ours.
        let _order = self.order.lock().await;
        let mut sink = self.sink.lock().clone();
        if let Err(e) = sink.subscribe(&channel).await {
            tracing::error!(error = %e, channel, "redis subscribe failed");
        }
        guard
    }

    fn arrived(
        &self,
        channel: &str,
        payload: &[u8],
        local: &InProcessBus,
        handler: &OnceLock<Arc<dyn InboundHandler>>,
    ) {
        let watched = self.channels.lock().get(channel).map(|(w, _)| w.clone());
        match watched {
            Some(Watched::Conversation(key)) => match serde_json::from_slice::<Event>(payload) {
                Ok(event) => local.publish(&key, event),
                Err(e) => tracing::warn!(error = %decode_error(&e), "undecodable event from redis"),
            },
            Some(Watched::Tenant(tenant)) => match serde_json::from_slice::<TenantEvent>(payload) {
                Ok(event) => local.publish_tenant(&tenant, event),
                Err(e) => {
                    tracing::warn!(error = %decode_error(&e), "undecodable tenant event from redis")
                }
            },
            Some(Watched::Bots) => match serde_json::from_slice::<BotChanged>(payload) {
                Ok(change) => {
                    if let Some(handler) = handler.get() {
                        handler.bot_changed(&change.tenant, &change.bot);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %decode_error(&e), "undecodable bot change from redis")
                }
            },
            Some(Watched::Answers) => match serde_json::from_slice::<Answer>(payload) {
                Ok(answer) => {
                    let waiting = self.replies.lock().remove(&answer.request);
                    if let Some(waiting) = waiting {
                        let _ = waiting.send(answer.outcome); // The caller may have given up.
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %decode_error(&e), "undecodable command answer from redis")
                }
            },
            None => {} // Unsubscribed a moment ago.
        }
    }
}

/// Opens a new pub/sub connection and subscribes it to every channel this node watches,
/// retrying with backoff; returns its stream, or `None` once the route is dropped. Events
/// published while the connection was down are lost to live subscribers, who recover stored
/// messages from the store.
async fn resubscribe(
    client: &redis::Client,
    route: &std::sync::Weak<RedisRoute>,
) -> Option<redis::aio::PubSubStream> {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        let route = route.upgrade()?;
        let (mut sink, stream) = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub.split(),
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub still unreachable");
                continue;
            }
        };
        // Under the order lock: no watch or unwatch runs between the snapshot and the swap.
        let _order = route.order.lock().await;
        let channels: Vec<String> = route.channels.lock().keys().cloned().collect();
        if !channels.is_empty()
            && let Err(e) = sink.subscribe(&channels).await
        {
            tracing::warn!(error = %e, "resubscribing to redis failed");
            continue;
        }
        *route.sink.lock() = sink;
        tracing::info!(channels = channels.len(), "redis pub/sub reconnected");
        return Some(stream);
    }
}

async fn unwatch_loop(route: std::sync::Weak<RedisRoute>, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(channel) = rx.recv().await {
        let Some(route) = route.upgrade() else { return };
        let _order = route.order.lock().await;
        let last = {
            let mut channels = route.channels.lock();
            match channels.get_mut(&channel) {
                Some((_, n)) if *n <= 1 => {
                    channels.remove(&channel);
                    true
                }
                Some((_, n)) => {
                    *n -= 1;
                    false
                }
                None => false,
            }
        };
        if last {
            let mut sink = route.sink.lock().clone();
            if let Err(e) = sink.unsubscribe(&channel).await {
                tracing::warn!(error = %e, channel, "redis unsubscribe failed");
            }
        }
    }
}

/// Sends queued events in order, as many per round trip as are waiting.
async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    mut queue: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    const BATCH: usize = 512;
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if let Err(e) = sent {
            // The connection manager reconnects; these events are lost to live subscribers,
            // who recover stored messages from the store.
            tracing::error!(error = %e, "publishing events to redis failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let id = |s: &str| ConversationId(s.to_owned());
        // Fixed values: every node (and any future version) must agree.
        assert_eq!(partition_of(&id("c1"), 12), partition_of(&id("c1"), 12));
        assert_eq!(partition_of(&id(""), 7), (0xcbf2_9ce4_8422_2325u64 % 7) as i32);
        let mut seen = std::collections::HashSet::new();
        for n in 0..200 {
            let p = partition_of(&id(&format!("conversation-{n}")), 12);
            assert!((0..12).contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), 12, "200 ids reach every partition");
        assert_eq!(partition_of(&id("x"), 0), 0, "no partitions is treated as one");
    }

    #[test]
    fn events_addressed_to_a_connection_survive_the_wire() {
        use parla_domain::model::Sender;
        let conn = Some(ConnId(u128::MAX - 7));
        let events = [
            Event::Rejected { conn, client_msg_id: None, code: "c".into(), message: "m".into() },
            Event::Typing { sender: Sender::User, on: true, origin: conn },
            Event::Read { sender: Sender::User, seq: 3, origin: conn },
        ];
        for event in events {
            let wire = serde_json::to_vec(&event).expect("encode");
            assert_eq!(serde_json::from_slice::<Event>(&wire).expect("decode"), event);
        }
        let key = ConversationKey { tenant_id: "t".into(), conversation_id: "c".into() };
        let envelope = Envelope::new(key, conn, parla_domain::bus::Inbound::Read { seq: 1 });
        let wire = serde_json::to_vec(&envelope).expect("encode");
        let back: Envelope = serde_json::from_slice(&wire).expect("decode");
        assert_eq!(back.origin, conn);
    }

    /// Two nodes on a real Kafka and Redis (`PARLA_TEST_KAFKA`, `PARLA_TEST_REDIS`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_see_each_others_agents_and_share_leases() {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(kafka), Some(redis)) = (env("PARLA_TEST_KAFKA"), env("PARLA_TEST_REDIS")) else {
            println!("skipped: PARLA_TEST_KAFKA and PARLA_TEST_REDIS must be set");
            return;
        };
        let prefix = format!("parla-test-{}", uuid::Uuid::new_v4().simple());
        let settings = |node: &str| ClusterBusSettings {
            brokers: kafka.clone(),
            topic_prefix: prefix.clone(),
            partitions: 1,
            replication: 1,
            redis_url: redis.clone(),
            node_id: node.to_owned(),
            consume: false,
            session_timeout: Duration::from_secs(6),
            handover: Duration::from_secs(1),
            buffer: 16,
        };
        let a = ClusterBus::connect(settings("a")).await.expect("node a");
        let b = ClusterBus::connect(settings("b")).await.expect("node b");
        let t = TenantId::from("t1");
        let ann = parla_domain::model::AgentRef { id: AccountId::from("ann"), name: "Ann".into() };
        let on = |status| AgentPresence { agent: ann.clone(), status };
        // What node b sees of tenant t: Ann's status, if she is anywhere.
        let until = |want: Option<PresenceStatus>| {
            let (b, t) = (b.clone(), t.clone());
            async move {
                for _ in 0..100 {
                    let seen = b.cluster_presence(&t).await.expect("a cluster sees");
                    assert!(seen.len() <= 1, "one entry per agent: {seen:?}");
                    if seen.first().map(|p| p.status) == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("node b never saw Ann {want:?}");
            }
        };
        let long = Duration::from_secs(30);
        until(None).await;
        a.share_presence(&t, &on(PresenceStatus::Away), long);
        until(Some(PresenceStatus::Away)).await;
        assert_eq!(b.cluster_presence(&TenantId::from("t2")).await, Some(vec![]), "per tenant");
        // Online on b too: the best of her nodes counts; offline on b: a's status again.
        b.share_presence(&t, &on(PresenceStatus::Online), long);
        until(Some(PresenceStatus::Online)).await;
        b.share_presence(&t, &on(PresenceStatus::Offline), long);
        until(Some(PresenceStatus::Away)).await;
        a.share_presence(&t, &on(PresenceStatus::Offline), long);
        until(None).await;
        // A node that stops refreshing (it died) stops counting.
        a.share_presence(&t, &on(PresenceStatus::Online), Duration::from_millis(1000));
        until(Some(PresenceStatus::Online)).await;
        until(None).await;

        // One node at a time holds a lease; it renews it; another takes it once it lapses.
        let ttl = Duration::from_millis(1000);
        assert_eq!(a.lease("job", ttl).await.and_then(Result::ok), Some(true));
        assert_eq!(b.lease("job", ttl).await.and_then(Result::ok), Some(false), "held by a");
        assert_eq!(a.lease("job", ttl).await.and_then(Result::ok), Some(true), "renewed");
        assert_eq!(b.lease("other", ttl).await.and_then(Result::ok), Some(true), "per name");
        let mut taken = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if b.lease("job", ttl).await.and_then(Result::ok) == Some(true) {
                taken = true;
                break;
            }
        }
        assert!(taken, "b takes the lease a stopped renewing");
        assert_eq!(a.lease("job", ttl).await.and_then(Result::ok), Some(false), "now b's");
    }

    /// A node's live events come back after Redis restarts: its own `redis-server` (Debian's,
    /// installed by `scripts/services.sh`), killed and started again on the same port.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_events_resume_after_redis_restarts() {
        let Some(kafka) = std::env::var("PARLA_TEST_KAFKA").ok().filter(|v| !v.is_empty()) else {
            println!("skipped: PARLA_TEST_KAFKA must be set (scripts/services.sh start)");
            return;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let redis_server = || {
            tokio::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
        };
        let Ok(mut server) = redis_server() else {
            println!("skipped: redis-server is not installed (scripts/services.sh start redis)");
            return;
        };
        let url = format!("redis://127.0.0.1:{port}");
        let up = |url: String| async move {
            for _ in 0..100 {
                if let Ok(client) = redis::Client::open(url.as_str())
                    && client.get_multiplexed_async_connection().await.is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("redis-server did not start");
        };
        up(url.clone()).await;
        let settings = |node: &str| ClusterBusSettings {
            brokers: kafka.clone(),
            topic_prefix: format!("parla-test-{port}"),
            partitions: 1,
            replication: 1,
            redis_url: url.clone(),
            node_id: node.to_owned(),
            consume: false,
            session_timeout: Duration::from_secs(6),
            handover: Duration::from_secs(1),
            buffer: 64,
        };
        let (a, b) = (
            ClusterBus::connect(settings("a")).await.expect("node a"),
            ClusterBus::connect(settings("b")).await.expect("node b"),
        );
        let key = ConversationKey { tenant_id: "t".into(), conversation_id: "c".into() };
        let mut events = a.subscribe(&key, None).await;
        let typing =
            |on| Event::Typing { sender: parla_domain::model::Sender::User, on, origin: None };
        b.publish(&key, typing(true));
        let first = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert_eq!(*first.expect("in time").expect("an event"), typing(true));

        server.kill().await.expect("kill redis");
        server = redis_server().expect("redis starts again");
        up(url.clone()).await;
        // Published until one arrives: what is sent while a node reconnects is lost (pub/sub
        // is at-most-once; stored messages come back from the store).
        let arrived = async {
            loop {
                b.publish(&key, typing(false));
                match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                    Ok(Ok(event)) => return event,
                    Ok(Err(e)) => panic!("subscription broke: {e:?}"),
                    Err(_) => {}
                }
            }
        };
        let event = tokio::time::timeout(Duration::from_secs(30), arrived)
            .await
            .expect("live events resume after redis restarts");
        assert_eq!(*event, typing(false));
        drop(server);
    }

    #[test]
    fn watermarks_advance_in_order_and_stop_at_an_abandoned_event() {
        let mut pending = Pending::default();
        let mut receipts = Vec::new();
        for offset in 10..14 {
            let (receipt, done) = Receipt::new();
            pending.partitions.entry(0).or_default().waiting.push_back((offset, done));
            receipts.push(receipt);
        }
        let r13 = receipts.pop().expect("13");
        let r12 = receipts.pop().expect("12");
        let r11 = receipts.pop().expect("11");
        r11.done();
        drop(r11); // Done out of order: nothing moves until 10 is done.
        pending.advance();
        assert!(pending.take_commit("t", None).is_none());
        let r10 = receipts.pop().expect("10");
        let copy = r10.clone();
        r10.done();
        drop(r10);
        pending.advance();
        assert!(pending.take_commit("t", None).is_none(), "reported when the last clone goes");
        drop(copy); // 10 done.
        pending.advance();
        let list = pending.take_commit("t", None).expect("commit");
        assert_eq!(list.find_partition("t", 0).map(|e| e.offset()), Some(Offset::Offset(12)));
        assert!(pending.take_commit("t", None).is_none(), "committed once");
        drop(r12); // Dropped without done: abandoned (a node stopping mid-event).
        r13.done();
        drop(r13);
        pending.advance();
        assert!(pending.take_commit("t", None).is_none(), "nothing past an abandoned event");
        assert!(!pending.busy(Some(&[0])), "a stuck partition is not waited for");
        assert!(!pending.busy(None));
    }
}
