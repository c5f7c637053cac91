//! Analytics kept as counters while messages flow, never by scanning transcripts.
//!
//! A store keeps one [`Counters`] row per (hour, bot, channel) of a tenant, one [`IntentCount`]
//! per (hour, bot, intent), and an index of the visitor messages no intent matched. The rules
//! of what moves which counter live here, as pure functions, so that every store adapter
//! counts alike: [`on_create`] for a new conversation, [`on_append`] for a stored message,
//! [`on_handling`] for a change of who handles it and how it ended. A store applies what they
//! return in the same transaction (or compare-and-set) as the write that caused it, so a
//! duplicate message or a retried write is not counted twice.
//!
//! What is counted where:
//! - per message, in the hour it was stored: messages by sender, visitor sentiment, LLM
//!   tokens, matched intents and unmatched visitor messages, and *active visitors* (a
//!   conversation counts once per UTC day, in the hour of its first visitor message that day);
//! - per conversation, in the hour it started: the conversation itself, its first response
//!   time (first visitor message → first bot or agent message after it), whether it was ever
//!   handed to people (escalated or assigned), its current resolution and duration (moved when
//!   a reopened conversation is resolved again), its CSAT score.
//!
//! Deleting a conversation leaves its counts: analytics are history, not a view of what is
//! stored now.
//!
//! A [`Channel::Preview`] conversation (a tenant trying its own bot) counts nowhere: every
//! rule answers nothing for it, so no store writes a bucket, an intent hit or an unmatched
//! entry for it (a zero delta writes none), and its stats stay empty.

use serde::{Deserialize, Serialize};

use crate::model::{
    BotId, Channel, Conversation, ConversationStatus, Handling, Message, Resolution, Sender,
};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the UTC hour `at_ms` falls in.
pub fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Declares [`Counters`] from one list of its fields: the struct, [`Counters::add`], and what
/// the stores and the export walk the fields by ([`Counters::NAMES`], [`Counters::cells`],
/// [`Counters::units`], [`Counters::from_units`]), so a new counter is one line here.
macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty ),* $(,)?) => {
        /// Counts of one bucket. Signed: a resolution that changes moves a count down in one
        /// place and up in another, and a delta is itself a `Counters`.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(default)]
        pub struct Counters {
            $( $(#[$doc])* pub $name: $ty, )*
        }

        impl Counters {
            /// Every counter's name, in declaration order.
            pub const NAMES: [&'static str; COUNTERS] = [$( stringify!($name) ),*];

            pub fn add(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }

            /// Every counter as text, in [`Counters::NAMES`] order.
            pub fn cells(&self) -> [String; COUNTERS] {
                [$( self.$name.to_string() ),*]
            }

            /// Every counter in integer units, in [`Counters::NAMES`] order: the one fraction
            /// (`sentiment_sum`) in millionths, rounded (what a store of integer counters keeps).
            pub fn units(&self) -> [i64; COUNTERS] {
                [$( Units::to_units(self.$name) ),*]
            }

            /// The inverse of [`Counters::units`].
            pub fn from_units(units: [i64; COUNTERS]) -> Counters {
                let [$( $name ),*] = units;
                Counters { $( $name: Units::from_units($name) ),* }
            }
        }
    };
}

/// How many counters a bucket has.
pub const COUNTERS: usize = 22;

counters! {
    conversations: i64,
    visitor_messages: i64,
    bot_messages: i64,
    agent_messages: i64,
    /// Conversations with a visitor message, once per UTC day.
    active_visitors: i64,
    /// Conversations handed to people (escalated or assigned), once each.
    handovers: i64,
    resolved: i64,
    unresolved: i64,
    escalated: i64,
    abandoned: i64,
    first_responses: i64,
    first_response_ms: i64,
    durations: i64,
    duration_ms: i64,
    sentiment_count: i64,
    sentiment_sum: f64,
    csat_count: i64,
    csat_sum: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    /// Visitor messages an intent matched.
    matched: i64,
    /// Visitor text messages no intent matched.
    unmatched: i64,
}

/// A counter's value in integer units (see [`Counters::units`]).
trait Units {
    fn to_units(self) -> i64;
    fn from_units(units: i64) -> Self;
}

impl Units for i64 {
    fn to_units(self) -> i64 {
        self
    }

    fn from_units(units: i64) -> Self {
        units
    }
}

/// Fractions are kept in millionths.
impl Units for f64 {
    fn to_units(self) -> i64 {
        to_micros(self)
    }

    fn from_units(units: i64) -> Self {
        from_micros(units)
    }
}

/// A fraction (a sum of sentiments or confidences) in millionths, rounded: what a store of
/// integer counters keeps. `as` saturates (and maps NaN to 0): no real sum comes near either.
pub fn to_micros(v: f64) -> i64 {
    (v * 1_000_000.0).round() as i64
}

/// The inverse of [`to_micros`].
pub fn from_micros(units: i64) -> f64 {
    units as f64 / 1_000_000.0
}

impl Counters {
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    pub fn messages(&self) -> i64 {
        self.visitor_messages + self.bot_messages + self.agent_messages
    }

    fn resolution_mut(&mut self, r: Resolution) -> &mut i64 {
        match r {
            Resolution::Resolved => &mut self.resolved,
            Resolution::Unresolved => &mut self.unresolved,
            Resolution::Escalated => &mut self.escalated,
            Resolution::Abandoned => &mut self.abandoned,
        }
    }
}

/// One stored bucket: a tenant's counts for an hour, a bot and a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterRow {
    /// Start of the UTC hour, Unix ms.
    pub hour: i64,
    pub bot_id: BotId,
    pub channel: Channel,
    pub counters: Counters,
}

/// Hits of one intent in an hour, for one bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentRow {
    pub hour: i64,
    pub bot_id: BotId,
    pub intent: String,
    pub hits: i64,
    pub confidence_sum: f64,
}

/// What a conversation has already contributed, kept on its record so that a change is
/// counted as a change (and a repeat as nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationStats {
    /// When the visitor first wrote (Unix ms).
    pub first_visitor_at: Option<i64>,
    /// Set once the first answer after that came.
    pub first_response_ms: Option<i64>,
    /// The last UTC day (days since the epoch) the visitor was counted active.
    pub active_day: Option<i64>,
    pub handed_over: bool,
    /// The resolution and duration counted now (None while unresolved).
    pub resolution: Option<Resolution>,
    pub duration_ms: Option<i64>,
    pub csat: Option<u8>,
}

/// What a write adds to the analytics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effect {
    /// Added to the bucket of the hour the conversation started.
    pub conversation: Counters,
    /// Added to the bucket of the hour the message was stored.
    pub message: Counters,
    /// An intent matched by a visitor message, with its confidence.
    pub intent: Option<(String, f64)>,
    /// The message is a visitor message no intent matched (indexed for training).
    pub unmatched: bool,
    /// The conversation's new stats, when they changed.
    pub stats: Option<ConversationStats>,
}

/// The bucket key of the hour a conversation started.
pub fn start_bucket(c: &Conversation) -> (i64, &BotId, Channel) {
    (hour_of(c.started_at), &c.bot_id, c.source)
}

/// Whether `c` counts in the analytics at all (a preview does not).
pub fn counted(c: &Conversation) -> bool {
    c.source != Channel::Preview
}

/// A new conversation.
pub fn on_create(c: &Conversation) -> Counters {
    if !counted(c) {
        return Counters::default();
    }
    Counters { conversations: 1, ..Counters::default() }
}

/// A message stored in `c` (not a duplicate).
pub fn on_append(c: &Conversation, m: &Message) -> Effect {
    let mut effect = Effect::default();
    if !counted(c) {
        return effect;
    }
    let mut stats = c.stats.clone();
    let msg = &mut effect.message;
    match m.sender {
        Sender::User => {
            msg.visitor_messages = 1;
            if let Some(s) = m.sentiment {
                msg.sentiment_count = 1;
                msg.sentiment_sum = f64::from(s);
            }
            match (&m.intent, m.confidence) {
                (Some(intent), confidence) => {
                    msg.matched = 1;
                    effect.intent = Some((intent.clone(), f64::from(confidence.unwrap_or(1.0))));
                }
                (None, _) if m.form.is_none() && m.postback.is_none() => {
                    msg.unmatched = 1;
                    effect.unmatched = true;
                }
                (None, _) => {}
            }
            let day = m.created_at.div_euclid(DAY_MS);
            if stats.active_day != Some(day) {
                stats.active_day = Some(day);
                msg.active_visitors = 1;
            }
            stats.first_visitor_at.get_or_insert(m.created_at);
        }
        Sender::Bot | Sender::Human => {
            if m.sender == Sender::Bot {
                msg.bot_messages = 1;
            } else {
                msg.agent_messages = 1;
            }
            msg.prompt_tokens = m.prompt_tokens.map_or(0, i64::from);
            msg.completion_tokens = m.completion_tokens.map_or(0, i64::from);
            if let (Some(asked), None) = (stats.first_visitor_at, stats.first_response_ms) {
                let waited = (m.created_at - asked).max(0);
                stats.first_response_ms = Some(waited);
                effect.conversation.first_responses = 1;
                effect.conversation.first_response_ms = waited;
            }
        }
    }
    if stats != c.stats {
        effect.stats = Some(stats);
    }
    effect
}

/// `c`'s handling replaced by `new`.
pub fn on_handling(c: &Conversation, new: &Handling) -> Effect {
    let mut effect = Effect::default();
    if !counted(c) {
        return effect;
    }
    let mut stats = c.stats.clone();
    let delta = &mut effect.conversation;
    if matches!(new.status, ConversationStatus::Escalated | ConversationStatus::Assigned)
        && !stats.handed_over
    {
        stats.handed_over = true;
        delta.handovers = 1;
    }
    let resolution = new.resolution.filter(|_| new.status == ConversationStatus::Resolved);
    if resolution != stats.resolution {
        if let Some(old) = stats.resolution {
            *delta.resolution_mut(old) -= 1;
        }
        if let Some(now) = resolution {
            *delta.resolution_mut(now) += 1;
        }
        stats.resolution = resolution;
    }
    let duration = resolution.and(new.ended_at).map(|end| (end - c.started_at).max(0));
    if duration != stats.duration_ms {
        if let Some(old) = stats.duration_ms {
            delta.durations -= 1;
            delta.duration_ms -= old;
        }
        if let Some(now) = duration {
            delta.durations += 1;
            delta.duration_ms += now;
        }
        stats.duration_ms = duration;
    }
    if new.csat != stats.csat {
        if let Some(old) = stats.csat {
            delta.csat_count -= 1;
            delta.csat_sum -= i64::from(old);
        }
        if let Some(now) = new.csat {
            delta.csat_count += 1;
            delta.csat_sum += i64::from(now);
        }
        stats.csat = new.csat;
    }
    if stats != c.stats {
        effect.stats = Some(stats);
    }
    effect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, MessageId, MessageType, TenantId};

    fn conversation() -> Conversation {
        Conversation {
            id: ConversationId("c".into()),
            tenant_id: TenantId("t".into()),
            bot_id: BotId("b".into()),
            resume_token_sha256: String::new(),
            source: Channel::Web,
            user_agent: None,
            started_at: 10 * HOUR_MS + 5,
            handling: Handling::default(),
            sentiment_sum: 0.0,
            sentiment_count: 0,
            stats: ConversationStats::default(),
        }
    }

    fn message(sender: Sender, at: i64) -> Message {
        Message {
            id: MessageId("m".into()),
            tenant_id: TenantId("t".into()),
            conversation_id: ConversationId("c".into()),
            seq: 1,
            sender,
            kind: MessageType::Text,
            text: "hi".into(),
            client_msg_id: None,
            intent: None,
            confidence: None,
            sentiment: None,
            prompt_tokens: None,
            completion_tokens: None,
            agent_id: None,
            created_at: at,
            delivery: None,
            content: None,
            postback: None,
            form: None,
            sources: Vec::new(),
        }
    }

    fn apply(c: &mut Conversation, e: &Effect) {
        if let Some(s) = &e.stats {
            c.stats = s.clone();
        }
    }

    #[test]
    fn a_greeting_before_the_visitor_writes_is_no_first_response() {
        let mut c = conversation();
        let greeting = on_append(&c, &message(Sender::Bot, c.started_at));
        assert_eq!(greeting.conversation.first_responses, 0);
        assert_eq!(greeting.message.bot_messages, 1);
        apply(&mut c, &greeting);
        let asked = on_append(&c, &message(Sender::User, c.started_at + 1_000));
        assert_eq!((asked.message.unmatched, asked.message.active_visitors), (1, 1));
        assert!(asked.unmatched);
        apply(&mut c, &asked);
        let answer = on_append(&c, &message(Sender::Bot, c.started_at + 1_250));
        assert_eq!(
            (answer.conversation.first_responses, answer.conversation.first_response_ms),
            (1, 250)
        );
        apply(&mut c, &answer);
        let again = on_append(&c, &message(Sender::Human, c.started_at + 9_000));
        assert_eq!(again.conversation, Counters::default(), "only the first answer counts");
        assert_eq!(again.message.agent_messages, 1);
    }

    #[test]
    fn a_visitor_is_active_once_a_day() {
        let mut c = conversation();
        let first = on_append(&c, &message(Sender::User, c.started_at));
        apply(&mut c, &first);
        let same_day = on_append(&c, &message(Sender::User, c.started_at + HOUR_MS));
        apply(&mut c, &same_day);
        let next_day = on_append(&c, &message(Sender::User, c.started_at + DAY_MS));
        let active: Vec<i64> =
            [&first, &same_day, &next_day].iter().map(|e| e.message.active_visitors).collect();
        assert_eq!(active, [1, 0, 1]);
    }

    #[test]
    fn a_resolution_that_changes_moves_its_counts() {
        let mut c = conversation();
        let escalated = Handling { status: ConversationStatus::Escalated, ..Handling::default() };
        let e = on_handling(&c, &escalated);
        assert_eq!(e.conversation.handovers, 1);
        apply(&mut c, &e);
        c.handling = escalated;
        let resolved = Handling {
            status: ConversationStatus::Resolved,
            resolution: Some(Resolution::Resolved),
            ended_at: Some(c.started_at + 60_000),
            csat: Some(4),
            ..Handling::default()
        };
        let e = on_handling(&c, &resolved);
        assert_eq!(
            (e.conversation.handovers, e.conversation.resolved, e.conversation.duration_ms),
            (0, 1, 60_000)
        );
        assert_eq!((e.conversation.csat_count, e.conversation.csat_sum), (1, 4));
        apply(&mut c, &e);
        // Reopened: the resolution no longer holds.
        let reopened =
            Handling { status: ConversationStatus::Open, csat: Some(4), ..Handling::default() };
        let e = on_handling(&c, &reopened);
        assert_eq!((e.conversation.resolved, e.conversation.durations), (-1, -1));
        assert_eq!(e.conversation.duration_ms, -60_000);
        apply(&mut c, &e);
        let abandoned = Handling {
            status: ConversationStatus::Resolved,
            resolution: Some(Resolution::Abandoned),
            ended_at: Some(c.started_at + 90_000),
            csat: Some(4),
            ..Handling::default()
        };
        let e = on_handling(&c, &abandoned);
        assert_eq!(
            (e.conversation.abandoned, e.conversation.resolved, e.conversation.duration_ms),
            (1, 0, 90_000)
        );
        assert_eq!(e.conversation.csat_count, 0, "the same score is not counted twice");
        apply(&mut c, &e);
        assert!(on_handling(&c, &abandoned).stats.is_none(), "a repeat changes nothing");
    }

    #[test]
    fn a_preview_counts_nowhere() {
        let c = Conversation { source: Channel::Preview, ..conversation() };
        assert!(on_create(&c).is_zero());
        for sender in [Sender::User, Sender::Bot, Sender::Human] {
            assert_eq!(on_append(&c, &message(sender, c.started_at + 1)), Effect::default());
        }
        let escalated = Handling { status: ConversationStatus::Escalated, ..Handling::default() };
        assert_eq!(on_handling(&c, &escalated), Effect::default());
    }
}
