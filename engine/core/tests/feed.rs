//! `ConversationFeed`: what one reader gets of a conversation, whatever the bus does — events
//! published here by hand (lost, out of step, in floods) over messages stored in the in-memory
//! store.

use std::{sync::Arc, time::Duration};

use parla_domain::{
    bus::{Event, Feed, local::InProcessBus},
    conformance,
    hooks::NoHooks,
    knowledge::NoKnowledge,
    memory::MemoryStore,
    model::{ConnId, ConversationKey, Message, Sender},
    store::Conversations,
};
use parla_engine::{
    Engine, EngineParts,
    feed::{ConversationFeed, FeedItem},
    metrics::Metrics,
    responder::builtin::BuiltinResponder,
};

const T: &str = "t-feed";
const C: &str = "c1";

struct Harness {
    engine: Engine,
    bus: Arc<InProcessBus>,
    store: Arc<MemoryStore>,
    key: ConversationKey,
}

async fn harness(buffer: usize) -> Harness {
    let store = Arc::new(MemoryStore::new());
    conformance::seed_conversation(&*store, T, C).await;
    let bus = Arc::new(InProcessBus::new(buffer));
    let settings = parla_config::Settings::defaults().expect("default settings").engine;
    let engine = Engine::new(EngineParts {
        store: store.clone(),
        bus: bus.clone(),
        responder: Arc::new(BuiltinResponder::new(Duration::ZERO, 0.3, 0.3, String::new())),
        hooks: Arc::new(NoHooks),
        metrics: Arc::new(Metrics::new()),
        settings,
        knowledge: Arc::new(NoKnowledge),
        max_text_chars: 2000,
        billing: parla_engine::billing::Billing::unlimited(store.clone()),
    });
    let key = ConversationKey { tenant_id: T.into(), conversation_id: C.into() };
    Harness { engine, bus, store, key }
}

impl Harness {
    /// Stores message `seq` (the bot's when `bot`), without publishing it.
    async fn store(&self, seq: u64, bot: bool) -> Message {
        let mut message = conformance::message(T, C, seq, Some(&format!("k{seq}")));
        if bot {
            (message.sender, message.client_msg_id) = (Sender::Bot, None);
        }
        self.store.append(&message).await.expect("append");
        message
    }

    fn publish(&self, event: Event) {
        self.bus.publish(&self.key, event);
    }
}

/// The next item, or a failure if none comes (the clock is paused: a minute passes at once).
async fn next(feed: &mut ConversationFeed) -> FeedItem {
    let item = tokio::time::timeout(Duration::from_secs(60), feed.next()).await;
    item.expect("an item came").expect("no store error")
}

/// The seq of a stored message handed out, read from the store or live.
fn seq(item: &FeedItem) -> Option<u64> {
    match item {
        FeedItem::Message(m) => Some(m.seq),
        FeedItem::Live(e) => match &**e {
            Event::Message { message } => Some(message.seq),
            _ => None,
        },
    }
}

/// Drains the messages the feed hands out until `typing` (published last) comes.
async fn messages_until_typing(feed: &mut ConversationFeed) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let item = next(feed).await;
        match (seq(&item), &item) {
            (Some(seq), _) => seqs.push(seq),
            (None, FeedItem::Live(e)) if matches!(&**e, Event::Typing { .. }) => return seqs,
            _ => panic!("unexpected {item:?}"),
        }
    }
}

fn typing() -> Event {
    Event::Typing { sender: Sender::User, on: true, origin: None }
}

#[tokio::test(start_paused = true)]
async fn what_is_stored_comes_first_then_live_messages_each_once_in_order() {
    let h = harness(64).await;
    h.store(1, false).await;
    h.store(2, true).await;
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), None, 1).await;
    let three = h.store(3, false).await;
    h.publish(Event::Message { message: three.clone() });
    h.publish(Event::Message { message: three }); // Published twice: handed out once.
    h.publish(typing());
    assert_eq!(messages_until_typing(&mut feed).await, [2, 3], "after what the reader has");
}

#[tokio::test(start_paused = true)]
async fn a_message_that_never_reached_the_bus_is_read_from_the_store_before_the_next() {
    let h = harness(64).await;
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), None, 0).await;
    h.publish(typing());
    assert_eq!(messages_until_typing(&mut feed).await, Vec::<u64>::new());
    h.store(1, false).await;
    h.store(2, true).await; // Stored, its event lost.
    let three = h.store(3, false).await;
    h.publish(Event::Message { message: three });
    h.publish(typing());
    assert_eq!(messages_until_typing(&mut feed).await, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn an_event_whose_gap_the_store_cannot_fill_goes_on_after_one_read() {
    let h = harness(64).await;
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), None, 0).await;
    // Seq 5 announced, but the store has nothing (the conversation was deleted meanwhile):
    // read once, then handed out, and what follows is not held back.
    let ghost = conformance::message(T, C, 5, None);
    h.publish(Event::Message { message: ghost });
    h.publish(typing());
    assert_eq!(messages_until_typing(&mut feed).await, [5]);
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_fell_behind_gets_every_message_from_the_store_once() {
    let h = harness(2).await;
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), None, 0).await;
    for seq in 1..=20 {
        let message = h.store(seq, seq % 2 == 0).await;
        h.publish(Event::Message { message });
    }
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        let item = next(&mut feed).await;
        seqs.push(seq(&item).expect("a message"));
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "none lost, none twice, in order");
}

#[tokio::test(start_paused = true)]
async fn streams_are_followed_from_their_start_and_an_unseen_ones_end_is_its_message() {
    let h = harness(64).await;
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), None, 0).await;
    h.publish(typing());
    assert_eq!(messages_until_typing(&mut feed).await, Vec::<u64>::new(), "nothing stored yet");
    let token = |id: &str| Event::Token { stream_id: id.into(), delta: "x".into() };
    h.publish(token("before")); // Its start was not seen: dropped.
    h.publish(Event::StreamStart { stream_id: "s1".into(), sender: Sender::Bot });
    h.publish(token("s1"));
    let one = h.store(1, true).await;
    h.publish(Event::StreamEnd { stream_id: "s1".into(), message: one.clone() });
    let two = h.store(2, true).await;
    h.publish(Event::StreamEnd { stream_id: "unseen".into(), message: two });
    h.publish(Event::StreamEnd { stream_id: "late".into(), message: one }); // Has it: dropped.
    h.publish(typing());
    let mut got = Vec::new();
    loop {
        match next(&mut feed).await {
            FeedItem::Live(e) => match &*e {
                Event::StreamStart { stream_id, .. } => got.push(format!("start {stream_id}")),
                Event::Token { stream_id, .. } => got.push(format!("token {stream_id}")),
                Event::StreamEnd { stream_id, message } => {
                    got.push(format!("end {stream_id} {}", message.seq));
                }
                Event::Typing { .. } => break,
                other => panic!("unexpected {other:?}"),
            },
            FeedItem::Message(m) => got.push(format!("message {}", m.seq)),
        }
    }
    assert_eq!(got, ["start s1", "token s1", "end s1 1", "message 2"]);
}

#[tokio::test(start_paused = true)]
async fn acks_reach_only_their_connection_and_only_for_what_it_has() {
    let h = harness(64).await;
    let me = ConnId::generate();
    let mut feed = ConversationFeed::open(&h.engine, h.key.clone(), Some(me), 0).await;
    let one = h.store(1, false).await;
    h.publish(Event::Message { message: one.clone() });
    assert_eq!(seq(&next(&mut feed).await), Some(1));
    h.publish(Event::Ack { conn: ConnId::generate(), message: one.clone() }); // Another's.
    let two = conformance::message(T, C, 2, Some("k2"));
    h.publish(Event::Ack { conn: me, message: two }); // Overtook its echo: not yet.
    h.publish(Event::Ack { conn: me, message: one });
    let item = next(&mut feed).await;
    match &item {
        FeedItem::Live(e) => match &**e {
            Event::Ack { conn, message } => assert_eq!((*conn, message.seq), (me, 1)),
            _ => panic!("expected the ack of 1, got {item:?}"),
        },
        FeedItem::Message(_) => panic!("expected the ack of 1, got {item:?}"),
    }
}
