//! The tenant supervisor: owns one tenant's live conversation actors.
//!
//! It starts an actor on the first event for a conversation, routes events to it, enforces the
//! tenant's cap on live conversations — at the cap it passivates the least recently used idle
//! actor to make room, and refuses only when every live actor is busy — and takes back an
//! actor that passivates. Restarting after
//! a panic happens inside the actor's own supervision loop (see [`crate::actor`]), which keeps
//! the mailbox; the supervisor restarts an actor whose task ended for any other reason the next
//! time an event for it arrives (its mailbox is found closed).
//!
//! # Concurrency
//! The actor map sits behind a short `parking_lot` mutex, never held across an `.await`: an
//! event is offered with `try_send` under the lock, so that an actor checking whether it may
//! passivate (also under the lock) never misses one; only when the mailbox is full does the
//! sender wait, outside the lock — that wait is the backpressure on a flooding client.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use parking_lot::Mutex;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    EngineError,
    actor::{ActorHandle, ActorMsg, ConversationActor},
    bus::{Envelope, Inbound},
    engine::Deps,
    model::{ConversationId, ConversationKey, TenantId},
};

/// How long a sender waits for room in a full mailbox before the event is refused: long enough
/// to ride out a burst, short enough that a stuck conversation (store down) does not hold the
/// sender's socket hostage.
const MAILBOX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct TenantSupervisor {
    tenant_id: TenantId,
    deps: Arc<Deps>,
    actors: Mutex<HashMap<ConversationId, ActorHandle>>,
    next_generation: AtomicU64,
}

/// Makes room at the cap: forgets the least recently used actor that is idle (waiting, nothing
/// in flight) with an empty mailbox, and tells it to stop. Under the map's lock, so nothing can
/// be sent to it after the check (every sender goes through the map). Returns whether one went:
/// if none can, every live conversation is busy, and the caller refuses.
fn evict_idle(actors: &mut HashMap<ConversationId, ActorHandle>) -> bool {
    let mut idle: Vec<(i64, ConversationId)> = actors
        .iter()
        .filter(|(_, h)| h.activity.idle() && h.tx.capacity() == h.tx.max_capacity())
        .map(|(c, h)| (h.activity.last_ms(), c.clone()))
        .collect();
    idle.sort_unstable();
    // Least recently used first; one that became busy since the look is skipped (its own
    // compare-and-set won: see `Activity`).
    for (_, conversation) in idle {
        if actors.get(&conversation).is_some_and(|h| h.activity.try_evict()) {
            if let Some(handle) = actors.remove(&conversation) {
                handle.tell_release();
            }
            return true;
        }
    }
    false
}

impl TenantSupervisor {
    pub(crate) fn new(tenant_id: TenantId, deps: Arc<Deps>) -> Arc<Self> {
        Arc::new(Self {
            tenant_id,
            deps,
            actors: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
        })
    }

    /// Routes an event to its conversation's actor, starting one if needed. Waits while the
    /// actor's mailbox is full.
    pub(crate) async fn deliver(self: &Arc<Self>, envelope: Envelope) -> Result<(), EngineError> {
        debug_assert_eq!(envelope.key.tenant_id, self.tenant_id);
        let conversation = envelope.key.conversation_id.clone();
        self.deliver_msg(conversation, ActorMsg::Inbound(Box::new(envelope))).await
    }

    /// Routes any mailbox message to `conversation`'s actor (see [`Self::deliver`]).
    pub(crate) async fn deliver_msg(
        self: &Arc<Self>,
        conversation: ConversationId,
        mut msg: ActorMsg,
    ) -> Result<(), EngineError> {
        loop {
            let tx = {
                let mut actors = self.actors.lock();
                let handle = match actors.get(&conversation) {
                    Some(handle) => handle.clone(),
                    None => {
                        if actors.len() >= self.deps.settings.max_live_conversations_per_tenant
                            && !evict_idle(&mut actors)
                        {
                            self.deps.metrics.inbound_rejected.inc();
                            return Err(EngineError::TenantAtCapacity);
                        }
                        let key = ConversationKey {
                            tenant_id: self.tenant_id.clone(),
                            conversation_id: conversation.clone(),
                        };
                        let generation = self.next_generation.fetch_add(1, Relaxed);
                        let handle = ConversationActor::spawn(
                            key,
                            generation,
                            self.deps.clone(),
                            Arc::downgrade(self),
                        );
                        actors.insert(conversation.clone(), handle.clone());
                        handle
                    }
                };
                match handle.tx.try_send(msg) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(m)) => {
                        msg = m;
                        handle.tx
                    }
                    Err(TrySendError::Closed(m)) => {
                        // The actor's task ended: forget it; the next turn starts a fresh one.
                        actors.remove(&conversation);
                        msg = m;
                        continue;
                    }
                }
            };
            match tokio::time::timeout(MAILBOX_WAIT, tx.send(msg)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(mpsc::error::SendError(m))) => msg = m,
                Err(_) => {
                    self.deps.metrics.inbound_rejected.inc();
                    return Err(EngineError::ConversationBusy);
                }
            }
        }
    }

    /// Offers an event to every live actor of the tenant, without waiting: one with a full
    /// mailbox is skipped (it is busy, and picks the change up at its next reply anyway).
    pub(crate) fn notify_all(&self, inbound: impl Fn() -> Inbound) {
        let actors = self.actors.lock();
        for (conversation, handle) in actors.iter() {
            let key = ConversationKey {
                tenant_id: self.tenant_id.clone(),
                conversation_id: conversation.clone(),
            };
            let envelope = Envelope::new(key, None, inbound());
            let _ = handle.tx.try_send(ActorMsg::Inbound(Box::new(envelope)));
        }
    }

    /// Tells the live actors of the conversations `which` selects to stop (they moved to another
    /// node) and forgets them; returns their handles, to wait on ([`ActorHandle::stopped`]).
    /// Each finishes the message in hand first.
    pub(crate) fn release(&self, which: &crate::bus::Releasing) -> Vec<ActorHandle> {
        let released: Vec<ActorHandle> = {
            let mut actors = self.actors.lock();
            let moving: Vec<ConversationId> = actors
                .keys()
                .filter(|c| {
                    which(&ConversationKey {
                        tenant_id: self.tenant_id.clone(),
                        conversation_id: (*c).clone(),
                    })
                })
                .cloned()
                .collect();
            moving.iter().filter_map(|c| actors.remove(c)).collect()
        };
        for handle in &released {
            handle.tell_release();
        }
        released
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant_id
    }

    /// Live actors of the tenant now (what `max_live_conversations_per_tenant` caps).
    pub(crate) fn live(&self) -> usize {
        self.actors.lock().len()
    }

    /// Forgets an actor that is stopping for good (its store is unreachable).
    pub(crate) fn remove(&self, conversation: &ConversationId, generation: u64) {
        let mut actors = self.actors.lock();
        if actors.get(conversation).is_some_and(|h| h.generation == generation) {
            actors.remove(conversation);
        }
    }

    /// Called by an idle actor: removes it if it is still the registered incarnation and nothing
    /// is queued for it. Under the map lock, so no `try_send` can slip in between.
    pub(crate) fn remove_if_idle(
        &self,
        conversation: &ConversationId,
        generation: u64,
        rx: &mut mpsc::Receiver<ActorMsg>,
    ) -> bool {
        let mut actors = self.actors.lock();
        match actors.get(conversation) {
            Some(handle) if handle.generation == generation => {
                if !rx.is_empty() {
                    return false;
                }
                actors.remove(conversation);
                true
            }
            // Already replaced or removed: this incarnation is not reachable any more.
            _ => true,
        }
    }
}
