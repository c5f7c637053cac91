//! The conversation actor's rules, through the engine's public API, on the in-memory store and
//! the in-process bus, with tokio's clock paused: waits (a reply's token pacing, the idle time
//! before passivation) pass instantly and in order, without sleeping.

use std::{sync::Arc, time::Duration};

use parla_config::EngineSettings;
use parla_domain::{
    agents::{AgentAction, AgentCommand},
    bus::{Event, Inbound, Subscription, local::InProcessBus},
    conformance,
    hooks::NoHooks,
    input::VisitorInput,
    knowledge::NoKnowledge,
    memory::MemoryStore,
    model::{
        AccountId, AgentRef, BotId, Channel, ConnId, ConversationKey, Intent, IntentResponse,
        Sender, Tenant, TenantId,
    },
    store::Catalog,
};
use parla_engine::{
    Engine, EngineError, EngineParts, OpenRequest, metrics::Metrics,
    responder::builtin::BuiltinResponder,
};

const TENANT: &str = "t1";
const BOT: &str = "b1";
/// The answer of the bot's one intent: many words, so its stream lasts many token delays.
const HOURS: &str = "We are open every day from nine in the morning to six in the evening, \
                     weekends and holidays included, at the desk by the main entrance.";
/// The pause between a reply's tokens.
const TOKEN_DELAY: Duration = Duration::from_millis(200);

struct Harness {
    engine: Engine,
    store: Arc<MemoryStore>,
}

async fn harness(tweak: impl FnOnce(&mut EngineSettings)) -> Harness {
    let mut settings = parla_config::Settings::defaults().expect("default settings").engine;
    tweak(&mut settings);
    let store = Arc::new(MemoryStore::new());
    let tenant = TenantId::from(TENANT);
    store.put_tenant(&Tenant::new(tenant.clone(), "T".into(), 0)).await.expect("tenant");
    let mut bot = conformance::bot(TENANT, BOT);
    bot.config.welcome_message = Some("Hello! Ask me anything.".into());
    store.put_bot(&bot).await.expect("bot");
    let hours = Intent {
        id: "i1".into(),
        bot_id: BotId::from(BOT),
        name: "hours".into(),
        description: None,
        examples: vec!["when are you open".into(), "opening hours".into()],
        response: IntentResponse { text: HOURS.into(), quick_replies: vec![], content: None },
        actions: vec![],
    };
    store.put_intents(&tenant, &bot.id, &[hours]).await.expect("intents");
    let responder = BuiltinResponder::new(TOKEN_DELAY, 0.3, 0.3, String::new());
    let engine = Engine::new(EngineParts {
        store: store.clone(),
        bus: Arc::new(InProcessBus::new(settings.subscriber_buffer)),
        responder: Arc::new(responder),
        hooks: Arc::new(NoHooks),
        metrics: Arc::new(Metrics::new()),
        settings,
        knowledge: Arc::new(NoKnowledge),
        max_text_chars: 2000,
        billing: parla_engine::billing::Billing::unlimited(store.clone()),
    });
    Harness { engine, store }
}

impl Harness {
    /// A new conversation, stored (its greeting is seq 1), and a subscription to it as `conn`.
    async fn conversation(&self, conn: ConnId) -> (ConversationKey, Subscription) {
        let request = OpenRequest {
            bot_id: BOT.into(),
            resume: None,
            user_agent: None,
            source: Channel::Web,
            origin: None,
        };
        let opened = self.engine.open(request).await.expect("open");
        let pending = opened.pending.expect("a new conversation is pending");
        self.engine.materialize(&pending).await.expect("materialize");
        let events = self.engine.subscribe(&opened.key, Some(conn)).await;
        (opened.key, events)
    }

    async fn say(
        &self,
        key: &ConversationKey,
        conn: ConnId,
        id: &str,
        text: &str,
    ) -> Result<(), EngineError> {
        let input = VisitorInput::text(id, text);
        self.engine.send(key.clone(), Some(conn), Inbound::VisitorMessage(input)).await
    }

    /// The stored transcript: (seq, sender, text).
    async fn transcript(&self, key: &ConversationKey) -> Vec<(u64, Sender, String)> {
        let messages = self.engine.history(key, 0, 100).await.expect("history");
        messages.into_iter().map(|m| (m.seq, m.sender, m.text)).collect()
    }

    fn live(&self) -> i64 {
        self.engine.metrics().live_conversations.get()
    }
}

/// The next event `pick` takes, skipping the others; fails if none comes within a minute of
/// (paused, so instantly passing) time.
async fn next<T>(events: &mut Subscription, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let wait = async {
        loop {
            let event = events.recv().await.expect("subscription open");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("the event came")
}

fn agent() -> AgentCommand {
    let agent = AgentRef { id: AccountId::from("a1"), name: "Ann".into() };
    AgentCommand { agent, privileged: false, action: AgentAction::Claim }
}

#[tokio::test(start_paused = true)]
async fn seqs_follow_each_other_from_the_greeting_to_the_reply() {
    let h = harness(|_| {}).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.say(&key, conn, "m1", "when are you open?").await.expect("sent");
    let reply = next(&mut events, |e| match e {
        Event::StreamEnd { message, .. } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!((reply.seq, reply.sender, reply.text.as_str()), (3, Sender::Bot, HOURS));
    let seqs: Vec<(u64, Sender)> =
        h.transcript(&key).await.into_iter().map(|(s, w, _)| (s, w)).collect();
    assert_eq!(seqs, [(1, Sender::Bot), (2, Sender::User), (3, Sender::Bot)]);
}

#[tokio::test(start_paused = true)]
async fn a_message_sent_twice_is_stored_once_and_its_sender_gets_the_original() {
    let h = harness(|_| {}).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.say(&key, conn, "m1", "hello there").await.expect("sent");
    let stored = next(&mut events, |e| match e {
        Event::Message { message } if message.sender == Sender::User => Some(message.clone()),
        _ => None,
    })
    .await;
    h.say(&key, conn, "m1", "hello there").await.expect("sent again");
    let acked = next(&mut events, |e| match e {
        Event::Ack { conn: to, message } if *to == conn => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(acked, stored, "the original, not a second copy");
    let visitor: Vec<_> =
        h.transcript(&key).await.into_iter().filter(|(_, s, _)| *s == Sender::User).collect();
    assert_eq!(visitor.len(), 1, "{visitor:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_append_is_refused_to_its_sender_and_the_retry_leaves_no_gap() {
    let h = harness(|_| {}).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.store.fail_next_appends(1);
    h.say(&key, conn, "m1", "hello").await.expect("sent");
    let (code, id) = next(&mut events, |e| match e {
        Event::Rejected { conn: Some(to), code, client_msg_id, .. } if *to == conn => {
            Some((code.clone(), client_msg_id.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((code.as_str(), id.as_deref()), ("internal", Some("m1")));
    h.say(&key, conn, "m1", "hello").await.expect("retried");
    let stored = next(&mut events, |e| match e {
        Event::Message { message } if message.sender == Sender::User => Some(message.seq),
        _ => None,
    })
    .await;
    assert_eq!(stored, 2, "the next seq after the greeting");
}

#[tokio::test(start_paused = true)]
async fn an_agents_claim_stops_the_bots_reply_midway_and_nothing_of_it_is_stored() {
    let h = harness(|_| {}).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.say(&key, conn, "m1", "when are you open?").await.expect("sent");
    let stream = next(&mut events, |e| match e {
        Event::StreamStart { stream_id, .. } => Some(stream_id.clone()),
        _ => None,
    })
    .await;
    next(&mut events, |e| matches!(e, Event::Token { .. }).then_some(())).await;
    h.engine.command(key.clone(), agent()).await.expect("claimed");
    // After the claim: the stream is cancelled and no further token of it is published.
    let cancelled = async {
        loop {
            match &*events.recv().await.expect("open") {
                Event::StreamCancelled { stream_id } if *stream_id == stream => return,
                Event::Token { stream_id, .. } if *stream_id == stream => {
                    panic!("a token after the claim")
                }
                Event::StreamEnd { .. } => panic!("the reply ended after the claim"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), cancelled).await.expect("cancelled");
    tokio::time::sleep(TOKEN_DELAY * 100).await; // Long after the reply would have ended.
    let senders: Vec<Sender> = h.transcript(&key).await.into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(senders, [Sender::Bot, Sender::User], "the greeting and the question only");
}

#[tokio::test(start_paused = true)]
async fn an_idle_conversation_is_passivated_and_wakes_where_it_stopped() {
    let h = harness(|s| s.idle_passivate_secs = 30).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.say(&key, conn, "m1", "when are you open?").await.expect("sent");
    next(&mut events, |e| matches!(e, Event::StreamEnd { .. }).then_some(())).await;
    assert_eq!(h.live(), 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(h.live(), 0, "stopped after 30 s idle");
    h.say(&key, conn, "m2", "when are you open?").await.expect("sent");
    let reply = next(&mut events, |e| match e {
        Event::StreamEnd { message, .. } => Some(message.seq),
        _ => None,
    })
    .await;
    assert_eq!(reply, 5, "seqs go on from the store");
    assert_eq!(h.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_actor_that_panics_is_restarted_and_the_conversation_goes_on() {
    let h = harness(|s| s.panic_on_text = "boom".into()).await;
    let conn = ConnId::generate();
    let (key, mut events) = h.conversation(conn).await;
    h.say(&key, conn, "m1", "boom").await.expect("sent");
    let code = next(&mut events, |e| match e {
        Event::Rejected { conn: Some(to), code, .. } if *to == conn => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(code, "internal");
    h.say(&key, conn, "m2", "when are you open?").await.expect("sent");
    let reply = next(&mut events, |e| match e {
        Event::StreamEnd { message, .. } => Some(message.seq),
        _ => None,
    })
    .await;
    assert_eq!(reply, 3, "the panicking text was not stored");
    assert_eq!(h.engine.metrics().actor_restarts.get(), 1);
}

/// At the tenant's cap of live actors an idle one is stopped to make room; while every one is
/// busy (replying), a new conversation is refused until one is free.
#[tokio::test(start_paused = true)]
async fn a_tenant_at_its_cap_refuses_while_its_conversations_are_busy_and_evicts_idle_ones() {
    let h = harness(|s| s.max_live_conversations_per_tenant = 1).await;
    let conn = ConnId::generate();
    let (first, mut first_events) = h.conversation(conn).await;
    let (second, mut second_events) = h.conversation(conn).await;
    h.say(&first, conn, "m1", "when are you open?").await.expect("sent");
    next(&mut first_events, |e| matches!(e, Event::StreamStart { .. }).then_some(())).await;
    let refused = h.say(&second, conn, "m1", "hello").await;
    assert!(matches!(refused, Err(EngineError::TenantAtCapacity)), "{refused:?}");
    // The reply ends: the first is idle, and makes room.
    next(&mut first_events, |e| matches!(e, Event::StreamEnd { .. }).then_some(())).await;
    h.say(&second, conn, "m1", "hello").await.expect("room made");
    next(&mut second_events, |e| match e {
        Event::Message { message } if message.sender == Sender::User => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(h.live(), 1, "the cap holds");
    assert_eq!(h.engine.metrics().actor_passivations.get(), 1, "the idle one made room");
}
