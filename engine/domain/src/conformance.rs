//! The conformance suite every [`Store`] adapter must pass.
//!
//! Each check is a public function of this module that takes an empty store (it uses tenant
//! ids of its own, so checks that share a store cannot see each other's data either) and
//! panics, saying what failed. An adapter runs them one of two ways:
//! - [`store_conformance_tests!`](crate::store_conformance_tests) stamps one test per check,
//!   named after it, each on a fresh store, so a failing check names itself and the others
//!   still run (the embedded store, [`MemoryStore`](crate::memory::MemoryStore));
//! - [`run_all`] runs every check in turn on one store, and [`run_concurrent`] the
//!   concurrency check, for a store that is costly to create (the ScyllaDB adapter's tests
//!   share one keyspace).
//!
//! Both come from one list of the checks, in `__store_conformance!`.

use std::sync::Arc;

use crate::model::*;
use crate::store::{Appended, Store, StoreError};

/// The conformance checks, listed once, handed to what the first argument asks for:
/// `run_all` defines [`run_all`] (below), `stamp, $make` the tests of
/// [`store_conformance_tests!`](crate::store_conformance_tests). Only these two use it.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance {
    (@run_all [] $($check:ident),* $(,)?) => {
        /// Runs every check in turn on one store (the concurrency check is
        /// [`run_concurrent`]). Panics, naming the check, on the first failure.
        pub async fn run_all(store: &dyn $crate::store::Store) {
            $( $crate::conformance::$check(store).await; )*
        }
    };
    (@stamp [$make:expr] $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = $make.await;
                $crate::conformance::$check(&*store).await;
            }
        )*

        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_appends_land_once() {
            let shared = ::std::sync::Arc::new($make.await);
            $crate::conformance::concurrent_appends_land_once(shared, |s| &**s).await;
        }
    };
    ($then:ident $(, $args:tt)*) => {
        $crate::__store_conformance! { @$then [$($args),*]
            tenants_round_trip,
            bots_are_scoped_to_their_tenant,
            intents_replace_as_a_set,
            conversations_are_created_once_and_scoped,
            append_orders_by_seq_and_reads_ranges,
            append_is_idempotent_by_client_msg_id,
            append_refuses_seq_conflicts_and_gaps,
            append_needs_an_existing_conversation_of_that_tenant,
            accounts_have_unique_emails_and_are_scoped,
            refresh_tokens_are_single_use_and_revoked_by_family,
            api_keys_are_found_by_digest_and_listed_per_tenant,
            one_time_tokens_are_taken_once,
            documents_keep_content_and_chunks_and_queue_unfinished_work,
            conversations_keep_status_and_visitor_sentiment,
            token_usage_adds_up_per_tenant_and_month,
            deleting_a_bot_deletes_its_knowledge_base,
            notes_stay_with_their_conversation,
            canned_responses_are_per_tenant,
            channel_contacts_map_to_one_conversation,
            rich_messages_and_intents_round_trip,
            user_data_merges_per_conversation,
            analytics_count_every_write_once,
            conversations_needing_agents_are_indexed,
            // Accounts, API keys and invitations: no change undoes another.
            account_updates_are_compare_and_set,
            a_tenant_keeps_an_owner_whatever_the_race,
            api_key_revocation_survives_last_use_writes,
            invitations_are_listed_revoked_and_taken_once,
            links_are_read_without_being_taken,
            // Billing: counts within limits, subscriptions by event age, events once.
            usage_is_counted_within_its_limit_even_racing,
            a_workspace_gets_one_customer,
            subscriptions_take_only_newer_events,
            provider_events_are_queued_once,
            listings_are_global_and_deleted_by_their_tenant_only,
            a_person_is_found_by_contact_and_form_and_forgotten_with_the_conversation,
            the_audit_log_is_appended_per_tenant_and_read_newest_first,
            secrets_read_back_as_written_through_the_sealer,
        }
    };
}

/// Stamps the conformance suite as tests of the calling module: one
/// `#[tokio::test(flavor = "multi_thread")]` per check of [`conformance`](crate::conformance),
/// named after it, and `concurrent_appends_land_once`, each on a fresh store.
///
/// `$make` is an `async` expression whose output derefs to a type that implements
/// [`Store`](crate::store::Store); it is pasted into every test, so each test makes its own
/// store. A store that needs something to outlive it (a temporary directory) comes in a
/// struct that holds both and derefs to the store. The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
///
/// ```
/// # fn main() {}
/// mod tests {
///     use parla_domain::memory::MemoryStore;
///
///     parla_domain::store_conformance_tests!(async { Box::new(MemoryStore::new()) });
/// }
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr $(,)?) => {
        $crate::__store_conformance!(stamp, $make);
    };
}

crate::__store_conformance!(run_all);

/// Escalated and assigned conversations are listed whatever their number or age, and leave the
/// list when they no longer need an agent or are deleted; tenants stay apart.
pub async fn conversations_needing_agents_are_indexed(store: &dyn Store) {
    let (t, other) = ("t-attention", "t-attention-other");
    let tenant = TenantId::from(t);
    for c in ["c-att-open", "c-att-waiting", "c-att-held", "c-att-resolved"] {
        seed_conversation(store, t, c).await;
    }
    seed_conversation(store, other, "c-att-elsewhere").await;
    let escalated = Handling {
        status: ConversationStatus::Escalated,
        waiting_since: Some(5),
        ..Handling::default()
    };
    let assigned = Handling {
        status: ConversationStatus::Assigned,
        assignee: Some(AgentRef { id: AccountId::from("agent-1"), name: "Ann".into() }),
        ..Handling::default()
    };
    let resolved = Handling {
        status: ConversationStatus::Resolved,
        resolution: Some(Resolution::Resolved),
        ..Handling::default()
    };
    for (c, h) in [
        ("c-att-waiting", &escalated),
        ("c-att-held", &assigned),
        ("c-att-resolved", &escalated),
        ("c-att-resolved", &resolved),
    ] {
        assert!(store.set_handling(&tenant, &c.into(), h).await.expect("set_handling"));
    }
    let other_tenant = TenantId::from(other);
    assert!(
        store
            .set_handling(&other_tenant, &"c-att-elsewhere".into(), &escalated)
            .await
            .expect("set")
    );
    let ids = |list: Vec<Conversation>| {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id.0).collect();
        ids.sort();
        ids
    };
    let listed = store.attention_conversations(&tenant, None, 100).await.expect("attention");
    assert_eq!(ids(listed.clone()), ["c-att-held", "c-att-waiting"], "waiting and held only");
    let waiting = listed.iter().find(|c| c.id.as_str() == "c-att-waiting").expect("waiting");
    assert_eq!(waiting.handling, escalated, "listed with its current handling");
    let first = store.attention_conversations(&tenant, None, 1).await.expect("limit");
    assert_eq!(ids(first.clone()), ["c-att-held"], "in id order, a page at a time");
    let next = store.attention_conversations(&tenant, Some(&first[0].id), 1).await.expect("page");
    assert_eq!(ids(next.clone()), ["c-att-waiting"]);
    assert!(
        store.attention_conversations(&tenant, Some(&next[0].id), 1).await.expect("end").is_empty()
    );

    // Handed back to the bot: it leaves; deleted: it leaves.
    assert!(
        store
            .set_handling(&tenant, &"c-att-waiting".into(), &Handling::default())
            .await
            .expect("open")
    );
    assert!(store.delete_conversation(&tenant, &"c-att-held".into()).await.expect("delete"));
    assert!(store.attention_conversations(&tenant, None, 100).await.expect("attention").is_empty());
    let elsewhere = store.attention_conversations(&other_tenant, None, 100).await.expect("other");
    assert_eq!(ids(elsewhere), ["c-att-elsewhere"]);
}

/// The analytics counters move with each write, once: a duplicate append, a repeated
/// handling, a second first message of a channel contact count nothing; a changed resolution
/// moves its count; another tenant sees none of it.
pub async fn analytics_count_every_write_once(store: &dyn Store) {
    use crate::analytics::{Counters, HOUR_MS};
    let (t, h) = ("t-stats", 1_699_999_200_000_i64); // h: an hour start, 2 h before a day.
    let tenant = TenantId::from(t);
    seed_conversation(store, t, "c-stats-web").await;
    let web =
        store.get_conversation(&tenant, &"c-stats-web".into()).await.expect("get").expect("exists");
    // seed_conversation starts it now; re-create one that started at h.
    assert!(store.delete_conversation(&tenant, &web.id).await.expect("delete"));
    let web = Conversation { started_at: h + 10, ..web };
    store.create_conversation(&web).await.expect("create");
    let at = |seq: u64, sender: Sender, created_at: i64| Message {
        sender,
        created_at,
        ..message(t, "c-stats-web", seq, Some(&format!("s{seq}")))
    };
    let greeting = at(1, Sender::Bot, h + 10);
    let mut asked = at(2, Sender::User, h + 1_000);
    (asked.intent, asked.confidence, asked.sentiment) =
        (Some("greet".into()), Some(0.75), Some(0.5));
    let mut answer = at(3, Sender::Bot, h + 1_400);
    (answer.prompt_tokens, answer.completion_tokens) = (Some(30), Some(12));
    let unmatched = at(4, Sender::User, h + HOUR_MS + 5);
    let agent = at(5, Sender::Human, h + HOUR_MS + 9);
    for m in [&greeting, &asked, &answer, &unmatched, &agent] {
        assert_eq!(store.append(m).await.expect("append"), Appended::Stored);
    }
    let again = Message { seq: 6, ..asked.clone() };
    assert!(matches!(store.append(&again).await.expect("dup"), Appended::Duplicate(_)));

    let escalated = Handling { status: ConversationStatus::Escalated, ..Handling::default() };
    assert!(store.set_handling(&tenant, &web.id, &escalated).await.expect("escalate"));
    let resolved = Handling {
        status: ConversationStatus::Resolved,
        resolution: Some(Resolution::Unresolved),
        ended_at: Some(h + 70_010),
        csat: Some(4),
        ..Handling::default()
    };
    assert!(store.set_handling(&tenant, &web.id, &resolved).await.expect("resolve"));
    let resolved = Handling { resolution: Some(Resolution::Resolved), ..resolved };
    for _ in 0..2 {
        assert!(store.set_handling(&tenant, &web.id, &resolved).await.expect("re-resolve"));
    }

    // A WhatsApp contact: two first messages, one conversation.
    let fresh = |id: &str| Conversation {
        id: id.into(),
        source: Channel::Whatsapp,
        started_at: h + 20,
        stats: Default::default(),
        ..web.clone()
    };
    let wa = store
        .contact_conversation("conn-stats", "+391", &fresh("c-stats-wa"))
        .await
        .expect("analytics call");
    let same = store.contact_conversation("conn-stats", "+391", &fresh("c-stats-wa2")).await;
    assert_eq!(same.expect("second").id, wa.id);
    let wa_says = Message { created_at: h + 30, ..message(t, wa.id.as_str(), 1, Some("w1")) };
    assert_eq!(store.append(&wa_says).await.expect("append"), Appended::Stored);

    let rows = store.analytics(&tenant, h, h + 2 * HOUR_MS).await.expect("analytics");
    let bucket = |hour: i64, channel: Channel| {
        let found: Vec<_> =
            rows.iter().filter(|r| r.hour == hour && r.channel == channel).collect();
        assert!(found.len() <= 1, "one row per bucket: {rows:?}");
        found.first().map(|r| r.counters.clone()).unwrap_or_default()
    };
    let first_hour_web = Counters {
        conversations: 1,
        visitor_messages: 1,
        bot_messages: 2,
        active_visitors: 1,
        handovers: 1,
        resolved: 1,
        first_responses: 1,
        first_response_ms: 400,
        durations: 1,
        duration_ms: 70_000,
        sentiment_count: 1,
        sentiment_sum: 0.5,
        csat_count: 1,
        csat_sum: 4,
        prompt_tokens: 30,
        completion_tokens: 12,
        matched: 1,
        ..Counters::default()
    };
    assert_eq!(bucket(h, Channel::Web), first_hour_web, "analytics: the first hour, web");
    let second_hour_web =
        Counters { visitor_messages: 1, agent_messages: 1, unmatched: 1, ..Counters::default() };
    assert_eq!(bucket(h + HOUR_MS, Channel::Web), second_hour_web, "analytics: hour two, web");
    let wa_hour = Counters {
        conversations: 1,
        visitor_messages: 1,
        active_visitors: 1,
        unmatched: 1,
        ..Counters::default()
    };
    assert_eq!(bucket(h, Channel::Whatsapp), wa_hour, "analytics: whatsapp");
    assert!(rows.iter().all(|r| r.bot_id == web.bot_id), "analytics: every row names its bot");
    assert_eq!(rows.len(), 3, "analytics: {rows:?}");
    let later = store.analytics(&tenant, h + HOUR_MS, h + 2 * HOUR_MS).await.expect("range");
    assert_eq!(later.len(), 1, "analytics: the range is by hour start");
    let other = store.analytics(&"t-stats-other".into(), 0, i64::MAX).await.expect("other");
    assert!(other.is_empty(), "analytics: another tenant sees nothing");

    let intents = store.intent_counts(&tenant, h, h + 2 * HOUR_MS).await.expect("intents");
    assert_eq!(intents.len(), 1, "intent counts: {intents:?}");
    let greet = &intents[0];
    assert_eq!((greet.hour, greet.intent.as_str(), greet.hits), (h, "greet", 1));
    assert!((greet.confidence_sum - 0.75).abs() < 1e-6);

    let all = store
        .unmatched_messages(&tenant, None, h, h + 2 * HOUR_MS, 10)
        .await
        .expect("analytics call");
    let seen: Vec<_> = all.iter().map(|(_, m)| (m.conversation_id.as_str(), m.seq)).collect();
    assert_eq!(seen, [("c-stats-web", 4), (wa.id.as_str(), 1)], "unmatched: newest first");
    let one = store
        .unmatched_messages(&tenant, None, h, h + 2 * HOUR_MS, 1)
        .await
        .expect("analytics call");
    assert_eq!(one.len(), 1, "unmatched: at most limit");
    let (other_bot, other_tenant) = (BotId::from("other-bot"), TenantId::from("t-stats-other"));
    let none = store.unmatched_messages(&tenant, Some(&other_bot), 0, i64::MAX, 10);
    assert!(none.await.expect("analytics call").is_empty(), "unmatched: of the bot asked for");
    let elsewhere = store.unmatched_messages(&other_tenant, None, 0, i64::MAX, 10);
    assert!(
        elsewhere.await.expect("analytics call").is_empty(),
        "unmatched: another tenant sees none"
    );

    // Deleting a conversation removes its messages from the list, not its counts.
    assert!(store.delete_conversation(&tenant, &wa.id).await.expect("delete"));
    let left = store
        .unmatched_messages(&tenant, None, h, h + 2 * HOUR_MS, 10)
        .await
        .expect("analytics call");
    assert_eq!(left.len(), 1, "unmatched: a deleted message is left out");
    let rows_after = store.analytics(&tenant, h, h + 2 * HOUR_MS).await.expect("analytics");
    assert_eq!(rows_after, rows, "analytics: history stays");
}

/// A message's rich content, postback and form, and an intent's rich response, come back as
/// they were stored.
pub async fn rich_messages_and_intents_round_trip(store: &dyn Store) {
    use crate::rich::{Card, CardButton, FormField, FormInput, FormSubmission, RichContent};
    seed_conversation(store, "t-rich", "c-rich").await;
    let card = |title: &str| Card {
        title: title.into(),
        subtitle: Some("sub".into()),
        image_url: Some("https://example.com/a.png".into()),
        buttons: vec![CardButton { label: "Buy".into(), payload: Some("BUY".into()), url: None }],
    };
    let mut bot_says = message("t-rich", "c-rich", 1, None);
    bot_says.sender = Sender::Bot;
    bot_says.kind = MessageType::Carousel;
    bot_says.content =
        Some(Box::new(RichContent::Carousel { cards: vec![card("One"), card("Two")] }));
    bot_says.sources = vec![SourceRef { document_id: "d-1".into(), title: "Prices".into() }];
    let mut pressed = message("t-rich", "c-rich", 2, Some("press"));
    pressed.postback = Some("BUY".into());
    let mut filled = message("t-rich", "c-rich", 3, Some("fill"));
    filled.form = Some(Box::new(FormSubmission {
        form_id: "lead".into(),
        values: [("email".to_owned(), "ada@example.com".to_owned())].into(),
    }));
    for m in [&bot_says, &pressed, &filled] {
        assert_eq!(store.append(m).await.expect("append"), Appended::Stored);
    }
    let (t, c) = (TenantId::from("t-rich"), ConversationId::from("c-rich"));
    let back = store.messages_after(&t, &c, 0, 10).await.expect("read");
    assert_eq!(back, vec![bot_says, pressed, filled], "rich messages round-trip, with sources");

    let b = BotId::from("t-rich-bot");
    let form = RichContent::Form {
        form_id: "lead".into(),
        fields: vec![FormField {
            name: "email".into(),
            label: "Email".into(),
            input: FormInput::Email,
            required: true,
        }],
        submit_label: Some("Send".into()),
    };
    let intent = Intent {
        id: "i-lead".into(),
        bot_id: b.clone(),
        name: "lead".into(),
        description: None,
        examples: vec!["contact me".into()],
        response: IntentResponse {
            text: "Leave us your email".into(),
            quick_replies: vec![],
            content: Some(form),
        },
        actions: vec![],
    };
    store.put_intents(&t, &b, std::slice::from_ref(&intent)).await.expect("put");
    assert_eq!(store.list_intents(&t, &b).await.expect("list"), vec![intent]);
}

/// A conversation's user data: merged key by key, scoped to its tenant, gone with the
/// conversation, never created for a conversation that does not exist.
pub async fn user_data_merges_per_conversation(store: &dyn Store) {
    seed_conversation(store, "t-data", "c-data").await;
    let (t, c) = (TenantId::from("t-data"), ConversationId::from("c-data"));
    let fields = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    assert_eq!(store.user_data(&t, &c).await.expect("read"), Some(fields(&[])), "empty at first");
    let first = fields(&[("email", "ada@example.com"), ("name", "Ada")]);
    assert!(store.merge_user_data(&t, &c, &first).await.expect("merge"));
    let second = fields(&[("email", "ada@lovelace.org"), ("phone", "+39 02 1234")]);
    assert!(store.merge_user_data(&t, &c, &second).await.expect("merge"));
    let merged =
        fields(&[("email", "ada@lovelace.org"), ("name", "Ada"), ("phone", "+39 02 1234")]);
    assert_eq!(store.user_data(&t, &c).await.expect("read"), Some(merged), "merged key by key");

    let other = TenantId::from("t-data-other");
    assert_eq!(store.user_data(&other, &c).await.expect("read"), None, "another tenant's");
    assert!(!store.merge_user_data(&other, &c, &first).await.expect("merge"), "not theirs");
    let missing = ConversationId::from("c-data-missing");
    assert!(!store.merge_user_data(&t, &missing, &first).await.expect("merge"), "no such one");
    assert_eq!(store.user_data(&t, &missing).await.expect("read"), None, "not created");

    assert!(store.delete_conversation(&t, &c).await.expect("delete"));
    assert_eq!(store.user_data(&t, &c).await.expect("read"), None, "deleted with it");
    seed_conversation(store, "t-data", "c-data").await;
    assert_eq!(
        store.user_data(&t, &c).await.expect("read"),
        Some(fields(&[])),
        "a new conversation with the same id starts empty"
    );
}

pub async fn channel_contacts_map_to_one_conversation(store: &dyn Store) {
    let t = TenantId::from("t-chan");
    store.put_tenant(&Tenant::new(t.clone(), "t".into(), 1)).await.expect("tenant");
    let b = bot("t-chan", "b-chan");
    store.put_bot(&b).await.expect("bot");
    let connection = ChannelConnection {
        id: "wa-1".into(),
        tenant_id: t.clone(),
        bot_id: b.id.clone(),
        kind: Channel::Whatsapp,
        address: "1234".into(),
        sealed_secrets: "sealed".into(),
        secret_hints: Default::default(),
        template: None,
        created_at: 1,
        updated_at: 1,
    };
    store.put_channel(&connection).await.expect("put");
    assert_eq!(store.channel_by_id("wa-1").await.expect("get"), Some(connection.clone()));
    assert_eq!(store.list_channels(&t, &b.id).await.expect("list"), vec![connection.clone()]);
    let other = TenantId::from("t-chan-other");
    assert!(store.list_channels(&other, &b.id).await.expect("list").is_empty());
    let fresh = |id: &str| Conversation {
        id: id.into(),
        tenant_id: t.clone(),
        bot_id: b.id.clone(),
        resume_token_sha256: String::new(),
        source: Channel::Whatsapp,
        user_agent: None,
        started_at: 1,
        handling: Handling::default(),
        sentiment_sum: 0.0,
        sentiment_count: 0,
        stats: Default::default(),
    };
    assert!(store.find_contact_conversation(&t, "wa-1", "+391").await.expect("find").is_none());
    let first = store.contact_conversation("wa-1", "+391", &fresh("c1")).await.expect("first");
    let found = store.find_contact_conversation(&t, "wa-1", "+391").await.expect("find");
    assert_eq!(found.map(|c| c.id), Some(first.id.clone()));
    assert!(store.find_contact_conversation(&other, "wa-1", "+391").await.expect("find").is_none());
    let again = store.contact_conversation("wa-1", "+391", &fresh("c2")).await.expect("again");
    assert_eq!(
        (first.id.as_str(), again.id.as_str()),
        ("c1", "c1"),
        "one conversation per contact"
    );
    let other_contact = store.contact_conversation("wa-1", "+392", &fresh("c3")).await.expect("c3");
    assert_eq!(other_contact.id.as_str(), "c3");
    assert!(store.get_conversation(&t, &ConversationId::from("c2")).await.expect("get").is_none());
    let listed = store.channel_conversations(&t).await.expect("list");
    assert_eq!(listed.len(), 2, "c1 and c3: {listed:?}");
    assert!(store.channel_conversations(&other).await.expect("list").is_empty());
    let contact = store.conversation_contact(&t, &first.id).await.expect("contact");
    assert_eq!(contact, Some(("wa-1".to_owned(), "+391".to_owned())));
    assert_eq!(store.conversation_contact(&other, &first.id).await.expect("contact"), None);
    assert!(store.all_channels().await.expect("all").iter().any(|c| c.id == "wa-1"));
    assert!(!store.opted_out("wa-1", "+391").await.expect("read"));
    store.set_opted_out("wa-1", "+391", true).await.expect("stop");
    assert!(store.opted_out("wa-1", "+391").await.expect("read"));
    assert!(!store.opted_out("wa-1", "+392").await.expect("read"), "per contact");
    store.set_opted_out("wa-1", "+391", false).await.expect("start");
    store.add_push_token(&t, &first.id, "device-a").await.expect("add");
    store.add_push_token(&t, &first.id, "device-a").await.expect("again");
    store.add_push_token(&t, &first.id, "device-b").await.expect("add");
    assert_eq!(store.push_tokens(&t, &first.id).await.expect("list"), ["device-a", "device-b"]);
    assert!(store.push_tokens(&other, &first.id).await.expect("list").is_empty());
    store.remove_push_token(&t, &first.id, "device-a").await.expect("remove");
    assert_eq!(store.push_tokens(&t, &first.id).await.expect("list"), ["device-b"]);
    for n in 0..8 {
        store.add_push_token(&t, &first.id, &format!("flood-{n}")).await.expect("add");
    }
    let kept = store.push_tokens(&t, &first.id).await.expect("list");
    assert_eq!(kept.len(), 5, "at most five devices: {kept:?}");
    assert!(kept.contains(&"flood-7".to_owned()), "the newest kept: {kept:?}");
    assert!(!store.opted_out("wa-1", "+391").await.expect("read"));
    assert_eq!(store.channel_cursor(&t, &first.id).await.expect("cursor"), 0);
    store.set_channel_cursor(&t, &first.id, 7).await.expect("set");
    assert_eq!(store.channel_cursor(&t, &first.id).await.expect("cursor"), 7);
    assert_eq!(store.channel_cursor(&other, &first.id).await.expect("cursor"), 0);
    store.delete_conversation(&t, &first.id).await.expect("delete");
    let renewed = store.contact_conversation("wa-1", "+391", &fresh("c4")).await.expect("c4");
    assert_eq!(renewed.id.as_str(), "c4", "a deleted conversation is not resurrected");
    assert!(!store.delete_channel(&other, "wa-1").await.expect("delete"), "not theirs");
    assert!(store.delete_channel(&t, "wa-1").await.expect("delete"));
    assert_eq!(store.channel_by_id("wa-1").await.expect("get"), None);
}

pub async fn canned_responses_are_per_tenant(store: &dyn Store) {
    let canned = |tenant: &str, id: &str, text: &str| CannedResponse {
        id: id.into(),
        tenant_id: tenant.into(),
        shortcut: "refund".into(),
        text: text.into(),
        created_at: 1,
        updated_at: 1,
    };
    let (a, b) = (TenantId::from("t-canned-a"), TenantId::from("t-canned-b"));
    store.put_canned(&canned("t-canned-a", "c1", "first")).await.expect("put");
    store.put_canned(&canned("t-canned-a", "c1", "changed")).await.expect("replace");
    store.put_canned(&canned("t-canned-b", "c1", "theirs")).await.expect("put");
    let mine = store.list_canned(&a).await.expect("list");
    assert_eq!(mine, vec![canned("t-canned-a", "c1", "changed")]);
    assert!(!store.delete_canned(&a, "c2").await.expect("delete"));
    assert!(store.delete_canned(&a, "c1").await.expect("delete"));
    assert!(store.list_canned(&a).await.expect("list").is_empty());
    assert_eq!(store.list_canned(&b).await.expect("list").len(), 1, "the other tenant's stays");
}

pub async fn deleting_a_bot_deletes_its_knowledge_base(store: &dyn Store) {
    let t = TenantId::from("t-bot-kb");
    let (doomed, kept) = (bot("t-bot-kb", "b-doomed"), bot("t-bot-kb", "b-kept"));
    for b in [&doomed, &kept] {
        store.put_bot(b).await.expect("bot");
        let id = format!("doc-of-{}", b.id.as_str());
        let d = document("t-bot-kb", b.id.as_str(), &id, ProcessStatus::Completed);
        store.put_document(&d, Some(b"text")).await.expect("document");
        let chunk = Chunk { document_id: id, position: 0, title: "t".into(), text: "x".into() };
        store.put_chunks(&d, &[chunk]).await.expect("chunks");
    }
    let connection = |id: &str, bot: &Bot| ChannelConnection {
        id: id.into(),
        tenant_id: t.clone(),
        bot_id: bot.id.clone(),
        kind: Channel::Whatsapp,
        address: "1".into(),
        sealed_secrets: "sealed".into(),
        secret_hints: Default::default(),
        template: None,
        created_at: 1,
        updated_at: 1,
    };
    store.put_channel(&connection("ch-doomed", &doomed)).await.expect("channel");
    store.put_channel(&connection("ch-kept", &kept)).await.expect("channel");
    assert!(store.delete_bot(&t, &doomed.id).await.expect("delete"));
    let tombstone = (t.clone(), doomed.id.clone());
    assert!(
        store.bot_tombstones().await.expect("tombstones").contains(&tombstone),
        "its conversations are still to go: the deletion is remembered"
    );
    store.clear_bot_tombstone(&t, &doomed.id).await.expect("clear");
    assert!(!store.bot_tombstones().await.expect("tombstones").contains(&tombstone));
    assert!(!store.delete_bot(&t, &doomed.id).await.expect("again"), "gone already");
    assert!(!store.bot_tombstones().await.expect("tombstones").contains(&tombstone));
    assert_eq!(store.channel_by_id("ch-doomed").await.expect("get"), None, "connections go too");
    assert!(store.channel_by_id("ch-kept").await.expect("get").is_some());
    assert!(store.list_documents(&t, &doomed.id).await.expect("list").is_empty());
    assert!(store.list_chunks(&t, &doomed.id).await.expect("chunks").is_empty());
    assert_eq!(store.get_document(&t, "doc-of-b-doomed").await.expect("get"), None);
    assert_eq!(store.document_content(&t, "doc-of-b-doomed").await.expect("content"), None);
    assert_eq!(store.list_documents(&t, &kept.id).await.expect("list").len(), 1, "others stay");
    assert_eq!(store.list_chunks(&t, &kept.id).await.expect("chunks").len(), 1);
}

pub async fn token_usage_adds_up_per_tenant_and_month(store: &dyn Store) {
    let (a, b) = (TenantId::from("t-usage-a"), TenantId::from("t-usage-b"));
    assert_eq!(store.token_usage(&a, "2026-11").await.expect("read"), 0);
    assert_eq!(store.add_token_usage(&a, "2026-11", 120).await.expect("add"), 120);
    assert_eq!(store.add_token_usage(&a, "2026-11", 30).await.expect("add"), 150);
    assert_eq!(store.add_token_usage(&a, "2026-12", 5).await.expect("add"), 5, "per month");
    assert_eq!(store.token_usage(&a, "2026-11").await.expect("read"), 150);
    assert_eq!(store.token_usage(&b, "2026-11").await.expect("read"), 0, "per tenant");
}

pub async fn usage_is_counted_within_its_limit_even_racing(store: &dyn Store) {
    let (a, b) = (TenantId::from("t-meter-a"), TenantId::from("t-meter-b"));
    let count = |t: &TenantId, n, limit| {
        let t = t.clone();
        async move { store.count_within(&t, "2026-11", "conversations", n, limit).await }
    };
    assert_eq!(count(&a, 2, Some(3)).await.expect("count"), Some(2));
    assert_eq!(count(&a, 2, Some(3)).await.expect("count"), None, "2 + 2 passes 3");
    assert_eq!(count(&a, 1, Some(3)).await.expect("count"), Some(3), "a refusal counted nothing");
    assert_eq!(count(&a, 5, None).await.expect("count"), Some(8), "no limit");
    store.uncount(&a, "2026-11", "conversations", 1).await.expect("uncount");
    store.uncount(&b, "2026-11", "conversations", 1).await.expect("uncount: never below zero");
    assert_eq!(count(&b, 1, Some(1)).await.expect("count"), Some(1), "per tenant");
    store.count_within(&a, "2026-12", "conversations", 4, None).await.expect("other month");
    store.count_within(&a, "2026-11", "documents", 9, None).await.expect("other meter");
    let mut usage = store.usage(&a, "2026-11").await.expect("usage");
    usage.sort();
    assert_eq!(usage, vec![("conversations".to_owned(), 7), ("documents".to_owned(), 9)]);

    // Twenty racing counts against a limit of five: exactly five are counted.
    let racing = TenantId::from("t-meter-race");
    let tries = (0..20).map(|_| count(&racing, 1, Some(5)));
    let outcomes = futures_util::future::join_all(tries).await;
    let counted = outcomes.iter().filter(|o| matches!(o, Ok(Some(_)))).count();
    assert_eq!(counted, 5, "racing counts: {outcomes:?}");
    assert_eq!(
        store.usage(&racing, "2026-11").await.expect("usage"),
        vec![("conversations".to_owned(), 5)]
    );
}

pub async fn a_workspace_gets_one_customer(store: &dyn Store) {
    let t = TenantId::from("t-customer");
    assert_eq!(store.customer(&t).await.expect("read"), None);
    assert_eq!(store.set_customer_once(&t, "cus_first").await.expect("set"), "cus_first");
    assert_eq!(store.set_customer_once(&t, "cus_second").await.expect("set"), "cus_first");
    assert_eq!(store.customer(&t).await.expect("read").as_deref(), Some("cus_first"));
}

/// A workspace subscription of `tenant`, written from an event at `created`.
pub fn subscription(
    tenant: &str,
    id: &str,
    status: crate::billing::SubscriptionStatus,
    created: i64,
) -> crate::billing::Subscription {
    crate::billing::Subscription {
        id: id.to_owned(),
        tenant_id: TenantId::from(tenant),
        kind: crate::billing::SubscriptionKind::Workspace { plan: "pro".into() },
        status,
        customer: "cus_1".into(),
        current_period_start: Some(1_000),
        current_period_end: Some(2_000),
        trial_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        past_due_since: None,
        event_created: created,
        updated_at: 0,
    }
}

pub async fn subscriptions_take_only_newer_events(store: &dyn Store) {
    use crate::billing::SubscriptionStatus::*;
    let t = TenantId::from("t-subs");
    assert!(
        store
            .put_subscription_if_newer(&subscription("t-subs", "sub_1", Active, 100))
            .await
            .expect("put")
    );
    assert!(
        !store
            .put_subscription_if_newer(&subscription("t-subs", "sub_1", Incomplete, 99))
            .await
            .expect("older")
    );
    assert_eq!(
        store.get_subscription(&t, "sub_1").await.expect("get").map(|s| s.status),
        Some(Active)
    );
    assert!(
        store
            .put_subscription_if_newer(&subscription("t-subs", "sub_1", PastDue, 100))
            .await
            .expect("same age")
    );
    assert!(
        store
            .put_subscription_if_newer(&subscription("t-subs", "sub_1", Canceled, 150))
            .await
            .expect("newer")
    );
    assert_eq!(
        store.get_subscription(&t, "sub_1").await.expect("get").map(|s| s.status),
        Some(Canceled)
    );
    assert!(
        store
            .put_subscription_if_newer(&subscription("t-subs", "sub_2", Trialing, 1))
            .await
            .expect("put")
    );
    let mut ids: Vec<_> =
        store.list_subscriptions(&t).await.expect("list").into_iter().map(|s| s.id).collect();
    ids.sort();
    assert_eq!(ids, ["sub_1", "sub_2"]);
    let other = TenantId::from("t-subs-other");
    assert_eq!(store.get_subscription(&other, "sub_1").await.expect("get"), None, "scoped");
    assert!(store.list_subscriptions(&other).await.expect("list").is_empty());
    let live: Vec<_> = store
        .live_subscriptions()
        .await
        .expect("live")
        .into_iter()
        .filter(|s| s.tenant_id == t)
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["sub_2"], "a canceled subscription is over");
    let stolen = subscription("t-subs-other", "sub_1", Active, 999);
    assert!(
        matches!(store.put_subscription_if_newer(&stolen).await, Err(StoreError::Conflict)),
        "ids are unique"
    );
}

pub async fn provider_events_are_queued_once(store: &dyn Store) {
    let event = |id: &str, at| crate::billing::StoredEvent {
        id: id.to_owned(),
        kind: "invoice.paid".into(),
        created: at / 1000,
        received_at: at,
        payload: format!("{{\"id\":\"{id}\"}}"),
    };
    assert!(store.record_event(&event("evt_b", 2_000)).await.expect("record"));
    assert!(store.record_event(&event("evt_a", 1_000)).await.expect("record"));
    assert!(!store.record_event(&event("evt_a", 3_000)).await.expect("again"), "once per id");
    let pending: Vec<_> =
        store.pending_events(10).await.expect("pending").into_iter().map(|e| e.id).collect();
    assert_eq!(pending, ["evt_a", "evt_b"], "oldest first");
    assert_eq!(store.pending_events(1).await.expect("pending").len(), 1, "at most the limit");
    store.finish_event("evt_a").await.expect("finish");
    let pending: Vec<_> =
        store.pending_events(10).await.expect("pending").into_iter().map(|e| e.id).collect();
    assert_eq!(pending, ["evt_b"]);
    assert!(
        !store.record_event(&event("evt_a", 4_000)).await.expect("after"),
        "a processed event stays known"
    );
    assert_eq!(store.pending_events(10).await.expect("pending").len(), 1);
}

pub async fn listings_are_global_and_deleted_by_their_tenant_only(store: &dyn Store) {
    use crate::marketplace::{ConnectAccount, Listing};
    let listing = |bot: &str, public| Listing {
        bot_id: BotId::from(bot),
        tenant_id: TenantId::from("t-creator"),
        public,
        title: "Helpful".into(),
        description: "Answers".into(),
        category: BotCategory::CustomerSupport,
        language: "en".into(),
        screenshots: vec![],
        prices: vec![],
        trial_days: 7,
        created_at: 1,
        updated_at: 1,
    };
    store.put_listing(&listing("bot-listed", true)).await.expect("put");
    store.put_listing(&listing("bot-hidden", false)).await.expect("put");
    let found = store.get_listing(&BotId::from("bot-listed")).await.expect("get");
    assert_eq!(found, Some(listing("bot-listed", true)));
    let public = store.public_listings().await.expect("public");
    assert!(public.iter().any(|l| l.bot_id.as_str() == "bot-listed"));
    assert!(
        !public.iter().any(|l| l.bot_id.as_str() == "bot-hidden"),
        "private ones are not listed"
    );
    let other = TenantId::from("t-someone-else");
    assert!(!store.delete_listing(&other, &BotId::from("bot-listed")).await.expect("delete"));
    assert!(store.get_listing(&BotId::from("bot-listed")).await.expect("get").is_some());
    assert!(
        store
            .delete_listing(&TenantId::from("t-creator"), &BotId::from("bot-listed"))
            .await
            .expect("delete")
    );
    assert_eq!(store.get_listing(&BotId::from("bot-listed")).await.expect("get"), None);

    let account = ConnectAccount {
        tenant_id: TenantId::from("t-creator"),
        id: "acct_1".into(),
        charges_enabled: false,
        payouts_enabled: false,
        details_submitted: false,
        updated_at: 1,
    };
    assert_eq!(store.connect_account(&account.tenant_id).await.expect("get"), None);
    store.put_connect_account(&account).await.expect("put");
    let enabled = ConnectAccount { charges_enabled: true, ..account.clone() };
    store.put_connect_account(&enabled).await.expect("put");
    assert_eq!(store.connect_account(&account.tenant_id).await.expect("get"), Some(enabled));
    assert_eq!(store.connect_account(&other).await.expect("get"), None);
}

pub async fn conversations_keep_status_and_visitor_sentiment(store: &dyn Store) {
    seed_conversation(store, "t-mood", "c1").await;
    let (t, c) = (TenantId::from("t-mood"), ConversationId::from("c1"));
    let mut first = message("t-mood", "c1", 1, Some("m1"));
    first.sentiment = Some(0.5);
    let mut second = message("t-mood", "c1", 2, Some("m2"));
    second.sentiment = Some(-0.25);
    let mut bot = message("t-mood", "c1", 3, None);
    (bot.sender, bot.sentiment) = (Sender::Bot, Some(1.0));
    for m in [&first, &second, &bot] {
        assert_eq!(store.append(m).await.expect("append"), Appended::Stored);
    }
    assert_eq!(store.append(&first).await.expect("again"), Appended::Duplicate(first.clone()));
    let conversation = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(conversation.sentiment_count, 2, "visitor messages only, duplicates once");
    assert!((conversation.sentiment().unwrap_or(9.0) - 0.125).abs() < 1e-6);
    assert_eq!(conversation.handling.status, ConversationStatus::Open);
    let handling = Handling {
        status: ConversationStatus::Assigned,
        assignee: Some(AgentRef { id: AccountId::from("ann"), name: "Ann".into() }),
        agent_read_seq: 2,
        ..Handling::default()
    };
    assert!(store.set_handling(&t, &c, &handling).await.expect("set"));
    let other = TenantId::from("t-mood-other");
    assert!(!store.set_handling(&other, &c, &Handling::default()).await.expect("set"));
    let conversation = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(conversation.handling, handling);
    assert_eq!(conversation.sentiment_count, 2, "a status change keeps the sentiment");
    assert_eq!(store.last_message(&t, &c).await.expect("last").map(|m| m.seq), Some(3));
    assert_eq!(store.last_message(&other, &c).await.expect("last"), None);

    let delivery = Delivery {
        status: DeliveryStatus::Sent,
        provider_ids: vec!["wamid.1".into(), "wamid.2".into()],
        error: None,
        updated_at: 5,
    };
    assert!(store.set_delivery(&t, &c, 3, "conn", &delivery).await.expect("set"));
    assert!(!store.set_delivery(&t, &c, 99, "conn", &delivery).await.expect("set"), "no seq 99");
    let last = store.last_message(&t, &c).await.expect("last").expect("exists");
    assert_eq!((last.delivery, last.text), (Some(delivery), bot.text.clone()), "text unchanged");
    // Every provider id of the message is indexed under its connection, and only that one.
    let delivered = DeliveryStatus::Delivered;
    let found = store.advance_delivery("conn", "wamid.2", delivered, None).await.expect("report");
    assert_eq!(found, Some((t.clone(), c.clone(), 3)));
    let elsewhere = store.advance_delivery("other-conn", "wamid.2", delivered, None).await;
    assert_eq!(elsewhere.expect("report"), None);
    let read = DeliveryStatus::Read;
    let moved = store.advance_delivery("conn", "wamid.1", read, None).await.expect("read");
    assert_eq!(moved, Some((t.clone(), c.clone(), 3)));
    let late = DeliveryStatus::Delivered;
    let moved = store.advance_delivery("conn", "wamid.1", late, None).await.expect("late");
    assert_eq!(moved, None, "never backwards");
    let last = store.last_message(&t, &c).await.expect("last").expect("exists");
    assert_eq!(last.delivery.map(|d| d.status), Some(DeliveryStatus::Read));
    assert_eq!(store.advance_delivery("conn", "nope", read, None).await.expect("unknown"), None);
}

pub async fn notes_stay_with_their_conversation(store: &dyn Store) {
    seed_conversation(store, "t-notes", "c1").await;
    let (t, c) = (TenantId::from("t-notes"), ConversationId::from("c1"));
    let note = |id: &str, tenant: &str| Note {
        id: id.into(),
        tenant_id: tenant.into(),
        conversation_id: c.clone(),
        author: AgentRef { id: AccountId::from("ann"), name: "Ann".into() },
        text: format!("note {id}"),
        created_at: now_ms(),
    };
    assert!(store.add_note(&note("n1", "t-notes")).await.expect("add"));
    assert!(store.add_note(&note("n2", "t-notes")).await.expect("add"));
    assert!(!store.add_note(&note("n3", "t-notes-other")).await.expect("add"), "no such conv");
    let notes = store.list_notes(&t, &c).await.expect("list");
    assert_eq!(notes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(store.list_notes(&TenantId::from("t-notes-other"), &c).await.expect("list").is_empty());
    let listed = store.list_tenant_conversations(&t, None, 10).await.expect("tenant list");
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c1"]);
    assert!(store.delete_conversation(&t, &c).await.expect("delete"));
    assert!(store.list_notes(&t, &c).await.expect("list").is_empty(), "notes go with it");
}

/// A document of `bot` in `tenant` with `status`.
pub fn document(tenant: &str, bot: &str, id: &str, status: ProcessStatus) -> Document {
    Document {
        id: id.into(),
        tenant_id: tenant.into(),
        bot_id: bot.into(),
        title: format!("doc {id}"),
        kind: DocumentType::Txt,
        source: Some(format!("{id}.txt")),
        size_bytes: 5,
        status,
        progress: 0,
        error: None,
        chunks: 0,
        created_at: 1,
        updated_at: 1,
    }
}

pub async fn documents_keep_content_and_chunks_and_queue_unfinished_work(store: &dyn Store) {
    let (ta, tb) = (TenantId::from("t-docs-a"), TenantId::from("t-docs-b"));
    let bot = BotId::from("b-docs");
    let d1 = document("t-docs-a", "b-docs", "d1", ProcessStatus::Pending);
    store.put_document(&d1, Some(b"hello")).await.expect("put");
    store
        .put_document(&document("t-docs-a", "b-docs", "d2", ProcessStatus::Pending), Some(b"x"))
        .await
        .expect("put");
    assert_eq!(store.get_document(&ta, "d1").await.expect("get"), Some(d1.clone()));
    assert_eq!(store.get_document(&tb, "d1").await.expect("get"), None, "tenant-scoped");
    assert_eq!(store.document_content(&ta, "d1").await.expect("content"), Some(b"hello".to_vec()));
    assert_eq!(store.document_content(&tb, "d1").await.expect("content"), None);
    assert_eq!(store.list_documents(&ta, &bot).await.expect("list").len(), 2);
    assert!(store.list_documents(&tb, &bot).await.expect("list").is_empty());
    let unfinished = |docs: Vec<Document>| {
        let mut ids: Vec<String> =
            docs.into_iter().filter(|d| d.tenant_id == ta).map(|d| d.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(unfinished(store.unfinished_documents().await.expect("queue")), ["d1", "d2"]);

    let chunk = |p: u32, text: &str| Chunk {
        document_id: "d1".into(),
        position: p,
        title: "t".into(),
        text: text.into(),
    };
    let done =
        Document { status: ProcessStatus::Completed, chunks: 3, progress: 100, ..d1.clone() };
    let three = [chunk(0, "a"), chunk(1, "b"), chunk(2, "c")];
    store.put_chunks(&done, &three).await.expect("chunks");
    assert_eq!(store.list_chunks(&ta, &bot).await.expect("chunks"), three.to_vec());
    assert!(store.list_chunks(&tb, &bot).await.expect("chunks").is_empty());
    assert_eq!(unfinished(store.unfinished_documents().await.expect("queue")), ["d2"]);
    // Reprocessing replaces the chunks: fewer now.
    store
        .put_chunks(&Document { chunks: 1, ..done.clone() }, &[chunk(0, "z")])
        .await
        .expect("again");
    assert_eq!(store.list_chunks(&ta, &bot).await.expect("chunks"), vec![chunk(0, "z")]);

    assert!(!store.delete_document(&tb, "d1").await.expect("delete"), "not another tenant's");
    assert!(store.delete_document(&ta, "d1").await.expect("delete"));
    assert!(!store.delete_document(&ta, "d1").await.expect("delete"));
    assert!(store.list_chunks(&ta, &bot).await.expect("chunks").is_empty(), "chunks go too");
    assert_eq!(store.document_content(&ta, "d1").await.expect("content"), None);
    store.delete_document(&ta, "d2").await.expect("delete");
    assert!(unfinished(store.unfinished_documents().await.expect("queue")).is_empty());
}

/// Runs the concurrency check ([`concurrent_appends_land_once`]) on a shared store.
pub async fn run_concurrent(store: Arc<dyn Store>) {
    concurrent_appends_land_once(store, |s| s).await;
}

/// Tasks appending to their own conversations all at once: every message lands, in seq
/// order, and is counted once. The tasks share `shared`, and `view` borrows the store from it
/// (the store itself, or one that lives in a struct with its temporary directory).
pub async fn concurrent_appends_land_once<S>(shared: Arc<S>, view: fn(&S) -> &dyn Store)
where
    S: ?Sized + Send + Sync + 'static,
{
    let store = view(&shared);
    let conversations = 16;
    let per_conversation = 25u64;
    for c in 0..conversations {
        seed_conversation(store, "t-conc", &format!("c{c}")).await;
    }
    let mut tasks = Vec::new();
    for c in 0..conversations {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let store = view(&shared);
            for seq in 1..=per_conversation {
                let m = message("t-conc", &format!("c{c}"), seq, Some(&format!("k{seq}")));
                assert_eq!(store.append(&m).await.expect("append"), Appended::Stored);
            }
        }));
    }
    for t in tasks {
        t.await.expect("append task");
    }
    for c in 0..conversations {
        let conv = ConversationId(format!("c{c}"));
        let all = store.messages_after(&"t-conc".into(), &conv, 0, 1000).await.expect("read");
        let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=per_conversation).collect::<Vec<_>>(), "concurrent appends in c{c}");
    }
    // Every concurrent append counted once.
    let rows = store.analytics(&"t-conc".into(), 0, i64::MAX).await.expect("analytics");
    let counted: i64 = rows.iter().map(|r| r.counters.visitor_messages).sum();
    assert_eq!(counted, conversations * per_conversation as i64, "concurrent appends counted");
    let started: i64 = rows.iter().map(|r| r.counters.conversations).sum();
    assert_eq!(started, conversations, "concurrent conversations counted");
}

/// A tenant, an active bot and a conversation, ready for appends.
pub async fn seed_conversation(store: &dyn Store, tenant: &str, conversation: &str) {
    let tenant_id = TenantId::from(tenant);
    store
        .put_tenant(&Tenant::new(tenant_id.clone(), tenant.into(), now_ms()))
        .await
        .expect("put_tenant");
    let bot = bot(tenant, &format!("{tenant}-bot"));
    store.put_bot(&bot).await.expect("put_bot");
    let conv = Conversation {
        id: conversation.into(),
        tenant_id,
        bot_id: bot.id,
        resume_token_sha256: "00".repeat(32),
        source: Channel::Web,
        user_agent: None,
        started_at: now_ms(),
        handling: Handling::default(),
        sentiment_sum: 0.0,
        sentiment_count: 0,
        stats: Default::default(),
    };
    match store.create_conversation(&conv).await {
        Ok(()) | Err(StoreError::ConversationExists) => {}
        Err(e) => panic!("create_conversation: {e}"),
    }
}

/// A bot of `tenant`, active, with no intents.
pub fn bot(tenant: &str, id: &str) -> Bot {
    Bot {
        id: id.into(),
        tenant_id: tenant.into(),
        name: format!("Bot {id}"),
        description: None,
        category: BotCategory::Custom,
        language: "en".into(),
        status: BotStatus::Active,
        config: BotConfig {
            welcome_message: None,
            fallback_message: "Sorry?".into(),
            personality: None,
            retention_days: None,
        },
        appearance: Appearance::default(),
        integration: BotIntegration::default(),
        installed_from: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

/// A visitor text message.
pub fn message(tenant: &str, conversation: &str, seq: u64, client_msg_id: Option<&str>) -> Message {
    Message {
        id: MessageId::generate(),
        tenant_id: tenant.into(),
        conversation_id: conversation.into(),
        seq,
        sender: Sender::User,
        kind: MessageType::Text,
        text: format!("message {seq}"),
        client_msg_id: client_msg_id.map(str::to_owned),
        intent: None,
        confidence: None,
        sentiment: None,
        prompt_tokens: None,
        agent_id: None,
        delivery: None,
        completion_tokens: None,
        created_at: now_ms(),
        content: None,
        postback: None,
        form: None,
        sources: Vec::new(),
    }
}

pub async fn tenants_round_trip(store: &dyn Store) {
    let t = Tenant::new("t-tenants".into(), "Acme".into(), 42);
    store.put_tenant(&t).await.expect("put_tenant");
    assert_eq!(store.get_tenant(&t.id).await.expect("get"), Some(t), "tenant round trip");
    assert_eq!(store.get_tenant(&"t-missing".into()).await.expect("get"), None, "missing tenant");
}

pub async fn bots_are_scoped_to_their_tenant(store: &dyn Store) {
    let a = bot("t-bots-a", "bot-a1");
    let a2 = bot("t-bots-a", "bot-a2");
    let b = bot("t-bots-b", "bot-b1");
    for x in [&a, &a2, &b] {
        store.put_bot(x).await.expect("put_bot");
    }
    assert_eq!(store.get_bot(&a.tenant_id, &a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(
        store.get_bot(&b.tenant_id, &a.id).await.expect("get"),
        None,
        "a bot must not be visible to another tenant"
    );
    assert_eq!(store.resolve_bot(&b.id).await.expect("resolve"), Some(b.clone()));
    assert_eq!(store.resolve_bot(&"bot-missing".into()).await.expect("resolve"), None);
    let mut ids: Vec<_> =
        store.list_bots(&a.tenant_id).await.expect("list").into_iter().map(|x| x.id).collect();
    ids.sort();
    assert_eq!(ids, vec![a.id.clone(), a2.id.clone()], "list_bots returns exactly the tenant's");

    let mut stolen = b.clone();
    stolen.id = a.id.clone();
    assert!(
        matches!(store.put_bot(&stolen).await, Err(StoreError::BotIdTaken)),
        "a tenant must not overwrite another tenant's bot id"
    );
    let mut renamed = a.clone();
    renamed.name = "Renamed".into();
    store.put_bot(&renamed).await.expect("update own bot");
    assert_eq!(store.get_bot(&a.tenant_id, &a.id).await.expect("get"), Some(renamed));

    assert!(!store.delete_bot(&b.tenant_id, &a2.id).await.expect("delete"), "not b's to delete");
    assert!(store.get_bot(&a2.tenant_id, &a2.id).await.expect("get").is_some());
    assert!(store.delete_bot(&a2.tenant_id, &a2.id).await.expect("delete"));
    assert_eq!(store.resolve_bot(&a2.id).await.expect("resolve"), None, "gone from the index");
    assert!(!store.delete_bot(&a2.tenant_id, &a2.id).await.expect("delete"), "deleting twice");
}

pub async fn intents_replace_as_a_set(store: &dyn Store) {
    let (t, b) = (TenantId::from("t-intents"), BotId::from("bot-intents"));
    assert!(store.list_intents(&t, &b).await.expect("list").is_empty(), "no intents yet");
    let intent = |name: &str| Intent {
        id: format!("i-{name}"),
        bot_id: b.clone(),
        name: name.into(),
        description: None,
        examples: vec![format!("say {name}")],
        response: IntentResponse { text: name.into(), quick_replies: vec![], content: None },
        actions: vec![],
    };
    store.put_intents(&t, &b, &[intent("one"), intent("two")]).await.expect("put");
    assert_eq!(store.list_intents(&t, &b).await.expect("list").len(), 2);
    store.put_intents(&t, &b, &[intent("three")]).await.expect("put");
    assert_eq!(store.list_intents(&t, &b).await.expect("list"), vec![intent("three")]);
    assert!(
        store.list_intents(&"t-other".into(), &b).await.expect("list").is_empty(),
        "intents are scoped to the tenant"
    );
}

pub async fn conversations_are_created_once_and_scoped(store: &dyn Store) {
    seed_conversation(store, "t-conv", "c-once").await;
    let got = store.get_conversation(&"t-conv".into(), &"c-once".into()).await.expect("get");
    let conv = got.expect("conversation exists");
    assert!(
        matches!(store.create_conversation(&conv).await, Err(StoreError::ConversationExists)),
        "creating an existing conversation must fail"
    );
    assert_eq!(
        store.get_conversation(&"t-other".into(), &"c-once".into()).await.expect("get"),
        None,
        "a conversation must not be visible to another tenant"
    );
    // Listing per bot, newest (highest id) first, with a cursor.
    for id in ["c-list-1", "c-list-2", "c-list-3"] {
        seed_conversation(store, "t-list", id).await;
    }
    let (t, b) = (TenantId::from("t-list"), BotId::from("t-list-bot"));
    let ids = |v: Vec<Conversation>| v.into_iter().map(|c| c.id.0).collect::<Vec<_>>();
    let first = store.list_conversations(&t, &b, None, 2).await.expect("list");
    assert_eq!(ids(first), vec!["c-list-3", "c-list-2"]);
    let next = store.list_conversations(&t, &b, Some(&"c-list-2".into()), 2).await.expect("list");
    assert_eq!(ids(next), vec!["c-list-1"]);
    let theirs = store.list_conversations(&"t-other".into(), &b, None, 10).await.expect("list");
    assert!(theirs.is_empty(), "scoped to the tenant");

    // Deleting takes the messages and the idempotency keys with it.
    let c2 = ConversationId::from("c-list-2");
    store.append(&message("t-list", "c-list-2", 1, Some("k"))).await.expect("append");
    assert!(
        !store.delete_conversation(&"t-other".into(), &c2).await.expect("delete"),
        "not theirs"
    );
    assert!(store.delete_conversation(&t, &c2).await.expect("delete"));
    assert_eq!(store.get_conversation(&t, &c2).await.expect("get"), None);
    assert!(store.messages_after(&t, &c2, 0, 10).await.expect("read").is_empty());
    assert_eq!(
        ids(store.list_conversations(&t, &b, None, 10).await.expect("list")),
        vec!["c-list-3", "c-list-1"]
    );
    seed_conversation(store, "t-list", "c-list-2").await;
    assert_eq!(
        store.append(&message("t-list", "c-list-2", 1, Some("k"))).await.expect("append"),
        Appended::Stored,
        "a recreated conversation starts clean"
    );
}

pub async fn append_orders_by_seq_and_reads_ranges(store: &dyn Store) {
    seed_conversation(store, "t-append", "c1").await;
    let (t, c) = (TenantId::from("t-append"), ConversationId::from("c1"));
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 0, "empty conversation");
    for seq in 1..=10 {
        let m = message("t-append", "c1", seq, Some(&format!("k{seq}")));
        assert_eq!(store.append(&m).await.expect("append"), Appended::Stored);
    }
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 10);
    let all = store.messages_after(&t, &c, 0, 100).await.expect("read");
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(all[2].text, "message 3", "content round trip");
    let tail = store.messages_after(&t, &c, 7, 100).await.expect("read");
    assert_eq!(tail.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![8, 9, 10], "after 7");
    let page = store.messages_after(&t, &c, 2, 3).await.expect("read");
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4, 5], "limit");
    assert!(store.messages_after(&t, &c, 10, 100).await.expect("read").is_empty(), "after last");
    assert!(store.messages_after(&t, &c, u64::MAX, 100).await.expect("read").is_empty());
    // A neighbouring conversation id must not leak into the range.
    seed_conversation(store, "t-append", "c10").await;
    let m = message("t-append", "c10", 1, None);
    store.append(&m).await.expect("append");
    assert_eq!(store.messages_after(&t, &c, 0, 100).await.expect("read").len(), 10);
}

pub async fn append_is_idempotent_by_client_msg_id(store: &dyn Store) {
    seed_conversation(store, "t-idem", "c1").await;
    seed_conversation(store, "t-idem", "c2").await;
    let (t, c) = (TenantId::from("t-idem"), ConversationId::from("c1"));
    let first = message("t-idem", "c1", 1, Some("same"));
    assert_eq!(store.append(&first).await.expect("append"), Appended::Stored);
    let mut again = message("t-idem", "c1", 2, Some("same"));
    again.text = "different text".into();
    assert_eq!(
        store.append(&again).await.expect("append"),
        Appended::Duplicate(first.clone()),
        "a duplicate client_msg_id returns the stored message"
    );
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 1, "nothing stored twice");
    let other_conv = message("t-idem", "c2", 1, Some("same"));
    assert_eq!(
        store.append(&other_conv).await.expect("append"),
        Appended::Stored,
        "client_msg_id is unique per conversation, not globally"
    );
    let no_id = message("t-idem", "c1", 2, None);
    assert_eq!(store.append(&no_id).await.expect("append"), Appended::Stored);
    // Looked up by client id: in its conversation and tenant only.
    let found = store.message_by_client_id(&t, &c, "same").await.expect("lookup");
    assert_eq!(found, Some(first), "found by its client id");
    let c2 = ConversationId::from("c2");
    let found = store.message_by_client_id(&t, &c2, "same").await.expect("lookup");
    assert_eq!(found, Some(other_conv), "per conversation");
    assert_eq!(store.message_by_client_id(&t, &c, "never").await.expect("lookup"), None);
    let other_tenant = TenantId::from("t-other");
    let found = store.message_by_client_id(&other_tenant, &c, "same").await.expect("lookup");
    assert_eq!(found, None, "another tenant sees nothing");
}

pub async fn append_refuses_seq_conflicts_and_gaps(store: &dyn Store) {
    seed_conversation(store, "t-seq", "c1").await;
    let (t, c) = (TenantId::from("t-seq"), ConversationId::from("c1"));
    store.append(&message("t-seq", "c1", 1, None)).await.expect("append");
    assert!(
        matches!(
            store.append(&message("t-seq", "c1", 1, None)).await,
            Err(StoreError::SeqConflict(1))
        ),
        "a taken seq is refused"
    );
    assert!(
        matches!(
            store.append(&message("t-seq", "c1", 5, None)).await,
            Err(StoreError::SeqGap { last: 1, got: 5 })
        ),
        "a gap is refused"
    );
    assert!(
        matches!(
            store.append(&message("t-seq", "c1", 0, None)).await,
            Err(StoreError::SeqConflict(0))
        ),
        "seq 0 is never valid"
    );
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 1, "refusals wrote nothing");
    let stored = store.messages_after(&t, &c, 0, 10).await.expect("read");
    assert_eq!(stored.len(), 1);
}

pub async fn append_needs_an_existing_conversation_of_that_tenant(store: &dyn Store) {
    seed_conversation(store, "t-owner", "c-owned").await;
    seed_conversation(store, "t-intruder", "c-mine").await;
    assert!(
        matches!(
            store.append(&message("t-intruder", "c-owned", 1, None)).await,
            Err(StoreError::ConversationNotFound)
        ),
        "appending to another tenant's conversation id must fail"
    );
    assert!(
        matches!(
            store.append(&message("t-owner", "c-nope", 1, None)).await,
            Err(StoreError::ConversationNotFound)
        ),
        "appending to a missing conversation must fail"
    );
    assert_eq!(
        store.last_seq(&"t-owner".into(), &"c-owned".into()).await.expect("last_seq"),
        0,
        "the owner's conversation is untouched"
    );
}

/// An owner account of `tenant`.
pub fn account(tenant: &str, id: &str, email: &str) -> Account {
    Account {
        id: id.into(),
        tenant_id: tenant.into(),
        email: email.into(),
        name: "Ann".into(),
        company: None,
        account_type: AccountType::Individual,
        role: Role::Owner,
        password_hash: "$argon2id$stub".into(),
        email_verified: false,
        created_at: now_ms(),
        totp: None,
        session_epoch: 0,
        version: 0,
    }
}

pub async fn accounts_have_unique_emails_and_are_scoped(store: &dyn Store) {
    let a = account("t-acc-a", "acc-1", "Ann@Example.com");
    store.create_account(&a).await.expect("create");
    let found = store.account_by_email("ann@example.COM").await.expect("by email").expect("found");
    assert_eq!(found.id, a.id, "email lookup ignores case");
    assert_eq!(found.email, "ann@example.com", "stored lower-cased");
    assert!(
        matches!(
            store.create_account(&account("t-acc-b", "acc-2", "ANN@example.com")).await,
            Err(StoreError::EmailTaken)
        ),
        "an email is unique across tenants"
    );
    assert!(store.get_account(&"t-acc-a".into(), &"acc-1".into()).await.expect("get").is_some());
    assert_eq!(
        store.get_account(&"t-acc-b".into(), &"acc-1".into()).await.expect("get"),
        None,
        "an account is not visible to another tenant"
    );
    assert_eq!(store.account_by_email("nobody@example.com").await.expect("lookup"), None);
    let mut verified = found.clone();
    verified.email_verified = true;
    store.update_account(&verified).await.expect("update");
    let reread = store.get_account(&"t-acc-a".into(), &"acc-1".into()).await.expect("get");
    assert_eq!(reread.map(|a| a.email_verified), Some(true), "update persisted");
    store.create_account(&account("t-acc-a", "acc-3", "bob@example.com")).await.expect("create");
    let mut ids: Vec<_> = store
        .list_accounts(&"t-acc-a".into())
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![AccountId::from("acc-1"), AccountId::from("acc-3")],
        "exactly the tenant's"
    );
    assert!(!store.delete_account(&"t-acc-b".into(), &"acc-3".into()).await.expect("delete"));
    assert!(store.delete_account(&"t-acc-a".into(), &"acc-3".into()).await.expect("delete"));
    assert_eq!(store.account_by_email("bob@example.com").await.expect("lookup"), None);
    store
        .create_account(&account("t-acc-b", "acc-4", "bob@example.com"))
        .await
        .expect("the email is free again");
}

pub async fn refresh_tokens_are_single_use_and_revoked_by_family(store: &dyn Store) {
    let token = |digest: &str, family: &str| RefreshToken {
        digest: digest.into(),
        account_id: "acc-r".into(),
        tenant_id: "t-refresh".into(),
        family: family.into(),
        expires_at: now_ms() + 60_000,
        used: false,
        session_epoch: 0,
    };
    store.put_refresh_token(&token("d1", "fam-1")).await.expect("put");
    store.put_refresh_token(&token("d2", "fam-1")).await.expect("put");
    store.put_refresh_token(&token("d3", "fam-2")).await.expect("put");
    let first = store.use_refresh_token("d1").await.expect("use").expect("exists");
    assert!(!first.used, "the first use sees an unused token");
    let second = store.use_refresh_token("d1").await.expect("use").expect("exists");
    assert!(second.used, "the second use is detected");
    assert_eq!(store.use_refresh_token("nope").await.expect("use"), None);
    store.revoke_refresh_family("fam-1").await.expect("revoke");
    assert_eq!(store.use_refresh_token("d2").await.expect("use"), None, "family revoked");
    assert!(
        store.use_refresh_token("d3").await.expect("use").is_some(),
        "another family is untouched"
    );
    store.put_refresh_token(&token("d4", "fam-3")).await.expect("put");
    store.revoke_account_sessions(&"t-refresh".into(), &"acc-r".into()).await.expect("revoke");
    assert_eq!(store.use_refresh_token("d4").await.expect("use"), None, "every session ended");
}

/// Keys are found by digest, listed per tenant, keep who minted them, and are revoked.
pub async fn api_keys_are_found_by_digest_and_listed_per_tenant(store: &dyn Store) {
    let key = |tenant: &str, id: &str, digest: &str| ApiKey {
        id: id.into(),
        tenant_id: tenant.into(),
        name: "ci".into(),
        prefix: "pk_abcd".into(),
        digest: digest.into(),
        scopes: vec!["bots:read".into()],
        created_at: 1_000,
        last_used_at: None,
        revoked: false,
        created_by: Some("acc-maker".into()),
    };
    store.put_api_key(&key("t-keys-a", "k1", "dig-1")).await.expect("put");
    store
        .put_api_key(&ApiKey { created_by: None, ..key("t-keys-b", "k2", "dig-2") })
        .await
        .expect("put");
    let found = store.api_key_by_digest("dig-1").await.expect("lookup").expect("found");
    assert_eq!(found, key("t-keys-a", "k1", "dig-1"), "as put, its maker too");
    assert_eq!(
        store.api_key_by_digest("dig-2").await.expect("lookup").expect("found").created_by,
        None
    );
    assert_eq!(store.api_key_by_digest("dig-x").await.expect("lookup"), None);
    let listed = store.list_api_keys(&"t-keys-a".into()).await.expect("list");
    assert_eq!(listed, vec![found]);
    assert!(store.revoke_api_key(&"t-keys-a".into(), "k1").await.expect("revoke"));
    let revoked = store.api_key_by_digest("dig-1").await.expect("lookup").expect("found");
    assert!(revoked.revoked);
    assert_eq!(revoked.created_by, Some("acc-maker".into()), "revocation changes nothing else");
}

pub async fn one_time_tokens_are_taken_once(store: &dyn Store) {
    let token = OneTimeToken {
        digest: "ott-1".into(),
        kind: OneTimeKind::PasswordReset,
        account_id: "acc-o".into(),
        tenant_id: "t-ott".into(),
        expires_at: now_ms() + 60_000,
        email: None,
        role: None,
    };
    store.put_one_time_token(&token).await.expect("put");
    assert_eq!(store.take_one_time_token("ott-1").await.expect("take"), Some(token));
    assert_eq!(store.take_one_time_token("ott-1").await.expect("take"), None, "single use");
    assert_eq!(store.take_one_time_token("ott-missing").await.expect("take"), None);
}

// ---- accounts, API keys and invitations: no change undoes another ----------------------------

/// An update writes only over the version it read: a stale copy (read before another write)
/// is refused with `Conflict` and changes nothing; concurrent read-modify-write loops lose no
/// change.
pub async fn account_updates_are_compare_and_set(store: &dyn Store) {
    let (t, id) = (TenantId::from("t-cas"), AccountId::from("acc-cas"));
    let member = Account { role: Role::Agent, ..account("t-cas", "acc-cas", "cas@example.com") };
    store.create_account(&member).await.expect("create");
    let read = || async { store.get_account(&t, &id).await.expect("get").expect("exists") };
    let (first, stale) = (read().await, read().await);
    assert_eq!(first.version, 0, "a new account is at version 0");
    let reset = Account { password_hash: "new".into(), session_epoch: 1, ..first };
    store.update_account(&reset).await.expect("the first writer wins");
    let enrolled = Account { email_verified: true, ..stale };
    assert!(
        matches!(store.update_account(&enrolled).await, Err(StoreError::Conflict)),
        "a write over a stale read is refused"
    );
    let now = read().await;
    assert_eq!(
        (now.password_hash.as_str(), now.session_epoch, now.email_verified, now.version),
        ("new", 1, false, 1),
        "the refused write changed nothing"
    );
    // Concurrent read-modify-write loops: every increment lands once.
    let bump = || async {
        loop {
            let mut a = read().await;
            a.session_epoch += 1;
            match store.update_account(&a).await {
                Ok(()) => return,
                Err(StoreError::Conflict) => continue,
                Err(e) => panic!("update: {e}"),
            }
        }
    };
    futures_util::future::join_all((0..8).map(|_| bump())).await;
    let after = read().await;
    assert_eq!((after.session_epoch, after.version), (9, 9), "no increment lost");
    assert!(store.delete_account(&t, &id).await.expect("delete"));
    assert!(
        matches!(store.update_account(&after).await, Err(StoreError::Conflict)),
        "an update does not bring a deleted account back"
    );
    assert_eq!(store.get_account(&t, &id).await.expect("get"), None);
}

/// Two owners taking the owner role from each other at once (demotion or removal), round
/// after round: one of them succeeds, the other is refused with `LastOwner`; an owner is left.
pub async fn a_tenant_keeps_an_owner_whatever_the_race(store: &dyn Store) {
    for round in 0..4 {
        let t = TenantId(format!("t-owners-{round}"));
        let owner =
            |n: u32| account(t.as_str(), &format!("own-{n}"), &format!("o{n}-{round}@x.io"));
        for n in 0..2 {
            store.create_account(&owner(n)).await.expect("create");
        }
        let get = |n: u32| {
            let t = t.clone();
            async move {
                let id = AccountId(format!("own-{n}"));
                store.get_account(&t, &id).await.expect("get").expect("exists")
            }
        };
        let (a, b) = (get(0).await, get(1).await);
        let demote = |x: Account| async move {
            store.update_account(&Account { role: Role::Admin, ..x }).await
        };
        let outcomes = match round % 2 {
            0 => tokio::join!(demote(a), demote(b)),
            _ => tokio::join!(demote(a), store.delete_account_if_unchanged(&b)),
        };
        let refused = [&outcomes.0, &outcomes.1]
            .iter()
            .filter(|o| matches!(o, Err(StoreError::LastOwner)))
            .count();
        assert!(outcomes.0.is_ok() || outcomes.1.is_ok(), "round {round}: {outcomes:?}");
        assert_eq!(refused, 1, "round {round}: one of them is refused: {outcomes:?}");
        let left = store.list_accounts(&t).await.expect("list");
        assert_eq!(left.iter().filter(|a| a.role == Role::Owner).count(), 1, "round {round}");
        let last = left.iter().find(|a| a.role == Role::Owner).expect("the owner");
        assert!(
            matches!(store.delete_account(&t, &last.id).await, Err(StoreError::LastOwner)),
            "the last owner cannot be deleted"
        );
        assert!(matches!(
            store.delete_account_if_unchanged(last).await,
            Err(StoreError::LastOwner)
        ));
        let demoted = Account { role: Role::Viewer, ..last.clone() };
        assert!(matches!(store.update_account(&demoted).await, Err(StoreError::LastOwner)));
    }
    // A member whose record changed since it was read is not removed on that read.
    let t = TenantId::from("t-owners-stale");
    for (id, role) in [("o", Role::Owner), ("m", Role::Agent)] {
        let a = Account { role, ..account(t.as_str(), id, &format!("{id}@stale.io")) };
        store.create_account(&a).await.expect("create");
    }
    let m = store.get_account(&t, &"m".into()).await.expect("get").expect("exists");
    store.update_account(&Account { role: Role::Admin, ..m.clone() }).await.expect("promote");
    assert!(matches!(store.delete_account_if_unchanged(&m).await, Err(StoreError::Conflict)));
    let m = store.get_account(&t, &"m".into()).await.expect("get").expect("still there");
    store.delete_account_if_unchanged(&m).await.expect("removed as it is now");
    assert_eq!(store.get_account(&t, &"m".into()).await.expect("get"), None);
    assert_eq!(store.account_by_email("m@stale.io").await.expect("lookup"), None, "email freed");
}

/// Revocation and last use change one field each: however they interleave, a revoked key
/// stays revoked and keeps the latest use.
pub async fn api_key_revocation_survives_last_use_writes(store: &dyn Store) {
    let t = TenantId::from("t-key-race");
    let key = ApiKey {
        id: "k-race".into(),
        tenant_id: t.clone(),
        name: "ci".into(),
        prefix: "pk_race".into(),
        digest: "dig-race".into(),
        scopes: vec!["bots:read".into()],
        created_at: 1_000,
        last_used_at: None,
        revoked: false,
        created_by: None,
    };
    store.put_api_key(&key).await.expect("put");
    let touches = (0..16).map(|i| store.touch_api_key(&t, "k-race", 2_000 + i));
    let (revoked, touched) =
        tokio::join!(store.revoke_api_key(&t, "k-race"), futures_util::future::join_all(touches));
    assert!(revoked.expect("revoke"), "the key existed");
    assert!(touched.iter().all(Result::is_ok));
    store.touch_api_key(&t, "k-race", 1_500).await.expect("an older use");
    let found = store.api_key_by_digest("dig-race").await.expect("lookup").expect("found");
    assert!(found.revoked, "no last-use write undoes a revocation");
    assert_eq!(found.last_used_at, Some(2_015), "the latest use is kept");
    let listed = store.list_api_keys(&t).await.expect("list");
    assert_eq!(listed, vec![found], "listed as found");
    assert!(!store.revoke_api_key(&t, "k-missing").await.expect("revoke"), "no such key");
    store.touch_api_key(&t, "k-missing", 3_000).await.expect("touching nothing");
    assert!(!store.revoke_api_key(&"t-other".into(), "k-race").await.expect("revoke"));
    assert_eq!(store.list_api_keys(&t).await.expect("list").len(), 1, "nothing created");
}

/// Invitations are listed per tenant, revoked, and taken (accepted) once: of a take and a
/// revocation racing, exactly one gets the invitation.
pub async fn invitations_are_listed_revoked_and_taken_once(store: &dyn Store) {
    let now = now_ms();
    let invitation = |tenant: &str, id: &str| Invitation {
        id: id.into(),
        tenant_id: tenant.into(),
        digest: format!("inv-digest-{tenant}-{id}"),
        email: format!("{id}@example.com"),
        role: Role::Agent,
        invited_by: "acc-inviter".into(),
        created_at: now,
        expires_at: now + 3_600_000,
    };
    let (ta, tb) = (TenantId::from("t-inv-a"), TenantId::from("t-inv-b"));
    for (t, id) in [("t-inv-a", "i1"), ("t-inv-a", "i2"), ("t-inv-a", "i3"), ("t-inv-b", "i1")] {
        store.put_invitation(&invitation(t, id)).await.expect("put");
    }
    let mut ids: Vec<String> =
        store.list_invitations(&ta).await.expect("list").into_iter().map(|i| i.id).collect();
    ids.sort();
    assert_eq!(ids, ["i1", "i2", "i3"], "exactly the tenant's");
    assert_eq!(store.list_invitations(&tb).await.expect("list"), vec![invitation("t-inv-b", "i1")]);

    let taken = store.take_invitation("inv-digest-t-inv-a-i1").await.expect("take");
    assert_eq!(taken.map(|i| i.id), Some("i1".into()));
    assert_eq!(store.take_invitation("inv-digest-t-inv-a-i1").await.expect("take"), None, "once");
    assert_eq!(store.delete_invitation(&ta, "i1").await.expect("revoke"), None, "already taken");
    assert_eq!(store.delete_invitation(&tb, "i2").await.expect("revoke"), None, "not B's");
    let revoked = store.delete_invitation(&ta, "i2").await.expect("revoke");
    assert_eq!(revoked.map(|i| i.id), Some("i2".into()));
    assert_eq!(store.take_invitation("inv-digest-t-inv-a-i2").await.expect("take"), None);
    let (taken, revoked) = tokio::join!(
        store.take_invitation("inv-digest-t-inv-a-i3"),
        store.delete_invitation(&ta, "i3")
    );
    let winners = [taken.expect("take").is_some(), revoked.expect("revoke").is_some()];
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "one of them: {winners:?}");
    assert!(store.list_invitations(&ta).await.expect("list").is_empty());
    assert_eq!(store.list_invitations(&tb).await.expect("list").len(), 1, "B's untouched");
}

/// An invitation or a one-time token is read by its digest without being taken: it can be
/// read again, then taken once; after that, or for an unknown digest, nothing is found.
pub async fn links_are_read_without_being_taken(store: &dyn Store) {
    let now = now_ms();
    let invitation = Invitation {
        id: "i-peek".into(),
        tenant_id: "t-peek".into(),
        digest: "inv-digest-peek".into(),
        email: "peek@example.com".into(),
        role: Role::Admin,
        invited_by: "acc-inviter".into(),
        created_at: now,
        expires_at: now + 3_600_000,
    };
    store.put_invitation(&invitation).await.expect("put");
    for _ in 0..2 {
        let read = store.invitation_by_digest("inv-digest-peek").await.expect("read");
        assert_eq!(read.as_ref(), Some(&invitation), "read, not taken");
    }
    assert_eq!(store.take_invitation("inv-digest-peek").await.expect("take"), Some(invitation));
    assert_eq!(store.invitation_by_digest("inv-digest-peek").await.expect("read"), None, "taken");
    assert_eq!(store.invitation_by_digest("inv-digest-none").await.expect("read"), None);

    let token = OneTimeToken {
        digest: "ott-peek".into(),
        kind: OneTimeKind::PasswordReset,
        account_id: "acc-peek".into(),
        tenant_id: "t-peek".into(),
        expires_at: now + 60_000,
        email: None,
        role: None,
    };
    store.put_one_time_token(&token).await.expect("put");
    for _ in 0..2 {
        let read = store.one_time_token_by_digest("ott-peek").await.expect("read");
        assert_eq!(read.as_ref(), Some(&token), "read, not taken");
    }
    assert_eq!(store.take_one_time_token("ott-peek").await.expect("take"), Some(token));
    assert_eq!(store.one_time_token_by_digest("ott-peek").await.expect("read"), None, "taken");
    assert_eq!(store.one_time_token_by_digest("ott-none").await.expect("read"), None);
}

/// A channel contact and a form's fields index the person they name; another tenant's are never
/// found; deleting the conversation forgets its keys and frees the contact.
pub async fn a_person_is_found_by_contact_and_form_and_forgotten_with_the_conversation(
    store: &dyn Store,
) {
    let t = TenantId::from("t-subjects");
    let other = TenantId::from("t-subjects-other");
    let conversation = |tenant: &TenantId, id: &str, source| Conversation {
        id: id.into(),
        tenant_id: tenant.clone(),
        bot_id: BotId::from("b-subjects"),
        resume_token_sha256: String::new(),
        source,
        user_agent: None,
        started_at: 1,
        handling: Handling::default(),
        sentiment_sum: 0.0,
        sentiment_count: 0,
        stats: Default::default(),
    };
    let contact = |id: &'static str| {
        let fresh = conversation(&t, id, Channel::Sms);
        async move { store.contact_conversation("sms-subjects", "+39 333 1234567", &fresh).await }
    };
    let sms = contact("c-sms").await.expect("contact");
    store.create_conversation(&conversation(&t, "c-web", Channel::Web)).await.expect("web");
    let form = std::collections::BTreeMap::from([
        ("email".to_owned(), "Mario.Rossi@example.com".to_owned()),
        ("phone".to_owned(), "393331234567".to_owned()),
    ]);
    assert!(store.merge_user_data(&t, &ConversationId::from("c-web"), &form).await.expect("form"));
    store.create_conversation(&conversation(&other, "c-other", Channel::Web)).await.expect("o");
    assert!(
        store.merge_user_data(&other, &ConversationId::from("c-other"), &form).await.expect("f")
    );

    let found = |tenant: TenantId, key: &'static str| async move {
        let mut ids = store.subject_conversations(&tenant, key).await.expect("find");
        ids.sort();
        ids.into_iter().map(|c| c.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(found(t.clone(), "phone:393331234567").await, ["c-sms", "c-web"]);
    assert_eq!(found(t.clone(), "email:mario.rossi@example.com").await, ["c-web"]);
    assert_eq!(found(other.clone(), "phone:393331234567").await, ["c-other"]);
    assert!(found(t.clone(), "email:someone.else@example.com").await.is_empty());

    assert!(store.delete_conversation(&t, &sms.id).await.expect("delete"));
    assert!(store.delete_conversation(&t, &ConversationId::from("c-web")).await.expect("delete"));
    assert!(found(t.clone(), "phone:393331234567").await.is_empty());
    assert!(found(t.clone(), "email:mario.rossi@example.com").await.is_empty());
    assert_eq!(found(other, "phone:393331234567").await, ["c-other"], "another tenant's stay");
    // The contact is free: its next message starts a new conversation.
    let again = contact("c-sms2").await.expect("contact");
    assert_eq!(again.id.as_str(), "c-sms2");
    assert_eq!(found(t, "phone:393331234567").await, ["c-sms2"]);
    store.reclaim_deleted().await.expect("reclaim");
}

/// Audit entries are kept per tenant, once per id, and read newest first a page at a time.
pub async fn the_audit_log_is_appended_per_tenant_and_read_newest_first(store: &dyn Store) {
    use crate::audit::{AuditActor, AuditEntry};
    let t = TenantId::from("t-audit");
    let entry = |tenant: &TenantId, n: u32| AuditEntry {
        id: format!("0190-audit-{n:04}"),
        tenant_id: tenant.clone(),
        at: i64::from(n),
        actor: AuditActor::Account("a1".into()),
        ip: Some("192.0.2.1".into()),
        action: "PATCH /api/bots/{id}".into(),
        target: format!("/api/bots/b{n}"),
        details: serde_json::json!({"status": 200}),
    };
    for n in 1..=5 {
        store.append_audit(&entry(&t, n)).await.expect("append");
    }
    store.append_audit(&entry(&t, 3)).await.expect("again: kept once");
    store.append_audit(&entry(&TenantId::from("t-audit-other"), 9)).await.expect("other");
    let ids = |page: Vec<AuditEntry>| page.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let first = store.list_audit(&t, None, 2).await.expect("list");
    assert_eq!(first[0], entry(&t, 5), "whole entries");
    assert_eq!(ids(first), ["0190-audit-0005", "0190-audit-0004"]);
    let next = store.list_audit(&t, Some("0190-audit-0004"), 10).await.expect("list");
    assert_eq!(ids(next), ["0190-audit-0003", "0190-audit-0002", "0190-audit-0001"]);
    assert!(
        store.list_audit(&TenantId::from("t-audit-none"), None, 10).await.expect("l").is_empty()
    );
}

/// A reversible stand-in for the master-key sealer: tags each value with its context and key
/// id, so a value opened for another record, or sealed under an unknown key, is refused.
/// Its key id is the one it seals under; it opens values of either id.
#[derive(Debug)]
struct TestSealer(&'static str);

impl crate::sealing::Sealer for TestSealer {
    fn seal(&self, context: &str, plain: &[u8]) -> String {
        let hex: String = plain.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{}.{context}|{hex}", crate::sealing::PREFIX, self.0)
    }

    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, crate::sealing::SealError> {
        use crate::sealing::SealError;
        let kid = crate::sealing::key_of(sealed).unwrap_or_default();
        let rest = ["pk1.test.", "pk1.test2."]
            .iter()
            .find_map(|p| sealed.strip_prefix(p))
            .ok_or(SealError::UnknownKey(kid.into()))?;
        let (ctx, hex) = rest.split_once('|').ok_or(SealError::Unreadable)?;
        if ctx != context || hex.len() % 2 == 1 {
            return Err(SealError::Unreadable);
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| SealError::Unreadable))
            .collect()
    }

    fn current_key(&self) -> String {
        self.0.into()
    }
}

/// Accounts' TOTP secrets, workspaces' LLM keys and intents' webhook secrets come back as they
/// were written once the store seals them; every workspace is listed; the key check is kept.
pub async fn secrets_read_back_as_written_through_the_sealer(store: &dyn Store) {
    store.use_sealer(Arc::new(TestSealer("test")));
    let mut tenant = Tenant::new("t-sealed".into(), "Sealed".into(), 1);
    tenant.llm = Some(TenantLlm {
        base_url: "https://llm.example.com/v1".into(),
        model: "m".into(),
        api_key: "sk-sealed-llm-key".into(),
    });
    store.put_tenant(&tenant).await.expect("put_tenant");
    assert_eq!(store.get_tenant(&tenant.id).await.expect("get"), Some(tenant.clone()));
    assert!(store.list_tenants().await.expect("list").contains(&tenant.id), "listed");

    let mut member = account("t-sealed", "acc-sealed", "sealed@example.com");
    member.totp = Some(TotpState {
        secret_base32: "JBSWY3DPEHPK3PXP".into(),
        enabled: false,
        last_step: 0,
        recovery_digests: vec![],
    });
    store.create_account(&member).await.expect("create");
    let read = store.get_account(&member.tenant_id, &member.id).await.expect("get");
    assert_eq!(read.as_ref().and_then(|a| a.totp.clone()), member.totp.clone(), "TOTP secret");
    let mut enabled = read.expect("exists");
    if let Some(totp) = enabled.totp.as_mut() {
        totp.enabled = true;
    }
    store.update_account(&enabled).await.expect("update");
    let by_email = store.account_by_email("sealed@example.com").await.expect("by email");
    assert_eq!(
        by_email.and_then(|a| a.totp).map(|t| (t.secret_base32, t.enabled)),
        Some(("JBSWY3DPEHPK3PXP".to_owned(), true))
    );
    let listed = store.list_accounts(&member.tenant_id).await.expect("list");
    assert_eq!(listed[0].totp.as_ref().map(|t| t.secret_base32.as_str()), Some("JBSWY3DPEHPK3PXP"));

    let (t, b) = (TenantId::from("t-sealed"), BotId::from("bot-sealed"));
    let hooked = Intent {
        id: "i-hook".into(),
        bot_id: b.clone(),
        name: "hook".into(),
        description: None,
        examples: vec!["hook me".into()],
        response: IntentResponse { text: "hooked".into(), quick_replies: vec![], content: None },
        actions: vec![IntentAction::Webhook {
            url: "https://hooks.example.com/x".into(),
            secret: "whsec-sealed".into(),
        }],
    };
    store.put_intents(&t, &b, std::slice::from_ref(&hooked)).await.expect("put_intents");
    assert_eq!(store.list_intents(&t, &b).await.expect("list"), vec![hooked.clone()]);

    use crate::sealing::Sealer as _;
    let check = TestSealer("test").seal(crate::sealing::CHECK_CONTEXT, crate::sealing::CHECK_TEXT);
    store.put_seal_check(&check).await.expect("put check");
    assert_eq!(store.seal_check().await.expect("check"), Some(check));

    // A new key: one pass writes each sealed record again (and nothing else), the next none.
    // (Other checks' channel connections hold made-up secrets: counted unreadable, left alone.)
    store.use_sealer(Arc::new(TestSealer("test2")));
    let done = store.reseal_all().await.expect("reseal");
    if !format!("{store:?}").starts_with("MemoryStore") {
        assert_eq!((done.workspaces, done.accounts, done.intent_sets), (1, 1, 1), "{done:?}");
        let again = store.reseal_all().await.expect("reseal again");
        assert_eq!((again.workspaces, again.accounts, again.intent_sets), (0, 0, 0), "{again:?}");
    }
    assert_eq!(store.get_tenant(&tenant.id).await.expect("get"), Some(tenant));
    assert_eq!(store.list_intents(&t, &b).await.expect("list"), vec![hooked]);
    let read = store.account_by_email("sealed@example.com").await.expect("by email");
    assert_eq!(
        read.and_then(|a| a.totp).map(|t| t.secret_base32),
        Some("JBSWY3DPEHPK3PXP".to_owned())
    );
}
