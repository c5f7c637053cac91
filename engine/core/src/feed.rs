//! One reader's view of a conversation: every stored message once, in seq order, and the live
//! events between them.
//!
//! The widget socket, the agent socket and a channel's delivery sink all read a conversation
//! the same way, and this is that way, written once: subscribe first, then replay what is stored
//! after what the reader has, then live events — a stored message already handed out is
//! skipped, a gap in seqs (a message stored but never published, or events dropped because the
//! reader fell behind) is filled from the store, and a closed channel is subscribed afresh.
//! Streams are followed too: tokens of a stream whose start the reader never saw are dropped,
//! and the end of such a stream arrives as its stored message.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use crate::{
    Engine, EngineError,
    bus::{Event, RecvError, Subscription},
    model::{ConnId, ConversationKey, Message},
};

/// Messages read from the store per page.
const PAGE: usize = 500;
/// Streams followed at once; more means stream ends were lost to lag (their entries are
/// dropped).
const MAX_OPEN_STREAMS: usize = 64;

/// What a reader is handed next.
#[derive(Debug, Clone)]
// One value per item, moved once to the reader: its size does not matter, boxing would only
// allocate (as `Appended`).
#[allow(clippy::large_enum_variant)]
pub enum FeedItem {
    /// A stored message after every one handed out before, read from the store (a replay, a
    /// gap filled), or the end of a stream whose start this reader never saw.
    Message(Message),
    /// A live event, shared with every other reader (not copied), already sorted for this
    /// one: an `Event::Message` is after every one handed out before; an `Event::StreamEnd`
    /// ends a stream whose start was handed out (its message may already have come with a
    /// replay: the reader closes the stream either way); an `Event::Ack` is this reader's own
    /// message sent again, which it already has; tokens and cancellations are of streams it
    /// follows. Which of the rest (typing, reads, handoffs, handling, notes, refusals) a reader
    /// shows is its own business.
    Live(Arc<Event>),
}

/// A conversation read by one reader (see the module docs). Cancel-safe: `next` and
/// `next_stored` may be dropped at any await (in a `select!`) without losing or repeating
/// anything.
#[derive(Debug)]
pub struct ConversationFeed {
    engine: Engine,
    key: ConversationKey,
    conn: Option<ConnId>,
    subscription: Subscription,
    /// The highest seq handed out.
    sent: u64,
    /// Whether the store holds nothing after `sent` that the subscription will not bring.
    caught_up: bool,
    /// Read from the store, not yet handed out.
    backlog: VecDeque<Message>,
    /// A live event held back until the gap before it is filled.
    held: Option<Arc<Event>>,
    /// Streams whose start was handed out.
    streams: HashSet<String>,
}

impl ConversationFeed {
    /// Subscribes to the conversation (as `conn`, so events meant for that connection alone
    /// reach it) for a reader that has every message up to `after`. What is stored after it
    /// comes first, from [`Self::next_stored`] or [`Self::next`].
    pub async fn open(
        engine: &Engine,
        key: ConversationKey,
        conn: Option<ConnId>,
        after: u64,
    ) -> Self {
        let subscription = engine.subscribe(&key, conn).await;
        Self {
            engine: engine.clone(),
            key,
            conn,
            subscription,
            sent: after,
            caught_up: false,
            backlog: VecDeque::new(),
            held: None,
            streams: HashSet::new(),
        }
    }

    /// The reader cannot have more than the conversation's `last_seq` (what a client claims to
    /// have is clamped to what exists, once the conversation is read after subscribing).
    pub fn clamp(&mut self, last_seq: u64) {
        self.sent = self.sent.min(last_seq);
    }

    /// A new conversation's greeting (`seq`) was handed out before anything is stored: it
    /// counts as sent, and there is nothing to replay.
    pub fn greeted(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
        self.caught_up = true;
    }

    /// The next stored message the reader does not have, or `None` once it has all the store
    /// holds: the replay, a page read at a time.
    pub async fn next_stored(&mut self) -> Result<Option<Message>, EngineError> {
        if self.backlog.is_empty() && !self.caught_up {
            // Nothing changes before the read is back, so a dropped call loses nothing.
            let page = match self.engine.history(&self.key, self.sent, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    // Not read again at once (a failing store would be read in a loop): a
                    // later stored message's event shows the gap and tries again.
                    self.caught_up = true;
                    return Err(e);
                }
            };
            self.caught_up = page.len() < PAGE;
            self.backlog.extend(page.into_iter().filter(|m| m.seq > self.sent));
        }
        let next = self.backlog.pop_front();
        if let Some(message) = &next {
            self.sent = self.sent.max(message.seq);
        }
        Ok(next)
    }

    /// The next item for the reader: what the store holds first, then live events.
    pub async fn next(&mut self) -> Result<FeedItem, EngineError> {
        loop {
            if let Some(message) = self.next_stored().await? {
                return Ok(FeedItem::Message(message));
            }
            // A held event had its gap filled (or tried once): it goes on whatever the store
            // had, so a seq the store lacks (a deleted conversation) or a failing read cannot
            // hold it back for ever.
            let (event, filled) = match self.held.take() {
                Some(event) => (event, true),
                None => match self.subscription.recv().await {
                    Ok(event) => (event, false),
                    // Fell behind: the store has every message that was dropped.
                    Err(RecvError::Lagged(_)) => {
                        self.caught_up = false;
                        continue;
                    }
                    // The conversation's channel went away (its actor moved or stopped):
                    // subscribe afresh, then read what was stored meanwhile.
                    Err(RecvError::Closed) => {
                        self.subscription = self.engine.subscribe(&self.key, self.conn).await;
                        self.caught_up = false;
                        continue;
                    }
                },
            };
            let stored = match &*event {
                Event::Message { message } | Event::StreamEnd { message, .. } => Some(message.seq),
                _ => None,
            };
            if !filled && stored.is_some_and(|seq| seq > self.sent + 1) {
                // A stored message never reached the bus: fill the gap, then take this one.
                self.held = Some(event);
                self.caught_up = false;
                continue;
            }
            if let Some(item) = self.item(event) {
                return Ok(item);
            }
        }
    }

    /// Lets queued tokens of `stream_id` join `delta` (at most `max_bytes`), so a reader that
    /// is behind sends one frame for them, not one each.
    pub fn coalesce_tokens(&mut self, stream_id: &str, delta: &mut String, max_bytes: usize) {
        self.subscription.coalesce_tokens(stream_id, delta, max_bytes);
    }

    /// What a live event is to this reader, if anything.
    fn item(&mut self, event: Arc<Event>) -> Option<FeedItem> {
        match &*event {
            Event::Message { message } => {
                if message.seq <= self.sent {
                    return None;
                }
                self.sent = message.seq;
                Some(FeedItem::Live(event))
            }
            // One beyond what was handed out overtook the broadcast (acks travel on their own
            // queue): its echo is still on the way, or comes with a replay.
            Event::Ack { conn, message } => {
                let mine = Some(*conn) == self.conn && message.seq <= self.sent;
                mine.then_some(FeedItem::Live(event))
            }
            Event::StreamStart { stream_id, .. } => {
                if self.streams.len() >= MAX_OPEN_STREAMS {
                    self.streams.clear();
                }
                self.streams.insert(stream_id.clone());
                Some(FeedItem::Live(event))
            }
            Event::Token { stream_id, .. } => {
                self.streams.contains(stream_id).then_some(FeedItem::Live(event))
            }
            Event::StreamCancelled { stream_id } => {
                self.streams.remove(stream_id).then_some(FeedItem::Live(event))
            }
            Event::StreamEnd { stream_id, message } => {
                let seen_start = self.streams.remove(stream_id);
                let new = message.seq > self.sent;
                self.sent = self.sent.max(message.seq);
                match (seen_start, new) {
                    (true, _) => Some(FeedItem::Live(event)),
                    // Rare (its start was lost to lag): a copy is no cost.
                    (false, true) => Some(FeedItem::Message(message.clone())),
                    (false, false) => None,
                }
            }
            Event::Typing { .. }
            | Event::Read { .. }
            | Event::Handoff { .. }
            | Event::Handling { .. }
            | Event::Note { .. }
            | Event::Rejected { .. } => Some(FeedItem::Live(event)),
        }
    }
}
