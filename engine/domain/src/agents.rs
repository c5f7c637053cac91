//! Human agents acting on conversations: the commands, what they return, and the inbox.
//!
//! A command goes to the conversation's actor like any event, so it is ordered with the
//! visitor's messages and the bot's streams: a claim is atomic (the actor is the single writer
//! of who handles the conversation), and when it lands no bot token can follow the `handoff`
//! (the bot's streams are closed under their publish gate before it is published).
//!
//! Unlike visitor events, a command is answered: the caller waits for the actor's verdict (a
//! claim won or lost). Commands travel to the local engine; in a cluster, through the bus to the
//! node that hosts the conversation, whose answer comes back on the caller's node channel.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{
    AgentRef, BotId, Channel, ConversationId, Handling, Message, Note, Resolution, Sender,
};

/// Who acts and what they do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentCommand {
    pub agent: AgentRef,
    /// Admins and owners may release, transfer and resolve conversations another agent holds.
    pub privileged: bool,
    pub action: AgentAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentAction {
    /// Take the conversation over: the bot is muted and its streams cancelled.
    Claim,
    /// Give it back to the bot.
    Release,
    /// Hand it to another agent (who must be a member of the tenant: the caller checks).
    Transfer { to: AgentRef },
    /// A reply to the visitor, as sender `human`. Idempotent by `client_msg_id`.
    Message { client_msg_id: String, text: String },
    /// A note for agents only.
    Note { text: String },
    /// Close it with a resolution; `csat` asks the visitor for a 1–5 score.
    Resolve { resolution: Resolution, csat: bool },
    /// An agent has read up to `seq`.
    Read { seq: u64 },
    /// The dispatcher routes a waiting (ESCALATED, unheld) conversation to `to`; a no-op if it
    /// is no longer waiting (someone claimed it first).
    Assign { to: AgentRef },
}

/// Who the dispatcher acts as.
pub fn dispatcher() -> AgentRef {
    AgentRef { id: crate::model::AccountId::from("parla-dispatcher"), name: "Parla".into() }
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandOutcome {
    Handling(Handling),
    /// The stored message; `duplicate` when its `client_msg_id` was stored before (this is
    /// the original). Boxed: a message is far larger than the other outcomes.
    Message {
        message: Box<Message>,
        duplicate: bool,
    },
    Note(Note),
}

/// One line of the inbox: a conversation, who handles it, and its last message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InboxEntry {
    #[schema(value_type = String)]
    pub conversation_id: ConversationId,
    #[schema(value_type = String)]
    pub bot_id: BotId,
    pub source: Channel,
    pub started_at: i64,
    #[serde(flatten)]
    pub handling: Handling,
    pub last_seq: u64,
    pub last_message: Option<LastMessage>,
    /// Messages after the highest seq an agent has read.
    pub unread: u64,
}

/// A preview of a conversation's last message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LastMessage {
    pub seq: u64,
    pub sender: Sender,
    /// At most 140 characters.
    pub text: String,
    pub created_at: i64,
}

impl LastMessage {
    pub fn of(message: &Message) -> Self {
        Self {
            seq: message.seq,
            sender: message.sender,
            text: message.text.chars().take(140).collect(),
            created_at: message.created_at,
        }
    }
}

/// Inbox order: waiting for an agent first (longest waiting first), then held by an agent,
/// then the rest, newest activity first.
pub fn inbox_order(a: &InboxEntry, b: &InboxEntry) -> std::cmp::Ordering {
    use crate::model::ConversationStatus as S;
    let rank = |e: &InboxEntry| match e.handling.status {
        S::Escalated => 0,
        S::Assigned => 1,
        S::Open => 2,
        S::Resolved => 3,
    };
    let activity = |e: &InboxEntry| e.last_message.as_ref().map_or(e.started_at, |m| m.created_at);
    rank(a).cmp(&rank(b)).then_with(|| match a.handling.status {
        S::Escalated => a.handling.waiting_since.cmp(&b.handling.waiting_since),
        _ => activity(b).cmp(&activity(a)),
    })
}
