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
//!
//! # Layout
//! Split by what a message is about, as mini-redis splits its commands: this file holds the
//! types, the mailbox dispatch (`handle`, `handle_inbound`) and refusals; `lifecycle.rs` (spawn,
//! run loop, supervision, passivation, release, hydration), `visitor.rs` (visitors' events and
//! the bot's notices), `agent.rs` (agents' commands, handling, the inbox), `reply.rs` (the
//! streamed reply and the message stored when it ends).

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
    input::VisitorInput,
    metrics::{Direction, StoreOp},
    model::*,
    responder::{ReplyRequest, builtin::IntentIndex},
    store::{Appended, StoreError},
    supervisor::TenantSupervisor,
};

mod agent;
mod lifecycle;
mod reply;
mod visitor;

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
    /// The passages the reply is drawn from ([`crate::responder::Reply::sources`]).
    sources: Vec<SourceRef>,
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
            Inbound::VisitorMessage(input) => self.on_visitor_message(state, origin, input).await,
            Inbound::Delete => self.on_delete(origin).await,
            Inbound::Command { request, reply_to, command } => {
                // Another node's agent: run here, answer there.
                let outcome = self.on_command(state, command).await;
                self.deps.bus.answer(&reply_to, &request, &outcome);
            }
            Inbound::BotChanged { bot } if bot == state.bot.id => {
                self.refresh_bot(state).await;
                // A preview talks to the bot whatever its status (a draft is what it is for).
                if state.bot.status != BotStatus::Active && state.channel != Channel::Preview {
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
                self.publish_rejection(
                    envelope.origin,
                    envelope.inbound.client_msg_id().map(str::to_owned),
                    error,
                );
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
