//! The in-process bus: the embedded default.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, Weak},
};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};

use super::{Bus, BusError, Envelope, Event, InboundHandler, Subscription};
use crate::model::{ConnId, ConversationKey};

/// Events addressed to one connection that may wait for it. A connection has at most one frame
/// in the engine at a time (the gateway awaits each send), and each produces at most one
/// addressed event, so a mailbox's worth plus headroom is never reached in practice; if it is,
/// the event is dropped with a warning rather than blocking the actor.
const DIRECT_QUEUE: usize = 1024;

type Directs = Mutex<HashMap<ConnId, mpsc::Sender<Arc<Event>>>>;

/// Inbound events go straight to the bound engine; outbound events go through one broadcast
/// channel per conversation that has subscribers.
pub struct InProcessBus {
    handler: OnceLock<Arc<dyn InboundHandler>>,
    /// Per-conversation fan-out. A channel is created by the first subscriber and dropped by the
    /// first publish that finds no subscriber left, so idle conversations cost nothing.
    channels: Mutex<HashMap<ConversationKey, broadcast::Sender<Arc<Event>>>>,
    /// Events buffered per conversation: how far a subscriber may fall behind before it must
    /// recover from the store (a bot reply of a few hundred tokens fits).
    buffer: usize,
    /// Per-connection queues for addressed events.
    directs: Arc<Directs>,
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
            channels: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            directs: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn deliver(&self, envelope: Envelope) -> Result<(), BusError> {
        let handler = self.handler.get().ok_or(BusError::Unbound)?;
        handler.handle(envelope).await.map_err(BusError::Refused)
    }

    fn publish(&self, key: &ConversationKey, event: Event) {
        if let Some(conn) = event.target() {
            if let Some(tx) = self.directs.lock().get(&conn)
                && tx.try_send(Arc::new(event)).is_err()
            {
                tracing::warn!("a connection's direct queue is full; dropping an addressed event");
            }
            return;
        }
        let mut channels = self.channels.lock();
        if let Some(tx) = channels.get(key)
            && tx.send(Arc::new(event)).is_err()
        {
            // No receiver left: forget the channel.
            channels.remove(key);
        }
    }

    fn subscribe(&self, key: &ConversationKey, conn: Option<ConnId>) -> Subscription {
        let rx = {
            let mut channels = self.channels.lock();
            let tx =
                channels.entry(key.clone()).or_insert_with(|| broadcast::channel(self.buffer).0);
            tx.subscribe()
        };
        let Some(conn) = conn else {
            return Subscription::new(rx, None, None);
        };
        let (tx, direct) = mpsc::channel(DIRECT_QUEUE);
        self.directs.lock().insert(conn, tx);
        let guard = DirectGuard { conn, directs: Arc::downgrade(&self.directs) };
        Subscription::new(rx, Some(direct), Some(Box::new(guard)))
    }

    fn bind(&self, handler: Arc<dyn InboundHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("in-process bus bound twice; keeping the first engine");
        }
    }
}

/// Removes a connection's direct queue when its subscription goes away.
#[derive(Debug)]
struct DirectGuard {
    conn: ConnId,
    directs: Weak<Directs>,
}

impl Drop for DirectGuard {
    fn drop(&mut self) {
        if let Some(directs) = self.directs.upgrade() {
            directs.lock().remove(&self.conn);
        }
    }
}
