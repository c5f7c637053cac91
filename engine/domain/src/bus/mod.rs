//! The bus port: how inbound events reach the node hosting a conversation's actor, and how the
//! actor's outbound events reach every subscriber (visitor sockets, agents, channel sinks).
//!
//! Adapters:
//! - [`local::InProcessBus`] (here: no I/O, and the cluster adapter fans out through it too):
//!   one process; inbound is a direct hand-off to the local engine, outbound a fan-out per
//!   conversation to one bounded queue per subscriber.
//! - `parla_cluster::ClusterBus`: several nodes; inbound through a Kafka topic keyed by
//!   conversation id (its partition decides the engine node that hosts the actor), outbound
//!   through Redis pub/sub to every node with a subscriber (see the crate for why).

use std::sync::Arc;

mod coordination;
mod delivery;
mod feed;
pub mod local;
mod probe;

pub use coordination::Coordination;
pub use delivery::Delivery;
pub use feed::Feed;
pub use probe::Probe;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{
    AgentRef, BotId, ConnId, ConversationId, ConversationKey, Handling, Message, Note, Sender,
    TenantId,
};

/// Something that happened *to* a conversation, to be handled by its actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inbound {
    /// A visitor opened or resumed the conversation: the bot greets a new one, and answers a
    /// visitor message that a stopped process left unanswered.
    Start,
    /// A visitor's message (text, postback or form), checked by the transport it came in on.
    /// `client_msg_id` makes it idempotent.
    VisitorMessage(crate::input::VisitorInput),
    /// The visitor has read up to `seq`.
    Read { seq: u64 },
    /// Delete the conversation and all its messages (the tenant asked); the actor stops.
    Delete,
    /// The bot (or its intents) changed in the store.
    BotChanged { bot: BotId },
    /// An agent's command from another node; the outcome goes back to `reply_to`'s node
    /// channel under `request` (see [`Delivery::answer`]).
    Command { request: String, reply_to: String, command: crate::agents::AgentCommand },
}

impl Inbound {
    /// The visitor's idempotency key, for an event that carries one.
    pub fn client_msg_id(&self) -> Option<&str> {
        match self {
            Self::VisitorMessage(input) => Some(&input.client_msg_id),
            _ => None,
        }
    }
}

/// An inbound event with its address and the connection it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub key: ConversationKey,
    /// The connection that sent it, so answers meant for it alone (a duplicate's ack, a refusal)
    /// can be routed back.
    pub origin: Option<ConnId>,
    pub inbound: Inbound,
    /// Tells the bus when the engine is done with the event (never sent over the wire).
    #[serde(skip)]
    pub receipt: Receipt,
}

impl Envelope {
    pub fn new(key: ConversationKey, origin: Option<ConnId>, inbound: Inbound) -> Self {
        Self { key, origin, inbound, receipt: Receipt::default() }
    }
}

/// How a bus that must not lose an event learns that the engine is done with it: marked
/// [`Receipt::done`] when the event's effects are durable (a visitor message is stored and its
/// reply stored or cancelled by an agent; a refusal told to its sender). Dropped without that
/// (the node let go of the event: its conversation moved, the process is stopping) it is
/// abandoned, and the bus hands the event out again. Clones share one outcome, reported when
/// the last is dropped. A default receipt reports to nobody.
#[derive(Debug, Clone, Default)]
pub struct Receipt(Option<Arc<ReceiptInner>>);

#[derive(Debug)]
struct ReceiptInner {
    report: parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    done: std::sync::atomic::AtomicBool,
}

impl Drop for ReceiptInner {
    fn drop(&mut self) {
        let report = self.report.lock().take();
        if let Some(report) = report
            && self.done.load(std::sync::atomic::Ordering::SeqCst)
        {
            let _ = report.send(()); // The bus may have stopped waiting.
        }
        // Not done: the sender is dropped unsent, which the bus reads as abandoned.
    }
}

impl Receipt {
    /// A receipt and what its bus waits on: `Ok` once done, `Err` if abandoned.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = ReceiptInner {
            report: parking_lot::Mutex::new(Some(tx)),
            done: std::sync::atomic::AtomicBool::new(false),
        };
        (Self(Some(Arc::new(inner))), rx)
    }

    /// The engine is done with the event (reported once every clone is dropped).
    pub fn done(&self) {
        if let Some(inner) = &self.0 {
            inner.done.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The event was not finished here: its bus must deliver it again (to whoever owns it
    /// now), even if a clone says done.
    pub fn abandon(&self) {
        if let Some(inner) = &self.0 {
            inner.report.lock().take(); // Dropping the sender tells the receiver.
        }
    }
}

/// Something that happened *in* a conversation, fanned out to its subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message was stored (visitor's, bot's or agent's).
    Message { message: Message },
    /// A duplicate `client_msg_id`: the stored message, for the sending connection only.
    Ack { conn: ConnId, message: Message },
    /// A streamed reply begins.
    StreamStart { stream_id: String, sender: Sender },
    /// One piece of a streamed reply.
    Token { stream_id: String, delta: String },
    /// A streamed reply ended and is stored as `message`.
    StreamEnd { stream_id: String, message: Message },
    /// Someone started or stopped typing.
    Typing { sender: Sender, on: bool, origin: Option<ConnId> },
    /// Someone read up to `seq`.
    Read { sender: Sender, seq: u64, origin: Option<ConnId> },
    /// An event was not processed; meant for `conn` only, or for everyone when `None`.
    Rejected { conn: Option<ConnId>, client_msg_id: Option<String>, code: String, message: String },
    /// A stream was stopped before its end (an agent took over): it will never be stored.
    StreamCancelled { stream_id: String },
    /// Who answers from now on: the bot, or a human agent.
    Handoff { to: Sender, agent: Option<AgentRef> },
    /// How the conversation is handled changed (for agents).
    Handling { handling: Handling },
    /// An agent's note (for agents only: never sent to the visitor).
    Note { note: Note },
}

/// Something agents of a tenant watch across its conversations: the live inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TenantEvent {
    /// A conversation got a message or changed hands.
    Conversation {
        conversation_id: ConversationId,
        bot_id: BotId,
        handling: Handling,
        last_message: Option<Box<Message>>,
    },
    /// An agent came online, went away or offline.
    Presence { presence: crate::presence::AgentPresence },
    /// A member's account changed (role, removal, sessions ended by a password reset): their
    /// agent sockets, on whichever node, check their session again.
    Member { account_id: crate::model::AccountId },
}

/// Why the bus could not take an event.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no engine is bound to this bus yet")]
    Unbound,
    #[error("the engine refused the event: {0}")]
    Refused(#[from] crate::EngineError),
    #[error("bus transport: {0}")]
    Transport(String),
}

/// Which conversations a node lets go of (see [`InboundHandler::release`]).
pub type Releasing = Arc<dyn Fn(&ConversationKey) -> bool + Send + Sync>;

/// Receives inbound events on the node that hosts conversation actors.
#[async_trait]
pub trait InboundHandler: Send + Sync + 'static {
    async fn handle(&self, envelope: Envelope) -> Result<(), crate::EngineError>;
    /// Stops the live actors of the conversations `which` selects (they moved to another node):
    /// each finishes the message in hand, abandons what is queued or streaming, and stops.
    async fn release(&self, _which: Releasing) {}
    /// A bot or its intents changed (told by another node).
    fn bot_changed(&self, _tenant: &TenantId, _bot: &BotId) {}
}

/// Live events of one conversation, plus the events addressed to one connection.
#[derive(Debug)]
pub struct Subscription {
    /// This subscriber's own bounded queue of the conversation's events. A queue per subscriber
    /// rather than one ring per conversation: an idle conversation's subscriber then costs one
    /// small allocation, not a preallocated ring of `subscriber_buffer` slots (≈ 8 KiB at 256).
    rx: tokio::sync::mpsc::Receiver<Arc<Event>>,
    /// Events the publisher could not queue because this subscriber was full: it fell behind.
    lagged: Arc<std::sync::atomic::AtomicU64>,
    /// An event received after a loss, held back until the loss has been reported.
    held: Option<Arc<Event>>,
    /// Events for this connection alone (acks, refusals). A separate bounded queue, so they are
    /// not lost when the subscriber lags behind the conversation's events.
    direct: Option<tokio::sync::mpsc::Receiver<Arc<Event>>>,
    /// Unregisters the subscriber's queues when the subscription is dropped.
    _guard: Option<Box<dyn Send + Sync + std::fmt::Debug>>,
    /// A remote route's registration, released with the subscription.
    _route: Option<Box<dyn Send + Sync + std::fmt::Debug>>,
}

/// What [`Subscription::recv`] can return besides an event.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// This subscriber fell behind and `n` events were dropped: re-read stored messages.
    Lagged(u64),
    /// The conversation's channel closed.
    Closed,
}

impl Subscription {
    pub fn new(
        rx: tokio::sync::mpsc::Receiver<Arc<Event>>,
        lagged: Arc<std::sync::atomic::AtomicU64>,
        direct: Option<tokio::sync::mpsc::Receiver<Arc<Event>>>,
        guard: Option<Box<dyn Send + Sync + std::fmt::Debug>>,
    ) -> Self {
        Self { rx, lagged, held: None, direct, _guard: guard, _route: None }
    }

    /// Keeps `guard` alive as long as the subscription.
    pub fn with_route_guard(mut self, guard: Box<dyn Send + Sync + std::fmt::Debug>) -> Self {
        self._route = Some(guard);
        self
    }

    /// The next event. A loss is reported as [`RecvError::Lagged`] before any event queued after
    /// it, and everything still queued is dropped with it: the subscriber recovers from the
    /// store, and then gets only events newer than every lost one. (A full queue refuses the
    /// newest event; delivering the older ones queued ahead of it after the recovery would show
    /// a stream start or a typing indicator whose end was the event lost.)
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        if let Some(lost) = self.take_loss() {
            return Err(RecvError::Lagged(lost));
        }
        if let Some(event) = self.held.take() {
            return Ok(event);
        }
        let event = match self.direct.as_mut() {
            Some(direct) => tokio::select! {
                biased;
                Some(ev) = direct.recv() => return Ok(ev),
                ev = self.rx.recv() => ev,
            },
            None => self.rx.recv().await,
        };
        let Some(event) = event else { return Err(RecvError::Closed) };
        if self.lagged.load(std::sync::atomic::Ordering::Acquire) > 0 {
            // Queued after a loss: dropped with the rest, reported as part of it.
            self.held = Some(event);
            return Err(RecvError::Lagged(self.take_loss().unwrap_or(1)));
        }
        Ok(event)
    }

    /// If events were lost: how many, counting the queued ones this drops with them.
    fn take_loss(&mut self) -> Option<u64> {
        use std::sync::atomic::Ordering::AcqRel;
        let mut lost = self.lagged.swap(0, AcqRel);
        if lost == 0 {
            return None;
        }
        lost += u64::from(self.held.take().is_some());
        while self.rx.try_recv().is_ok() {
            lost += 1;
        }
        // Refused while we drained: part of the same loss.
        lost += self.lagged.swap(0, AcqRel);
        Some(lost)
    }

    /// Appends to `delta` the tokens of `stream_id` already queued right behind the one in
    /// hand, while `delta` stays within `max_bytes`: a subscriber that fell behind catches up in
    /// fewer frames, and one that keeps up (nothing queued) gets every token as it comes. Stops
    /// at any other event (kept for the next [`Subscription::recv`]) and at a loss. Returns how
    /// many tokens it merged.
    pub fn coalesce_tokens(
        &mut self,
        stream_id: &str,
        delta: &mut String,
        max_bytes: usize,
    ) -> usize {
        use std::sync::atomic::Ordering::Acquire;
        let mut merged = 0;
        while self.held.is_none() && self.lagged.load(Acquire) == 0 {
            let Ok(event) = self.rx.try_recv() else { break };
            match &*event {
                Event::Token { stream_id: s, delta: more }
                    if s == stream_id && delta.len() + more.len() <= max_bytes =>
                {
                    delta.push_str(more);
                    merged += 1;
                }
                _ => self.held = Some(event),
            }
        }
        merged
    }
}

impl Event {
    /// The one connection this event is for, if it is not for every subscriber.
    pub fn target(&self) -> Option<ConnId> {
        match self {
            Event::Ack { conn, .. } => Some(*conn),
            Event::Rejected { conn, .. } => *conn,
            _ => None,
        }
    }
}

/// The bus: every bus port on one transport (the in-process fan-out, or Kafka + Redis), which
/// the engine holds as `Arc<dyn Bus>`. The ports are apart so each concern reads on its own
/// and an adapter states what it adds: the in-process bus takes the defaults of
/// [`Coordination`] and [`Probe`] (one process shares nothing, depends on nothing).
pub trait Bus: Delivery + Feed + Coordination + Probe {}

impl<T: ?Sized + Delivery + Feed + Coordination + Probe> Bus for T {}
