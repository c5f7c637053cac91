//! The in-process bus: the embedded default, and the local fan-out of the cluster's.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};

use super::{
    BusError, Coordination, Delivery, Envelope, Event, Feed, InboundHandler, Probe, Subscription,
    TenantEvent,
};
use crate::model::{ConnId, ConversationKey, TenantId};

/// Events addressed to one connection that may wait for it. A connection has at most one frame
/// in the engine at a time (the gateway awaits each send), and each produces at most one
/// addressed event, so a mailbox's worth plus headroom is never reached in practice; if it is,
/// the event is dropped with a warning rather than blocking the actor.
const DIRECT_QUEUE: usize = 1024;

type Directs = Mutex<HashMap<ConnId, mpsc::Sender<Arc<Event>>>>;
/// Shards of the per-conversation channel map: every token of every conversation looks its
/// channel up here, so one lock would serialise all streams; 64 shards make collisions rare.
const CHANNEL_SHARDS: usize = 64;

/// One subscriber of a conversation: its queue, and where a full queue counts lost events.
#[derive(Debug, Clone)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Event>>,
    lagged: Arc<AtomicU64>,
}

/// A conversation's subscribers. Copied on write: a publisher clones the `Arc` under the shard
/// lock and sends outside it; subscribing and unsubscribing (rare) copy the list.
type Fanout = Arc<Vec<Subscriber>>;

/// The per-conversation fan-outs, sharded by conversation.
struct Channels {
    shards: Box<[Mutex<HashMap<ConversationKey, Fanout>>]>,
    hasher: RandomState,
    next_id: AtomicU64,
}

impl Channels {
    fn new() -> Self {
        let shards = (0..CHANNEL_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self { shards, hasher: RandomState::new(), next_id: AtomicU64::new(0) }
    }

    fn shard(&self, key: &ConversationKey) -> &Mutex<HashMap<ConversationKey, Fanout>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[index]
    }
}

/// Inbound events go straight to the bound engine; outbound events go to each subscriber's own
/// bounded queue, through one fan-out per conversation that has subscribers.
pub struct InProcessBus {
    handler: OnceLock<Arc<dyn InboundHandler>>,
    /// Per-conversation fan-out. Created by the first subscriber and dropped with the last, so
    /// conversations without subscribers cost nothing.
    channels: Arc<Channels>,
    /// Events queued per subscriber: how far it may fall behind before it must recover from the
    /// store (a bot reply of a few hundred tokens fits). Queues grow in blocks as they fill, so
    /// an idle subscriber holds only the first.
    buffer: usize,
    /// Per-connection queues for addressed events.
    directs: Arc<Directs>,
    /// Per-tenant inbox feeds, created by the first watcher (one per tenant with agents).
    tenants: Mutex<HashMap<TenantId, broadcast::Sender<Arc<TenantEvent>>>>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus").field("buffer", &self.buffer).finish_non_exhaustive()
    }
}

impl InProcessBus {
    pub fn new(buffer: usize) -> Self {
        Self {
            handler: OnceLock::new(),
            channels: Arc::new(Channels::new()),
            buffer: buffer.max(1),
            directs: Arc::new(Mutex::new(HashMap::new())),
            tenants: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Delivery for InProcessBus {
    async fn deliver(&self, envelope: Envelope) -> Result<(), BusError> {
        let handler = self.handler.get().ok_or(BusError::Unbound)?;
        handler.handle(envelope).await.map_err(BusError::Refused)
    }

    fn bind(&self, handler: Arc<dyn InboundHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("in-process bus bound twice; keeping the first engine");
        }
    }
}

#[async_trait]
impl Feed for InProcessBus {
    fn publish(&self, key: &ConversationKey, event: Event) {
        if let Some(conn) = event.target() {
            if let Some(tx) = self.directs.lock().get(&conn)
                && tx.try_send(Arc::new(event)).is_err()
            {
                tracing::warn!("a connection's direct queue is full; dropping an addressed event");
            }
            return;
        }
        // Clone the fan-out under the shard lock and send outside it: waking receivers never
        // holds up another conversation. A subscriber that is gone is removed by its guard, so a
        // failed send here needs no cleanup; one that is full has lost this event and is told.
        let fanout = self.channels.shard(key).lock().get(key).cloned();
        if let Some(fanout) = fanout {
            let event = Arc::new(event);
            for sub in fanout.iter() {
                if sub.tx.try_send(event.clone()).is_err() {
                    sub.lagged.fetch_add(1, Relaxed);
                }
            }
        }
    }

    async fn subscribe(&self, key: &ConversationKey, conn: Option<ConnId>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let lagged = Arc::new(AtomicU64::new(0));
        let id = self.channels.next_id.fetch_add(1, Relaxed);
        Arc::make_mut(self.channels.shard(key).lock().entry(key.clone()).or_default())
            .push(Subscriber { id, tx, lagged: lagged.clone() });
        let (direct, mine) = match conn {
            Some(conn) => {
                let (tx, rx) = mpsc::channel(DIRECT_QUEUE);
                self.directs.lock().insert(conn, tx.clone());
                (Some(rx), Some((conn, tx)))
            }
            None => (None, None),
        };
        let guard = SubscriptionGuard {
            key: key.clone(),
            id,
            direct: mine,
            channels: Arc::downgrade(&self.channels),
            directs: Arc::downgrade(&self.directs),
        };
        Subscription::new(rx, lagged, direct, Some(Box::new(guard)))
    }

    fn publish_tenant(&self, tenant: &TenantId, event: TenantEvent) {
        let tx = self.tenants.lock().get(tenant).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(Arc::new(event)); // No watcher: nobody to tell.
        }
    }

    async fn subscribe_tenant(&self, tenant: &TenantId) -> broadcast::Receiver<Arc<TenantEvent>> {
        let mut tenants = self.tenants.lock();
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| broadcast::channel(self.buffer).0)
            .subscribe()
    }
}

/// One process shares nothing with other nodes: the defaults (presence and leases are local).
impl Coordination for InProcessBus {}

/// An in-process bus depends on no service.
impl Probe for InProcessBus {}

/// Cleans up after a subscription: its queue in the conversation's fan-out (the fan-out itself
/// when this was its last subscriber), and its connection's direct queue.
#[derive(Debug)]
struct SubscriptionGuard {
    key: ConversationKey,
    id: u64,
    /// The connection and its queue's sender: removed only if still the registered one, since
    /// a newer subscription of the same connection may have replaced it.
    direct: Option<(ConnId, mpsc::Sender<Arc<Event>>)>,
    channels: Weak<Channels>,
    directs: Weak<Directs>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let (Some((conn, mine)), Some(directs)) = (&self.direct, self.directs.upgrade()) {
            let mut directs = directs.lock();
            if directs.get(conn).is_some_and(|tx| tx.same_channel(mine)) {
                directs.remove(conn);
            }
        }
        if let Some(channels) = self.channels.upgrade() {
            let mut shard = channels.shard(&self.key).lock();
            if let Some(fanout) = shard.get_mut(&self.key) {
                Arc::make_mut(fanout).retain(|sub| sub.id != self.id);
                if fanout.is_empty() {
                    shard.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::RecvError;
    use crate::model::{ConversationId, TenantId};

    fn channel_count(bus: &InProcessBus) -> usize {
        bus.channels.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn key(c: &str) -> ConversationKey {
        ConversationKey { tenant_id: TenantId::from("t"), conversation_id: ConversationId::from(c) }
    }

    #[tokio::test]
    async fn channels_and_direct_queues_go_away_with_their_last_subscriber() {
        let bus = InProcessBus::new(8);
        let (a, b) = (
            bus.subscribe(&key("c1"), Some(ConnId(1))).await,
            bus.subscribe(&key("c1"), None).await,
        );
        assert_eq!(channel_count(&bus), 1);
        assert_eq!(bus.directs.lock().len(), 1);
        drop(a);
        assert_eq!(bus.directs.lock().len(), 0, "the connection's queue is gone");
        assert_eq!(channel_count(&bus), 1, "another subscriber remains");
        drop(b);
        assert_eq!(channel_count(&bus), 0, "no subscriber left, no channel left");
    }

    #[tokio::test]
    async fn a_full_subscriber_learns_it_lagged_before_later_events_and_others_lose_nothing() {
        let bus = InProcessBus::new(2);
        let mut slow = bus.subscribe(&key("c1"), None).await;
        let mut fast = bus.subscribe(&key("c1"), None).await;
        let event = |n: u32| Event::Rejected {
            conn: None,
            client_msg_id: None,
            code: "x".into(),
            message: n.to_string(),
        };
        for n in 1..=4 {
            bus.publish(&key("c1"), event(n));
            assert_eq!(*fast.recv().await.expect("event"), event(n), "the fast one gets all");
        }
        // The slow one's queue held 1 and 2; 3 and 4 found it full. The loss is reported with
        // everything queued ahead of it dropped too (recovered from the store, like the lost
        // ones): after a loss a subscriber only sees events newer than every lost one.
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(4)));
        bus.publish(&key("c1"), event(5));
        assert_eq!(*slow.recv().await.expect("event"), event(5), "caught up: live again");
        bus.publish(&key("c1"), event(6));
        bus.publish(&key("c1"), event(7));
        bus.publish(&key("c1"), event(8));
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(3)));
        bus.publish(&key("c1"), event(9));
        assert_eq!(*slow.recv().await.expect("event"), event(9), "never 6 or 7 after the loss");
    }

    #[tokio::test]
    async fn queued_tokens_of_the_stream_in_hand_merge_and_nothing_else_does() {
        let bus = InProcessBus::new(16);
        let mut sub = bus.subscribe(&key("c1"), None).await;
        let token = |stream: &str, delta: &str| Event::Token {
            stream_id: stream.into(),
            delta: delta.into(),
        };
        for (stream, delta) in [("s", "Hello"), ("s", " there"), ("s", ","), ("t", " other")] {
            bus.publish(&key("c1"), token(stream, delta));
        }
        bus.publish(&key("c1"), token("s", " friend"));
        let first = sub.recv().await.expect("event");
        let Event::Token { stream_id, delta } = &*first else { panic!("a token: {first:?}") };
        let mut delta = delta.clone();
        assert_eq!(sub.coalesce_tokens(stream_id, &mut delta, 4096), 2);
        assert_eq!(delta, "Hello there,", "up to the other stream's token, in order");
        assert_eq!(*sub.recv().await.expect("event"), token("t", " other"), "kept, not lost");
        assert_eq!(*sub.recv().await.expect("event"), token("s", " friend"));

        // Nothing queued: nothing merged (a subscriber that keeps up gets each token alone).
        let mut alone = String::from("x");
        assert_eq!(sub.coalesce_tokens("s", &mut alone, 4096), 0);
        // The size bound holds; the token that would pass it comes next, whole.
        bus.publish(&key("c1"), token("s", "abc"));
        bus.publish(&key("c1"), token("s", "defgh"));
        let mut delta = String::from("12345");
        assert_eq!(sub.coalesce_tokens("s", &mut delta, 10), 1);
        assert_eq!(delta, "12345abc");
        assert_eq!(*sub.recv().await.expect("event"), token("s", "defgh"));
    }

    #[tokio::test]
    async fn addressed_events_reach_only_their_connection() {
        let bus = InProcessBus::new(8);
        let mut mine = bus.subscribe(&key("c1"), Some(ConnId(1))).await;
        let mut other = bus.subscribe(&key("c1"), Some(ConnId(2))).await;
        let rejected = |conn| Event::Rejected {
            conn: Some(ConnId(conn)),
            client_msg_id: None,
            code: "x".into(),
            message: "y".into(),
        };
        bus.publish(&key("c1"), rejected(1));
        bus.publish(
            &key("c1"),
            Event::Typing { sender: crate::model::Sender::User, on: true, origin: None },
        );
        assert_eq!(*mine.recv().await.expect("event"), rejected(1));
        assert!(
            matches!(*other.recv().await.expect("event"), Event::Typing { .. }),
            "not the addressed one"
        );
    }
}
