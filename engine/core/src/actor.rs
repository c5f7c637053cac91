//! The conversation actor: the single writer of one conversation.
//!
//! A conversation actor is a tokio task that owns its conversation's state (last `seq`, bot,
//! intents, in-flight bot streams) and handles one [`ActorMsg`] at a time from a bounded
//! mailbox. Callers hold an [`ActorHandle`] (a cloneable sender).
//!
//! # Supervision
//! Each message is handled inside `catch_unwind`. A panic discards the actor's state, tells the
//! sending connection its event was not processed, and rehydrates the state from the store;
//! the mailbox and everything still queued in it survive, so the conversation continues with the
//! correct `seq`. (actix's `Supervisor` does not do this: a panicking handler closes the
//! mailbox. See `docs/adr/0002-actor-runtime.md`.)
//!
//! # Bot replies
//! A reply is produced by a separate task so the actor keeps handling events while tokens
//! stream: the task publishes each token straight to the bus and, when the stream ends, sends
//! the whole text back to the actor, which assigns the next `seq`, stores it and publishes
//! `StreamEnd`. The actor keeps each stream's abort handle and its publish gate: an agent's
//! claim closes the gate (the task publishes each token while holding it) before the `handoff`
//! goes out, so no bot token can follow it, then aborts the task, which drops the upstream
//! LLM request.
//!
//! # Human agents
//! Agent commands ([`crate::agents`]) arrive in the same mailbox and are answered through a
//! oneshot. While an agent holds the conversation (ASSIGNED) visitor messages are stored and
//! shown but the bot does not answer.
//!
//! # Passivation
//! An actor with an empty mailbox and no stream in flight for `idle_passivate` removes itself
//! from its tenant supervisor and stops; the next event for the conversation starts a fresh
//! actor, which rehydrates from the store. Under pressure (its tenant at its cap of live
//! actors) the supervisor passivates the least recently used idle actor at once instead of
//! refusing a new conversation: each actor publishes whether it is idle in its [`Activity`].

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use futures_util::{FutureExt, StreamExt};
use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
};
use tracing::Instrument;

use crate::{
    EngineError,
    agents::{AgentAction, AgentCommand, CommandOutcome},
    bus::{Envelope, Event, Inbound, Receipt, TenantEvent},
    engine::Deps,
    metrics::{Direction, StoreOp},
    model::*,
    responder::{ReplyRequest, builtin::IntentIndex},
    store::{Appended, StoreError},
    supervisor::TenantSupervisor,
};

/// What a conversation actor's mailbox carries. Payloads are boxed: a mailbox allocates its
/// slots in blocks of 32, so every byte here costs 32 in each live actor, idle or not.
#[derive(Debug)]
pub(crate) enum ActorMsg {
    Inbound(Box<Envelope>),
    /// A bot reply's stream ended (sent by the reply task).
    ReplyDone(Box<ReplyDone>),
    /// An agent's command, answered on the oneshot.
    Command(Box<AgentCommand>, oneshot::Sender<Result<CommandOutcome, EngineError>>),
}

/// A bot stream in flight.
struct InFlight {
    abort: AbortHandle,
    /// `true` while the stream may publish; the reply task holds the lock while it publishes a
    /// token, so once a canceller has set it to `false`, no token of this stream follows.
    gate: Arc<parking_lot::Mutex<bool>>,
    /// The receipt of the visitor message being answered: done when the reply is stored.
    receipt: Receipt,
}

impl InFlight {
    /// Stops the stream for good; its question counts as handled (an agent answers, the
    /// conversation is gone, or the next actor answers it: see `answer_unanswered`).
    fn stop(&self) {
        *self.gate.lock() = false;
        self.abort.abort();
        self.receipt.done();
    }
}

#[derive(Debug)]
pub(crate) struct ReplyDone {
    stream_id: String,
    /// The visitor's message being answered.
    question: String,
    text: String,
    intent: Option<String>,
    confidence: Option<f32>,
    usage: Option<crate::responder::Usage>,
}

/// A cheap handle to a live actor.
#[derive(Debug, Clone)]
pub(crate) struct ActorHandle {
    pub tx: mpsc::Sender<ActorMsg>,
    /// Tells incarnations apart, so a stopping actor removes only its own entry.
    pub generation: u64,
    /// Set to let go of the conversation (it moved to another node, or is passivated under
    /// pressure): seen before anything queued in the mailbox. Closed once the actor has stopped.
    pub release: Arc<tokio::sync::watch::Sender<bool>>,
    pub activity: Arc<Activity>,
}

/// What the supervisor can know of an actor without asking it (an atomic read, no message):
/// whether it could stop now without losing anything, and since when it did nothing.
///
/// Idle and evicted are one state machine, so the two sides cannot both win: the actor moves
/// `IDLE → BUSY` when it takes a message, the supervisor `IDLE → EVICTED` when it passivates
/// it, each by compare-and-set. An actor that took a message just as it was evicted finds
/// `EVICTED`, hands the message back to the supervisor (it goes to the conversation's next
/// actor) and stops, having done nothing with it.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// `BUSY`, `IDLE` (waiting for its next message, no bot stream in flight) or `EVICTED`.
    state: std::sync::atomic::AtomicU8,
    /// When it last finished a message (Unix ms): the least recently used is passivated first.
    last_ms: std::sync::atomic::AtomicI64,
}

const BUSY: u8 = 0;
const IDLE: u8 = 1;
const EVICTED: u8 = 2;

impl Activity {
    pub(crate) fn idle(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) == IDLE
    }

    pub(crate) fn last_ms(&self) -> i64 {
        self.last_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The supervisor passivates an idle actor; false if it has just become busy.
    pub(crate) fn try_evict(&self) -> bool {
        self.swap(IDLE, EVICTED)
    }

    fn evicted(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) == EVICTED
    }

    /// The actor waits with nothing in flight (no-op once evicted).
    fn set_idle(&self) {
        self.swap(BUSY, IDLE);
    }

    /// The actor takes a message: false if it was evicted meanwhile.
    fn take_busy(&self) -> bool {
        self.swap(IDLE, BUSY) || self.state.load(std::sync::atomic::Ordering::SeqCst) == BUSY
    }

    fn swap(&self, from: u8, to: u8) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.compare_exchange(from, to, SeqCst, SeqCst).is_ok()
    }
}

impl ActorHandle {
    /// Tells the actor to let go of its conversation now (after the message in hand).
    pub(crate) fn tell_release(&self) {
        let _ = self.release.send(true); // Nobody listening: it has stopped already.
    }

    /// Resolves once the actor has stopped.
    pub(crate) async fn stopped(&self) {
        self.release.closed().await;
    }
}

/// State rebuilt from the store on start and after a panic.
struct State {
    bot: Arc<Bot>,
    intents: Arc<Vec<Intent>>,
    /// `intents` analysed for classification.
    index: Arc<IntentIndex>,
    /// The bot's version when `bot` and `intents` were loaded (see `Engine::bot_changed`).
    bot_version: u64,
    last_seq: u64,
    handling: Handling,
    /// Bot answers in a row that were the fallback message.
    fallbacks: u32,
    /// Where the conversation came from (the `channel` its messages are counted under).
    channel: Channel,
}

pub(crate) struct ConversationActor {
    key: ConversationKey,
    generation: u64,
    deps: Arc<Deps>,
    supervisor: Weak<TenantSupervisor>,
    /// For reply tasks to report back; weak so that it never keeps the mailbox open by itself.
    me: mpsc::WeakSender<ActorMsg>,
    /// Bot streams in flight. Kept outside [`State`] so it survives a restart.
    in_flight: HashMap<String, InFlight>,
    /// Set once the conversation is deleted: the actor stops after the current message.
    deleted: bool,
    /// The receipt of the inbound event in hand; a reply it starts takes it along.
    receipt: Option<Receipt>,
    activity: Arc<Activity>,
}

impl ConversationActor {
    /// Spawns a new actor for `key`; returns its handle.
    pub(crate) fn spawn(
        key: ConversationKey,
        generation: u64,
        deps: Arc<Deps>,
        supervisor: Weak<TenantSupervisor>,
    ) -> ActorHandle {
        let (tx, rx) = mpsc::channel(deps.settings.mailbox_capacity);
        let (release, released) = tokio::sync::watch::channel(false);
        let activity = Arc::new(Activity::default());
        activity.last_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        let actor = ConversationActor {
            key,
            generation,
            deps: deps.clone(),
            supervisor,
            me: tx.downgrade(),
            in_flight: HashMap::new(),
            deleted: false,
            receipt: None,
            activity: activity.clone(),
        };
        deps.metrics.actor_starts.inc();
        deps.metrics.live_conversations.inc();
        deps.runtime.spawn(actor.run(rx, released));
        ActorHandle { tx, generation, release: Arc::new(release), activity }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ActorMsg>,
        mut released: tokio::sync::watch::Receiver<bool>,
    ) {
        // The handlers' futures are boxed while they run: inlined, their largest state would be
        // part of this loop's future, which every live actor holds while it idles.
        let hydrated = Box::pin(self.hydrate_with_retry()).instrument(self.span()).await;
        let mut state = match hydrated {
            Ok(state) => state,
            Err(EngineError::BotNotFound) => {
                let span = self.span();
                return Box::pin(self.orphaned(&mut rx)).instrument(span).await;
            }
            Err(e) => return self.give_up(&mut rx, &e),
        };
        if self.deps.bus.redelivers() {
            // This node may be taking over from one that failed mid-reply.
            let span = self.span();
            Box::pin(self.answer_unanswered(&mut state)).instrument(span).await;
        }
        let idle = self.deps.settings.idle_passivate();
        // Every handle gone (the engine is stopping): no release can come any more, and the
        // mailbox is drained as it closes.
        let mut orphaned = false;
        loop {
            // Passivatable by the supervisor while it waits here with nothing in flight.
            if self.in_flight.is_empty() {
                self.activity.set_idle();
            }
            // A release comes before anything queued: that belongs to the conversation's next
            // node.
            let next = tokio::select! {
                biased;
                changed = released.changed(), if !orphaned => match changed {
                    Ok(()) => None,
                    Err(_) => {
                        orphaned = true;
                        continue;
                    }
                },
                next = tokio::time::timeout(idle, rx.recv()) => Some(next),
            };
            if !self.activity.take_busy() {
                // Evicted while taking this message: the supervisor forgot this actor with an
                // empty mailbox, so the message in hand is the only one; it goes to the
                // conversation's next actor, untouched.
                if let Some(Ok(Some(msg))) = next
                    && let Some(supervisor) = self.supervisor.upgrade()
                {
                    let conversation = self.key.conversation_id.clone();
                    self.deps.runtime.spawn(async move {
                        if let Err(e) = supervisor.deliver_msg(conversation, msg).await {
                            tracing::warn!(error = %e, "an event lost its actor as it was passivated");
                        }
                    });
                }
                rx.close();
                self.deps.metrics.actor_passivations.inc();
                break;
            }
            let Some(next) = next else {
                if self.activity.evicted() {
                    // Passivated under pressure: the supervisor already forgot it, with an
                    // empty mailbox and nothing in flight; nothing is left to hand over.
                    rx.close();
                    self.deps.metrics.actor_passivations.inc();
                    tracing::debug!(conversation = %self.key.conversation_id, "passivated under pressure");
                } else {
                    self.release(&mut rx);
                }
                break;
            };
            match next {
                Ok(Some(msg)) => {
                    self.deps.metrics.mailbox_depth(rx.len());
                    // One span per message handled, not per actor: nothing is kept while the
                    // actor idles, and every log line of the handling names the conversation.
                    let span = self.span();
                    let handled = Box::pin(self.handle_supervised(&mut state, msg));
                    if let Err(e) = handled.instrument(span).await {
                        return self.give_up(&mut rx, &e);
                    }
                    self.activity.last_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                    if self.deleted {
                        return self.give_up(&mut rx, &EngineError::ConversationNotFound);
                    }
                }
                Ok(None) => break,
                Err(_idle) => {
                    if self.in_flight.is_empty() && self.deregister(&mut rx) {
                        self.deps.metrics.actor_passivations.inc();
                        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                        tracing::debug!(tenant = %t, conversation = %c, "passivated");
                        break;
                    }
                }
            }
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// The span of this conversation's work: its tenant and conversation ids, so that its log
    /// lines can be filtered (`[log] format = "json"` puts them on every line).
    fn span(&self) -> tracing::Span {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info_span!("conversation", tenant = %t, conversation = %c)
    }

    /// The conversation cannot go on (deleted, or the store stayed unreachable): leave the
    /// supervisor, refuse everything queued with `error`, and stop. The next event for the
    /// conversation starts a fresh actor, which tries again.
    fn give_up(&mut self, rx: &mut mpsc::Receiver<ActorMsg>, error: &EngineError) {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info!(tenant = %t, conversation = %c, %error, "stopping the conversation's actor");
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        // Removed under the supervisor's lock, so only a sender already waiting for a slot can
        // still get in before the close; the drain below answers it too.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            self.reject(msg, error);
        }
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// The conversation's bot is gone (deleted): its conversations go with it
    /// ([`crate::Engine::delete_bot`] asks each one's actor), and this one goes now, whoever
    /// woke it — a purge's `Delete`, or a visitor who opened it before the bot was deleted and
    /// wrote after its purge had listed the bot's conversations. Everything else queued is
    /// refused with `bot_not_found`.
    async fn orphaned(&mut self, rx: &mut mpsc::Receiver<ActorMsg>) {
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        rx.close();
        let mut deletes = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) if matches!(envelope.inbound, Inbound::Delete) => {
                    deletes.push(envelope)
                }
                other => self.reject(other, &EngineError::BotNotFound),
            }
        }
        // A refusal of the deletion goes to the first who asked for it, if anyone did.
        self.on_delete(deletes.first().and_then(|e| e.origin)).await;
        for envelope in deletes {
            envelope.receipt.done();
        }
        self.deps.metrics.live_conversations.dec();
    }

    /// Lets go of the conversation (it moved to another node): streams stop unstored and every
    /// receipt in hand is abandoned, so the new owner gets those events again.
    fn release(&mut self, rx: &mut mpsc::Receiver<ActorMsg>) {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        tracing::info!(tenant = %t, conversation = %c, "releasing the conversation to another node");
        if let Some(supervisor) = self.supervisor.upgrade() {
            supervisor.remove(&self.key.conversation_id, self.generation);
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) => envelope.receipt.abandon(),
                ActorMsg::Command(_, reply) => {
                    let _ = reply.send(Err(EngineError::ConversationBusy));
                }
                ActorMsg::ReplyDone(_) => {}
            }
        }
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
            stream.receipt.abandon(); // Its question is answered by the conversation's new node.
        }
    }

    /// Removes this actor from its supervisor and closes the mailbox, if nothing is queued.
    /// Anything that slipped in is handed to the supervisor again, in order, which starts a
    /// successor.
    fn deregister(&self, rx: &mut mpsc::Receiver<ActorMsg>) -> bool {
        let Some(supervisor) = self.supervisor.upgrade() else {
            rx.close();
            return true;
        };
        if !supervisor.remove_if_idle(&self.key.conversation_id, self.generation, rx) {
            return false;
        }
        rx.close();
        let mut leftovers = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Inbound(envelope) => leftovers.push(*envelope),
                // Cannot happen: we only passivate with no stream in flight.
                ActorMsg::ReplyDone(done) => {
                    tracing::warn!(stream = %done.stream_id, "a reply finished after its actor stopped")
                }
                ActorMsg::Command(_, reply) => {
                    // Refused rather than re-routed: the caller may simply retry.
                    let _ = reply.send(Err(EngineError::ConversationBusy));
                }
            }
        }
        if !leftovers.is_empty() {
            self.deps.runtime.spawn(async move {
                for envelope in leftovers {
                    if let Err(e) = supervisor.deliver(envelope).await {
                        tracing::warn!(error = %e, "event lost its actor while it stopped");
                    }
                }
            });
        }
        true
    }

    /// Loads the state, retrying store failures with backoff; a missing conversation or bot is
    /// final at once.
    async fn hydrate_with_retry(&self) -> Result<State, EngineError> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match self.hydrate().await {
                Ok(state) => return Ok(state),
                Err(e @ (EngineError::ConversationNotFound | EngineError::BotNotFound)) => {
                    return Err(e);
                }
                Err(e) if attempt >= 5 => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, conversation = %self.key.conversation_id, "rehydration failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    async fn hydrate(&self) -> Result<State, EngineError> {
        let store = &self.deps.store;
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let deps = &self.deps;
        let conversation = deps
            .timed(StoreOp::GetConversation, store.get_conversation(t, c))
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let loaded =
            self.deps.load_bot(t, &conversation.bot_id).await?.ok_or(EngineError::BotNotFound)?;
        let last_seq = deps.timed(StoreOp::LastSeq, store.last_seq(t, c)).await?;
        Ok(State {
            bot: loaded.bot,
            intents: loaded.intents,
            index: loaded.index,
            bot_version: loaded.version,
            last_seq,
            handling: conversation.handling,
            fallbacks: 0,
            channel: conversation.source,
        })
    }

    /// Handles one message; a panic restarts the actor's state from the store. Fails when that
    /// restart failed.
    async fn handle_supervised(
        &mut self,
        state: &mut State,
        msg: ActorMsg,
    ) -> Result<(), EngineError> {
        let origin = match &msg {
            ActorMsg::Inbound(envelope) => {
                envelope.origin.map(|conn| (conn, client_msg_id(envelope)))
            }
            ActorMsg::ReplyDone(_) | ActorMsg::Command(..) => None,
        };
        if AssertUnwindSafe(self.handle(state, msg)).catch_unwind().await.is_ok() {
            return Ok(());
        }
        self.deps.metrics.actor_restarts.inc();
        if let Some(receipt) = self.receipt.take() {
            receipt.done(); // Refused below: its sender is told.
        }
        tracing::error!(conversation = %self.key.conversation_id, "conversation actor panicked; restarting from the store");
        if let Some((conn, client_msg_id)) = origin {
            self.publish_rejection(Some(conn), client_msg_id, &EngineError::Internal);
        }
        *state = self.hydrate_with_retry().await?;
        Ok(())
    }

    async fn handle(&mut self, state: &mut State, msg: ActorMsg) {
        match msg {
            ActorMsg::Inbound(envelope) => {
                let Envelope { origin, inbound, receipt, .. } = *envelope;
                // Dropped (done) after the handling below, unless a reply took it along.
                self.receipt = Some(receipt);
                self.handle_inbound(state, origin, inbound).await;
                if let Some(receipt) = self.receipt.take() {
                    receipt.done();
                }
            }
            ActorMsg::ReplyDone(done) => self.on_reply_done(state, *done).await,
            ActorMsg::Command(command, reply) => {
                let outcome = self.on_command(state, *command).await;
                let _ = reply.send(outcome); // The caller may have given up waiting.
            }
        }
    }

    async fn handle_inbound(
        &mut self,
        state: &mut State,
        origin: Option<crate::model::ConnId>,
        inbound: Inbound,
    ) {
        match inbound {
            Inbound::Start => self.on_start(state).await,
            Inbound::VisitorMessage { client_msg_id, text } => {
                self.on_visitor_message(state, origin, client_msg_id, text).await
            }
            Inbound::Delete => self.on_delete(origin).await,
            Inbound::Command { request, reply_to, command } => {
                // Another node's agent: run here, answer there.
                let outcome = self.on_command(state, command).await;
                self.deps.bus.answer(&reply_to, &request, &outcome);
            }
            Inbound::BotChanged { bot } if bot == state.bot.id => {
                self.refresh_bot(state).await;
                if state.bot.status != BotStatus::Active {
                    let e = EngineError::BotUnavailable;
                    self.announce(e.code(), e.public_message());
                }
            }
            Inbound::BotChanged { .. } => {}
            Inbound::Read { seq } => self.deps.bus.publish(
                &self.key,
                Event::Read { sender: Sender::User, seq: seq.min(state.last_seq), origin },
            ),
        }
    }

    /// A visitor opened or resumed the conversation: greet a new one; answer a visitor message
    /// that was stored but never answered (the process stopped mid-reply).
    async fn on_start(&mut self, state: &mut State) {
        if state.last_seq == 0 {
            let Some(welcome) = state.bot.config.welcome_message.clone() else { return };
            let message = self.new_message(state, Sender::Bot, welcome, None);
            if let Some(stored) = self.store_message(state, message, None).await {
                self.tell_inbox(state, Some(&stored));
                self.deps.bus.publish(&self.key, Event::Message { message: stored });
            }
            return;
        }
        self.answer_unanswered(state).await;
    }

    /// Answers the last message if it is the visitor's and nothing answers it: a process (or
    /// node) stopped mid-reply.
    async fn answer_unanswered(&mut self, state: &mut State) {
        if state.last_seq == 0
            || !self.in_flight.is_empty()
            || state.handling.status == ConversationStatus::Assigned
        {
            return; // A reply is on its way, or an agent answers.
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let last = self.deps.store.messages_after(t, c, state.last_seq - 1, 1);
        let last = self.deps.timed(StoreOp::MessagesAfter, last).await;
        if let Ok([message]) = last.as_deref()
            && message.sender == Sender::User
        {
            tracing::info!(conversation = %c, seq = message.seq, "answering a message left unanswered");
            if message.form.is_some() {
                return self.thank_for_form(state).await;
            }
            let text = message.text.clone();
            let postback = message.postback.clone();
            self.refresh_bot(state).await;
            let best = postback
                .and_then(|payload| postback_intent(&state.intents, &payload))
                .map(|i| (i, 1.0))
                .or_else(|| state.index.classify(&text));
            self.start_reply(state, text, best).await;
        }
    }

    /// Deletes the conversation and everything in it, as its single writer, then stops.
    async fn on_delete(&mut self, origin: Option<ConnId>) {
        for (_, stream) in self.in_flight.drain() {
            stream.stop();
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        match self
            .deps
            .timed(StoreOp::DeleteConversation, self.deps.store.delete_conversation(t, c))
            .await
        {
            Ok(_) => {
                self.deleted = true;
                self.announce("conversation_deleted", "this conversation was deleted".into());
            }
            Err(e) => self.publish_rejection(origin, None, &EngineError::Store(e)),
        }
    }

    async fn on_visitor_message(
        &mut self,
        state: &mut State,
        origin: Option<ConnId>,
        client_msg_id: String,
        text: String,
    ) {
        let input = VisitorInput { client_msg_id, text, postback: None, form: None };
        // Refusals are told to `origin` inside; nothing else waits for the verdict.
        let _ = self.visitor_message(state, origin, input).await;
    }

    /// Stores a visitor's message (text, postback or form) and answers it. Refusals are told
    /// to `origin` when there is one, and returned either way.
    async fn visitor_message(
        &mut self,
        state: &mut State,
        origin: Option<ConnId>,
        input: VisitorInput,
    ) -> Result<CommandOutcome, EngineError> {
        let VisitorInput { client_msg_id, text, postback, form } = input;
        let panic_text = &self.deps.settings.panic_on_text;
        if !panic_text.is_empty() && text == *panic_text {
            panic!("fault injection: engine.panic_on_text matched");
        }
        self.refresh_bot(state).await;
        // A form sent before (a resend from the widget's outbox): acknowledged, and nothing
        // merged again — a stale resend must not overwrite what a later form collected. Other
        // messages need no read first: the append itself finds a duplicate, atomically.
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        if form.is_some()
            && let Ok(Some(existing)) = self
                .deps
                .timed(
                    StoreOp::MessageByClientId,
                    self.deps.store.message_by_client_id(t, c, &client_msg_id),
                )
                .await
        {
            self.deps.metrics.duplicates_acknowledged.inc();
            if let Some(conn) = origin {
                let ack = Event::Ack { conn, message: existing.clone() };
                self.deps.bus.publish(&self.key, ack);
            }
            return Ok(CommandOutcome::Message { message: existing, duplicate: true });
        }
        if let Some(form) = &form {
            // Checked against the bot's form of that id before anything is stored; its values
            // are merged before the message is (a retry after a failed append merges the same
            // values again, where the reverse order could lose them).
            let fields = find_form(&state.intents, &form.form_id).ok_or_else(|| {
                EngineError::InvalidForm(format!(
                    "form.form_id: {} is not a form of this bot",
                    form.form_id
                ))
            });
            let checked = fields.and_then(|fields| {
                form.validate_against(fields).map_err(|e| EngineError::InvalidForm(e.to_string()))
            });
            let merged = match checked {
                Ok(()) => self.merge_user_data(&form.filled()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = merged {
                if origin.is_some() {
                    self.publish_rejection(origin, Some(client_msg_id), &e);
                }
                return Err(e);
            }
        }
        let mut message = self.new_message(state, Sender::User, text, Some(client_msg_id));
        let best = match (&postback, &form) {
            (Some(payload), _) => {
                // A payload picks its intent only if the bot offered it here: a visitor cannot
                // fire an intent (and its webhook) by naming it.
                let direct = if self.offered(state, payload).await {
                    postback_intent(&state.intents, payload)
                } else {
                    None
                };
                direct.map(|i| (i, 1.0)).or_else(|| state.index.classify(&message.text))
            }
            // A form is answered with a thank-you below, not by an intent.
            (None, Some(_)) => None,
            (None, None) => {
                message.sentiment = crate::sentiment::score(&message.text);
                state.index.classify(&message.text)
            }
        };
        if let Some((i, confidence)) = best {
            (message.intent, message.confidence) =
                (Some(state.intents[i].name.clone()), Some(confidence));
        }
        (message.postback, message.form) = (postback, form.map(Box::new));
        let text = message.text.clone();
        let stored = match self.try_store(state, &message).await {
            Ok(Appended::Stored) => message,
            Ok(Appended::Duplicate(existing)) => {
                self.deps.metrics.duplicates_acknowledged.inc();
                if let Some(conn) = origin {
                    let ack = Event::Ack { conn, message: existing.clone() };
                    self.deps.bus.publish(&self.key, ack);
                }
                return Ok(CommandOutcome::Message { message: existing, duplicate: true });
            }
            Err(e) => {
                let e = EngineError::Store(e);
                if origin.is_some() {
                    self.publish_rejection(origin, message.client_msg_id, &e);
                }
                return Err(e);
            }
        };
        let was_form = stored.form.is_some();
        self.tell_inbox(state, Some(&stored));
        self.deps.bus.publish(&self.key, Event::Message { message: stored.clone() });
        let outcome = CommandOutcome::Message { message: stored, duplicate: false };
        if was_form {
            // Details left in a resolved conversation are a new episode the inbox must show.
            self.reopen_if_resolved(state).await;
            if state.handling.status != ConversationStatus::Assigned {
                self.thank_for_form(state).await;
            }
            return Ok(outcome);
        }
        self.answer_visitor(state, text, best).await;
        Ok(outcome)
    }

    /// Whether a button with `payload` is among the bot's last [`OFFER_WINDOW`] messages.
    async fn offered(&self, state: &State, payload: &str) -> bool {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let after = state.last_seq.saturating_sub(OFFER_WINDOW);
        let recent = self.deps.store.messages_after(t, c, after, OFFER_WINDOW as usize);
        let recent = self.deps.timed(StoreOp::MessagesAfter, recent).await;
        recent.unwrap_or_default().iter().any(|m| {
            m.sender != Sender::User
                && m.content.as_ref().is_some_and(|x| x.offers_payload(payload))
        })
    }

    /// A submitted form is answered with a thank-you, not by an intent (its summary would only
    /// make the bot fall back).
    async fn thank_for_form(&self, state: &mut State) {
        let thanks = if state.bot.language.starts_with("it") {
            "Grazie, abbiamo ricevuto i tuoi dati."
        } else {
            "Thank you, we have received your details."
        };
        self.say(state, thanks.to_owned()).await;
    }

    /// Merges a submitted form's values into the conversation's user data.
    async fn merge_user_data(
        &self,
        fields: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if fields.is_empty() {
            return Ok(());
        }
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let merged = self.deps.store.merge_user_data(t, c, fields);
        if self.deps.timed(StoreOp::MergeUserData, merged).await? {
            Ok(())
        } else {
            Err(EngineError::ConversationNotFound)
        }
    }

    /// What follows a stored visitor message: a CSAT score, reopening, escalation, the bot's
    /// answer.
    /// The visitor is back in a resolved conversation: a new episode, with the bot.
    async fn reopen_if_resolved(&mut self, state: &mut State) {
        if state.handling.status != ConversationStatus::Resolved {
            return;
        }
        let handling = Handling {
            status: ConversationStatus::Open,
            resolution: None,
            ended_at: None,
            csat_pending: false,
            ..state.handling.clone()
        };
        if let Err(e) = self.set_handling(state, handling).await {
            tracing::warn!(error = %e, "could not reopen a resolved conversation");
        }
    }

    async fn answer_visitor(
        &mut self,
        state: &mut State,
        text: String,
        best: Option<(usize, f32)>,
    ) {
        if state.handling.status == ConversationStatus::Resolved
            && state.handling.csat_pending
            && let Some(score) = csat_score(&text)
        {
            let handling =
                Handling { csat: Some(score), csat_pending: false, ..state.handling.clone() };
            if let Err(e) = self.set_handling(state, handling).await {
                tracing::warn!(error = %e, "could not record a CSAT score");
            }
            let thanks = if state.bot.language.starts_with("it") {
                "Grazie per la tua valutazione!"
            } else {
                "Thank you for your rating!"
            };
            self.say(state, thanks.to_owned()).await;
            return;
        }
        self.reopen_if_resolved(state).await;
        if state.handling.status == ConversationStatus::Assigned {
            return; // The agent answers.
        }
        if crate::sentiment::asks_for_a_person(&text) {
            self.escalate(state, "the visitor asked for a person").await;
        }
        self.start_reply(state, text, best).await;
    }

    /// Marks an OPEN conversation ESCALATED, for an agent to take over.
    async fn escalate(&self, state: &mut State, why: &str) {
        if state.handling.status != ConversationStatus::Open {
            return;
        }
        let handling = Handling {
            status: ConversationStatus::Escalated,
            waiting_since: Some(now_ms()),
            ..state.handling.clone()
        };
        match self.set_handling(state, handling).await {
            Ok(()) => {
                tracing::info!(conversation = %self.key.conversation_id, why, "conversation escalated");
                self.tell_if_nobody_answers(state).await;
            }
            Err(e) => {
                tracing::warn!(conversation = %self.key.conversation_id, error = %e, "could not escalate")
            }
        }
    }

    /// Outside business hours, or with no agent online, the visitor hears it at once (and the
    /// bot keeps the conversation meanwhile).
    async fn tell_if_nobody_answers(&self, state: &mut State) {
        let t = &self.key.tenant_id;
        let settings =
            match self.deps.timed(StoreOp::GetTenant, self.deps.store.get_tenant(t)).await {
                Ok(Some(tenant)) => tenant.agents,
                _ => crate::model::AgentSettings::default(),
            };
        let open = settings.business_hours.as_ref().is_none_or(|h| h.open_at(now_ms()));
        if open && self.deps.presence.anyone_online_anywhere(t).await {
            return;
        }
        let italian = state.bot.language.starts_with("it");
        let text = settings.offline_message.clone().unwrap_or_else(|| {
            match (italian, open) {
                (false, true) => {
                    "No one from our team is online right now. I will keep helping \
                                  you here, and a person will follow up as soon as possible."
                }
                (false, false) => {
                    "Our team is away now (outside opening hours). I will keep \
                                   helping you here, and a person will follow up when we open."
                }
                (true, true) => {
                    "Al momento nessuno del nostro team è online. Continuo ad \
                                 aiutarti io, e una persona ti risponderà appena possibile."
                }
                (true, false) => {
                    "Il nostro team ora non è disponibile (fuori orario). Continuo \
                                  ad aiutarti io, e una persona ti risponderà all'apertura."
                }
            }
            .to_owned()
        });
        self.say(state, text).await;
    }

    /// Stores and publishes a message from the bot that is not a streamed answer (notices,
    /// questions).
    async fn say(&self, state: &mut State, text: String) {
        let message = self.new_message(state, Sender::Bot, text, None);
        if let Some(stored) = self.store_message(state, message, None).await {
            self.tell_inbox(state, Some(&stored));
            self.deps.bus.publish(&self.key, Event::Message { message: stored });
        }
    }

    /// Stores a new way of handling the conversation, then tells its subscribers and the
    /// tenant's inbox.
    async fn set_handling(&self, state: &mut State, handling: Handling) -> Result<(), EngineError> {
        let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
        let stored = self.deps.store.set_handling(t, c, &handling);
        if !self.deps.timed(StoreOp::SetHandling, stored).await? {
            return Err(EngineError::ConversationNotFound);
        }
        if handling.status != state.handling.status {
            state.fallbacks = 0; // A new episode: the bot's misses are counted afresh.
        }
        state.handling = handling.clone();
        self.tell_inbox(state, None);
        self.deps.bus.publish(&self.key, Event::Handling { handling });
        Ok(())
    }

    /// Tells the tenant's inbox watchers how the conversation stands (and its newest message).
    fn tell_inbox(&self, state: &State, last_message: Option<&Message>) {
        self.deps.bus.publish_tenant(
            &self.key.tenant_id,
            TenantEvent::Conversation {
                conversation_id: self.key.conversation_id.clone(),
                bot_id: state.bot.id.clone(),
                handling: state.handling.clone(),
                last_message: last_message.cloned().map(Box::new),
            },
        );
    }

    /// Stops every bot stream in flight: no token of theirs is published after this returns.
    fn cancel_streams(&mut self) {
        for (stream_id, stream) in self.in_flight.drain() {
            stream.stop();
            self.deps.bus.publish(&self.key, Event::StreamCancelled { stream_id });
        }
    }

    async fn on_command(
        &mut self,
        state: &mut State,
        command: AgentCommand,
    ) -> Result<CommandOutcome, EngineError> {
        let AgentCommand { agent, privileged, action } = command;
        let holder = state.handling.assignee.clone();
        let mine = holder.as_ref().is_some_and(|h| h.id == agent.id);
        // Another agent holds it and the caller may not override them.
        let held_by_other = holder.as_ref().is_some_and(|h| h.id != agent.id) && !privileged;
        match action {
            AgentAction::Claim => {
                if let Some(holder) = holder {
                    return if mine {
                        Ok(CommandOutcome::Handling(state.handling.clone()))
                    } else {
                        Err(EngineError::AlreadyClaimed(holder.name))
                    };
                }
                self.hand_to(state, agent).await
            }
            AgentAction::Assign { to } => {
                let waiting = state.handling.status == ConversationStatus::Escalated
                    && state.handling.assignee.is_none();
                if !waiting {
                    return Ok(CommandOutcome::Handling(state.handling.clone()));
                }
                self.hand_to(state, to).await
            }
            AgentAction::Transfer { to } => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                self.hand_to(state, to).await
            }
            AgentAction::Release => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                if holder.is_none() {
                    return Ok(CommandOutcome::Handling(state.handling.clone()));
                }
                let handling = Handling {
                    status: ConversationStatus::Open,
                    assignee: None,
                    ..state.handling.clone()
                };
                self.set_handling(state, handling).await?;
                self.deps.bus.publish(&self.key, Event::Handoff { to: Sender::Bot, agent: None });
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
            AgentAction::Resolve { resolution, csat } => {
                if held_by_other {
                    return Err(EngineError::NotAssigned);
                }
                let handling = Handling {
                    status: ConversationStatus::Resolved,
                    assignee: None,
                    resolution: Some(resolution),
                    ended_at: Some(now_ms()),
                    waiting_since: None,
                    csat_pending: csat,
                    ..state.handling.clone()
                };
                self.set_handling(state, handling).await?;
                self.cancel_streams();
                if holder.is_some() {
                    let handoff = Event::Handoff { to: Sender::Bot, agent: None };
                    self.deps.bus.publish(&self.key, handoff);
                }
                if csat {
                    let question = if state.bot.language.starts_with("it") {
                        "Come valuti questa conversazione? Rispondi con un numero da 1 (male) a 5 \
                         (benissimo)."
                    } else {
                        "How would you rate this conversation? Reply with a number from 1 (poor) \
                         to 5 (excellent)."
                    };
                    self.say(state, question.to_owned()).await;
                }
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
            AgentAction::Message { client_msg_id, text } => {
                if !mine {
                    return Err(EngineError::NotAssigned);
                }
                let mut message = self.new_message(state, Sender::Human, text, Some(client_msg_id));
                message.agent_id = Some(agent.id);
                let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                match self.deps.timed(StoreOp::Append, self.deps.store.append(&message)).await {
                    Ok(Appended::Stored) => {
                        state.last_seq = message.seq;
                        self.deps.metrics.message_stored(state.channel, Direction::Out);
                        self.tell_inbox(state, Some(&message));
                        self.deps
                            .bus
                            .publish(&self.key, Event::Message { message: message.clone() });
                        Ok(CommandOutcome::Message { message, duplicate: false })
                    }
                    Ok(Appended::Duplicate(existing)) => {
                        Ok(CommandOutcome::Message { message: existing, duplicate: true })
                    }
                    Err(e) => {
                        let last = self.deps.store.last_seq(t, c);
                        if let Ok(last) = self.deps.timed(StoreOp::LastSeq, last).await {
                            state.last_seq = last;
                        }
                        Err(EngineError::Store(e))
                    }
                }
            }
            AgentAction::VisitorInput { client_msg_id, text, postback, form } => {
                let input = VisitorInput { client_msg_id, text, postback, form };
                self.visitor_message(state, None, input).await
            }
            AgentAction::Note { text } => {
                let note = Note {
                    id: uuid::Uuid::now_v7().simple().to_string(),
                    tenant_id: self.key.tenant_id.clone(),
                    conversation_id: self.key.conversation_id.clone(),
                    author: agent,
                    text,
                    created_at: now_ms(),
                };
                if !self.deps.timed(StoreOp::AddNote, self.deps.store.add_note(&note)).await? {
                    return Err(EngineError::ConversationNotFound);
                }
                self.deps.bus.publish(&self.key, Event::Note { note: note.clone() });
                Ok(CommandOutcome::Note(note))
            }
            AgentAction::Read { seq } => {
                let seq = seq.min(state.last_seq);
                if seq > state.handling.agent_read_seq {
                    let handling = Handling { agent_read_seq: seq, ..state.handling.clone() };
                    self.set_handling(state, handling).await?;
                }
                let read = Event::Read { sender: Sender::Human, seq, origin: None };
                self.deps.bus.publish(&self.key, read);
                Ok(CommandOutcome::Handling(state.handling.clone()))
            }
        }
    }

    /// Gives the conversation to `agent`: the bot's streams stop, and the visitor is told.
    async fn hand_to(
        &mut self,
        state: &mut State,
        agent: AgentRef,
    ) -> Result<CommandOutcome, EngineError> {
        let handling = Handling {
            status: ConversationStatus::Assigned,
            assignee: Some(agent.clone()),
            resolution: None,
            ended_at: None,
            waiting_since: None,
            ..state.handling.clone()
        };
        self.set_handling(state, handling).await?;
        self.cancel_streams();
        self.deps.bus.publish(&self.key, Event::Handoff { to: Sender::Human, agent: Some(agent) });
        Ok(CommandOutcome::Handling(state.handling.clone()))
    }

    /// Reloads the bot and its intents if they changed since they were loaded.
    async fn refresh_bot(&self, state: &mut State) {
        let version = self.deps.bot_version(&state.bot.id);
        if version == state.bot_version {
            return;
        }
        match self.deps.load_bot(&self.key.tenant_id, &state.bot.id).await {
            Ok(Some(loaded)) => {
                (state.bot, state.intents, state.index) =
                    (loaded.bot, loaded.intents, loaded.index);
                state.bot_version = loaded.version;
            }
            // Deleted, or the store failed: keep answering with what we have.
            _ => tracing::warn!(bot = %state.bot.id, "could not reload a changed bot"),
        }
    }

    /// Starts answering `text`, whose best intent the caller classified against
    /// `state.intents` (so the bot is not reloaded in between).
    async fn start_reply(&mut self, state: &mut State, text: String, best: Option<(usize, f32)>) {
        let stream_id = uuid::Uuid::now_v7().simple().to_string();
        let Some(me) = self.me.upgrade() else { return };
        let wanted = self.deps.responder.history_len() as u64;
        let history = if wanted == 0 {
            Vec::new()
        } else {
            let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
            let after = state.last_seq.saturating_sub(wanted);
            let history = self.deps.store.messages_after(t, c, after, wanted as usize);
            self.deps.timed(StoreOp::MessagesAfter, history).await.unwrap_or_default()
        };
        let question = text.clone();
        let mut request = ReplyRequest {
            bot: state.bot.clone(),
            intents: state.intents.clone(),
            text,
            best_intent: best,
            history,
            passages: Vec::new(),
            llm: None,
            llm_allowed: true,
        };
        let deps = self.deps.clone();
        let knowledge = self.deps.knowledge.clone();
        self.deps.bus.publish(
            &self.key,
            Event::StreamStart { stream_id: stream_id.clone(), sender: Sender::Bot },
        );
        let (responder, bus, key) =
            (self.deps.responder.clone(), self.deps.bus.clone(), self.key.clone());
        let fallback = state.bot.config.fallback_message.clone();
        let id = stream_id.clone();
        let gate = Arc::new(parking_lot::Mutex::new(true));
        let publish_gate = gate.clone();
        let task = self.deps.runtime.spawn(
            async move {
                let mut text = String::new();
                let (mut intent, mut confidence, mut usage) = (None, None, None);
                let streamed = AssertUnwindSafe(async {
                    let (t, b) = (&key.tenant_id, &request.bot.id);
                    match knowledge.search(t, b, &request.text).await {
                        Ok(passages) => request.passages = passages,
                        Err(e) => {
                            tracing::warn!(error = %e, "knowledge search failed; answering without")
                        }
                    }
                    let tenant = deps.timed(StoreOp::GetTenant, deps.store.get_tenant(t)).await;
                    if let Ok(Some(tenant)) = tenant {
                        request.llm = tenant.llm;
                        if let Some(budget) = tenant.monthly_token_budget {
                            let month = crate::model::month_of(now_ms());
                            let used = deps.store.token_usage(t, &month);
                            let used = deps.timed(StoreOp::TokenUsage, used).await.unwrap_or(0);
                            request.llm_allowed = used < budget;
                        }
                    }
                    let asked = Instant::now();
                    match responder.reply(request).await {
                        Ok(mut reply) => {
                            (intent, confidence) = (reply.intent.take(), reply.confidence);
                            usage = reply.usage.take();
                            // Only an LLM's answer reports usage: the built-in responder's is not
                            // timed as one.
                            let llm = usage.is_some();
                            let mut first = true;
                            while let Some(token) = reply.tokens.next().await {
                                match token {
                                    Ok(delta) => {
                                        if llm && first {
                                            deps.metrics.llm_first_token(asked.elapsed());
                                        }
                                        first = false;
                                        text.push_str(&delta);
                                        let open = publish_gate.lock();
                                        if !*open {
                                            return; // An agent took over.
                                        }
                                        bus.publish(
                                            &key,
                                            Event::Token { stream_id: id.clone(), delta },
                                        );
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "bot stream broke off");
                                        break;
                                    }
                                }
                            }
                            if llm {
                                deps.metrics.llm_reply(asked.elapsed());
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "responder failed"),
                    }
                })
                .catch_unwind()
                .await;
                if streamed.is_err() {
                    tracing::error!("the responder panicked; answering with the fallback message");
                }
                if text.trim().is_empty() {
                    text = fallback; // The visitor always gets an answer, and the actor its ReplyDone.
                }
                let usage = usage.and_then(|u| *u.lock());
                let done = ReplyDone { stream_id: id, question, text, intent, confidence, usage };
                // The actor stays alive while a stream is in flight, so this only fails on shutdown.
                let _ = me.send(ActorMsg::ReplyDone(Box::new(done))).await;
            }
            // The actor's span for this message: the reply's log lines name the conversation too.
            .in_current_span(),
        );
        let receipt = self.receipt.take().unwrap_or_default();
        self.in_flight.insert(stream_id, InFlight { abort: task.abort_handle(), gate, receipt });
    }

    async fn on_reply_done(&mut self, state: &mut State, done: ReplyDone) {
        // Held until the reply is stored: its receipt tells the bus the question is answered.
        let Some(flight) = self.in_flight.remove(&done.stream_id) else {
            return; // Cancelled (an agent took over): never stored.
        };
        // Done once the reply is stored (the end of this call); a store failure is told to
        // the conversation, which counts as done too.
        flight.receipt.done();
        let mut message = self.new_message(state, Sender::Bot, done.text, None);
        let content = done.intent.as_deref().and_then(|name| {
            state.intents.iter().find(|i| i.name == name).and_then(|i| i.response.content.clone())
        });
        if let Some(content) = content {
            (message.kind, message.content) = (content.kind(), Some(Box::new(content)));
        }
        message.intent = done.intent;
        message.confidence = done.confidence;
        message.prompt_tokens = done.usage.map(|u| u.prompt_tokens);
        message.completion_tokens = done.usage.map(|u| u.completion_tokens);
        if let Some(usage) = done.usage {
            self.deps.metrics.llm_tokens(usage.prompt_tokens, usage.completion_tokens);
            let tokens = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
            let month = crate::model::month_of(now_ms());
            let t = &self.key.tenant_id;
            let added = self.deps.store.add_token_usage(t, &month, tokens);
            if let Err(e) = self.deps.timed(StoreOp::AddTokenUsage, added).await {
                tracing::warn!(error = %e, "could not record LLM token usage");
            }
        }
        let fell_back = message.text == state.bot.config.fallback_message;
        state.fallbacks = if fell_back { state.fallbacks + 1 } else { 0 };
        if let Some(stored) = self.store_message(state, message, None).await {
            self.tell_inbox(state, Some(&stored));
            let matched = stored.intent.as_deref().and_then(|name| {
                state.intents.iter().find(|i| i.name == name && !i.actions.is_empty())
            });
            if let Some(intent) = matched {
                let bot = state.bot.id.as_str();
                self.deps.hooks.intent_matched(bot, intent, &done.question, &stored);
            }
            self.deps.bus.publish(
                &self.key,
                Event::StreamEnd { stream_id: done.stream_id, message: stored },
            );
        }
        // After the answer is out: escalating may add a message (nobody online) after it.
        let limit = self.deps.settings.escalate_after_fallbacks;
        if limit > 0 && state.fallbacks >= limit {
            self.escalate(state, "the bot did not understand repeatedly").await;
        }
    }

    fn new_message(
        &self,
        state: &State,
        sender: Sender,
        text: String,
        client_msg_id: Option<String>,
    ) -> Message {
        Message::text(&self.key, state.last_seq + 1, sender, text, client_msg_id)
    }

    /// Stores `message` (durable on return) and advances `last_seq`. Returns the message when it
    /// is new; answers a duplicate or a failure to `origin` and returns `None`.
    async fn store_message(
        &self,
        state: &mut State,
        message: Message,
        origin: Option<ConnId>,
    ) -> Option<Message> {
        match self.try_store(state, &message).await {
            Ok(Appended::Stored) => Some(message),
            Ok(Appended::Duplicate(existing)) => {
                self.deps.metrics.duplicates_acknowledged.inc();
                if let Some(conn) = origin {
                    self.deps.bus.publish(&self.key, Event::Ack { conn, message: existing });
                }
                None
            }
            Err(e) => {
                self.publish_rejection(origin, message.client_msg_id, &EngineError::Store(e));
                None
            }
        }
    }

    /// Appends `message` and advances `last_seq` when it is stored; after a seq conflict,
    /// re-reads `last_seq` (our view was stale).
    async fn try_store(
        &self,
        state: &mut State,
        message: &Message,
    ) -> Result<Appended, StoreError> {
        let appended = self.deps.timed(StoreOp::Append, self.deps.store.append(message)).await;
        match &appended {
            Ok(Appended::Stored) => {
                state.last_seq = message.seq;
                let direction =
                    if message.sender == Sender::User { Direction::In } else { Direction::Out };
                self.deps.metrics.message_stored(state.channel, direction);
            }
            Ok(Appended::Duplicate(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, conversation = %self.key.conversation_id, "append failed");
                if matches!(e, StoreError::SeqConflict(_) | StoreError::SeqGap { .. }) {
                    let (t, c) = (&self.key.tenant_id, &self.key.conversation_id);
                    let last = self.deps.store.last_seq(t, c);
                    if let Ok(last) = self.deps.timed(StoreOp::LastSeq, last).await {
                        state.last_seq = last;
                    }
                }
            }
        }
        appended
    }

    /// Tells every subscriber of the conversation something that is not a refusal of an
    /// inbound event (so it is not counted as one).
    fn announce(&self, code: &str, message: String) {
        self.deps.bus.publish(
            &self.key,
            Event::Rejected { conn: None, client_msg_id: None, code: code.to_owned(), message },
        );
    }

    fn reject(&self, msg: ActorMsg, error: &EngineError) {
        match msg {
            ActorMsg::Inbound(envelope) => {
                envelope.receipt.done(); // Its sender is told.
                self.publish_rejection(envelope.origin, client_msg_id(&envelope), error);
            }
            ActorMsg::Command(_, reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            ActorMsg::ReplyDone(_) => {}
        }
    }

    /// Tells `conn` (or, with none, every subscriber) that an event was not processed.
    fn publish_rejection(
        &self,
        conn: Option<ConnId>,
        client_msg_id: Option<String>,
        error: &EngineError,
    ) {
        self.deps.metrics.inbound_rejected.inc();
        self.deps.bus.publish(
            &self.key,
            Event::Rejected {
                conn,
                client_msg_id,
                code: error.code().to_owned(),
                message: error.public_message(),
            },
        );
    }
}

/// A visitor's answer to the CSAT question: one digit from 1 to 5 (a trailing `/5` or
/// punctuation allowed), or that many stars.
fn csat_score(text: &str) -> Option<u8> {
    let t = text.trim().trim_end_matches(['.', '!']);
    let t = t.strip_suffix("/5").unwrap_or(t).trim();
    if let Ok(n) = t.parse::<u8>() {
        return (1..=5).contains(&n).then_some(n);
    }
    let stars = t.chars().filter(|c| *c == '⭐' || *c == '★').count();
    let stars = u8::try_from(stars).ok().filter(|n| (1..=5).contains(n))?;
    (usize::from(stars) == t.chars().count()).then_some(stars)
}

/// A visitor's message as the actor takes it, whichever way it came.
struct VisitorInput {
    client_msg_id: String,
    text: String,
    postback: Option<String>,
    form: Option<crate::rich::FormSubmission>,
}

/// The fields of the bot's form `form_id` (forms come from intents' responses).
fn find_form<'a>(intents: &'a [Intent], form_id: &str) -> Option<&'a [crate::rich::FormField]> {
    intents
        .iter()
        .filter_map(|i| i.response.content.as_ref()?.form())
        .find_map(|(id, fields)| (id == form_id).then_some(fields))
}

/// The intent a postback names directly: one whose id, or name (ignoring case), is the
/// payload. A button whose payload is an intent's name answers with that intent, whatever
/// its training phrases.
/// Messages searched for the button a postback claims to come from.
const OFFER_WINDOW: u64 = 50;

fn postback_intent(intents: &[Intent], payload: &str) -> Option<usize> {
    let payload = payload.trim();
    intents.iter().position(|i| i.id == payload || i.name.eq_ignore_ascii_case(payload))
}

fn client_msg_id(envelope: &Envelope) -> Option<String> {
    match &envelope.inbound {
        Inbound::VisitorMessage { client_msg_id, .. } => Some(client_msg_id.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csat_answers_are_a_digit_or_stars() {
        for (text, score) in
            [("5", Some(5)), (" 3! ", Some(3)), ("4/5", Some(4)), ("⭐⭐", Some(2))]
        {
            assert_eq!(super::csat_score(text), score, "{text}");
        }
        for text in ["0", "6", "five", "5 but slow", "", "⭐⭐⭐⭐⭐⭐"] {
            assert_eq!(super::csat_score(text), None, "{text}");
        }
    }

    /// Each live actor's mailbox holds a block of 32 slots of this size, idle or not.
    #[test]
    fn mailbox_slots_stay_small() {
        assert!(std::mem::size_of::<super::ActorMsg>() <= 24, "box the new variant's payload");
    }
}
