//! The in-process bus: the embedded default.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{Bus, BusError, Envelope, Event, InboundHandler, Subscription};
use crate::model::ConversationKey;

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
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl InProcessBus {
    pub fn new(buffer: usize) -> Self {
        Self {
            handler: OnceLock::new(),
            channels: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
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
        let mut channels = self.channels.lock();
        if let Some(tx) = channels.get(key) {
            if tx.send(Arc::new(event)).is_err() {
                // No receiver left: forget the channel.
                channels.remove(key);
            }
        }
    }

    fn subscribe(&self, key: &ConversationKey) -> Subscription {
        let mut channels = self.channels.lock();
        let tx = channels
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(self.buffer).0);
        Subscription::new(tx.subscribe())
    }

    fn bind(&self, handler: Arc<dyn InboundHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("in-process bus bound twice; keeping the first engine");
        }
    }
}
