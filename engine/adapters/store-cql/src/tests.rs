//! Against a real cluster: set `PARLA_TEST_CQL=host:port` (`scripts/services.sh start
//! cassandra` prints it). Each run creates a keyspace of its own and drops it at the end.

use std::{sync::Arc, time::Instant};

use super::*;
use parla_domain::analytics::{Counters, HOUR_MS};
use parla_domain::conformance::{self, message, seed_conversation};
use parla_domain::model::{ConversationStatus, Resolution};

/// The settings of a throwaway keyspace on the test cluster, or `None` (skip) when none is set.
fn test_settings() -> Option<StoreSettings> {
    let node = std::env::var("PARLA_TEST_CQL").ok().filter(|n| !n.trim().is_empty())?;
    let mut settings = parla_config::Settings::defaults().expect("default settings").store;
    settings.backend = "cql".into();
    settings.cql_nodes = node.split(',').map(|n| n.trim().to_owned()).collect();
    settings.cql_keyspace = format!("parla_test_{}", uuid::Uuid::new_v4().simple());
    settings.cql_replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}".into();
    // A test node shares two cores with the build: be patient.
    settings.cql_timeout_ms = 20_000;
    Some(settings)
}

async fn drop_keyspace(settings: &StoreSettings) {
    let session = build_session(settings, None, Duration::from_secs(120)).await.expect("session");
    let drop = format!("DROP KEYSPACE IF EXISTS {}", settings.cql_keyspace);
    session.query_unpaged(drop, ()).await.expect("drop keyspace");
    let left = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (settings.cql_keyspace.as_str(),),
        )
        .await
        .expect("keyspaces")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    assert_eq!(left, 0, "keyspace {} dropped", settings.cql_keyspace);
    let version = session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .expect("version")
        .into_rows_result()
        .expect("rows")
        .maybe_first_row::<(String,)>()
        .expect("row")
        .map(|(v,)| v);
    println!("server release_version: {version:?}");
}

/// One keyspace for the whole run (creating one costs seconds of DDL), dropped whatever the
/// outcome: the checks run in a task so a failed assertion still reaches the cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cql_store_passes_the_conformance_suite_and_its_own_checks() {
    let Some(settings) = test_settings() else {
        println!("skipped: PARLA_TEST_CQL is not set (scripts/services.sh start cassandra)");
        return;
    };
    let started = Instant::now();
    let checks = tokio::spawn({
        let settings = settings.clone();
        async move { Box::pin(run_checks(settings)).await }
    });
    let outcome = checks.await;
    drop_keyspace(&settings).await;
    println!("cql checks took {:.1} s", started.elapsed().as_secs_f64());
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn run_checks(settings: StoreSettings) {
    let t = Instant::now();
    let missing = Box::pin(CqlStore::connect(&settings)).await.expect_err("no schema yet");
    assert!(missing.to_string().contains("parla migrate"), "{missing}");
    // Two migrators at once: the lock lets one apply, the other then finds nothing to do.
    let (first, second) = tokio::join!(migrate(&settings), migrate(&settings));
    let applied = [first.expect("migrate"), second.expect("migrate")].concat();
    let shipped: Vec<&str> = migrate::MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(applied, shipped, "applied once, in order");
    assert!(migrate(&settings).await.expect("migrate again").is_empty(), "nothing left to apply");
    // A migrator that added a column and died before recording it: the next one finds the
    // column there and records the migration (a plain `ADD` would fail on the existing column).
    let raw = build_session(&settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    raw.query_unpaged("DELETE FROM schema_migrations WHERE version = '0002_user_data'", ())
        .await
        .expect("forget 0002");
    assert_eq!(migrate(&settings).await.expect("re-migrate"), ["0002_user_data"], "re-applied");
    println!("migrations: {:.1} s", t.elapsed().as_secs_f64());

    let store = Box::pin(CqlStore::connect(&settings)).await.expect("connect");
    let t = Instant::now();
    conformance::run_all(&store).await;
    println!("conformance::run_all: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    conformance::run_concurrent(Arc::new(store.clone())).await;
    println!("conformance::run_concurrent: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    messages_cross_bucket_boundaries_in_order(&store).await;
    half_done_operations_are_completed_by_the_next_call(&store, &settings).await;
    duplicates_are_found_by_marker_or_in_the_tail(&store, &settings).await;
    global_lookups_carry_their_tenant_and_scoped_reads_do_not_leak(&store).await;
    atomic_rules_hold_under_concurrency(&store).await;
    a_conversation_from_before_analytics_counts_from_its_next_write(&store, &settings).await;
    counts_hold_when_appends_and_handling_race(&store).await;
    rows_from_before_0005_are_changed_compare_and_set(&store, &settings).await;
    waiting_conversations_from_before_0004_are_indexed_by_it(&store, &settings).await;
    println!("adapter checks: {:.1} s", t.elapsed().as_secs_f64());
}

/// A conversation that was waiting for an agent before migration 0004 (no index row) is in the
/// index once 0004 has run: its data step indexes what already needs an agent.
async fn waiting_conversations_from_before_0004_are_indexed_by_it(
    store: &CqlStore,
    settings: &StoreSettings,
) {
    let t = TenantId::from("t-pre-0004");
    seed_conversation(store, "t-pre-0004", "c-waiting").await;
    seed_conversation(store, "t-pre-0004", "c-open").await;
    let escalated = Handling {
        status: ConversationStatus::Escalated,
        waiting_since: Some(1),
        ..Handling::default()
    };
    assert!(store.set_handling(&t, &"c-waiting".into(), &escalated).await.expect("escalate"));
    // As it was before 0004: no index.
    let raw = build_session(settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    raw.query_unpaged("TRUNCATE conversations_attention", ()).await.expect("no index");
    raw.query_unpaged("DELETE FROM schema_migrations WHERE version = '0004_attention'", ())
        .await
        .expect("before 0004");
    assert!(store.attention_conversations(&t, None, 10).await.expect("read").is_empty());
    assert_eq!(migrate(settings).await.expect("migrate"), ["0004_attention"]);
    let found = store.attention_conversations(&t, None, 10).await.expect("read");
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c-waiting"], "indexed by the migration, and only what needs an agent");
}

/// A tenant's counts over all it stored (the last 400 days), summed across buckets.
async fn totals(store: &CqlStore, tenant: &str) -> Counters {
    let rows = store.analytics(&tenant.into(), 0, i64::MAX).await.expect("analytics");
    let mut sum = Counters::default();
    for row in rows {
        sum.add(&row.counters);
    }
    sum
}

async fn messages_cross_bucket_boundaries_in_order(store: &CqlStore) {
    // Buckets of 4 seqs: bucket 0 holds 1..=3, bucket 1 holds 4..=7, bucket 2 holds 8..=11.
    let store = CqlStore { bucket_size: 4, ..store.clone() };
    seed_conversation(&store, "t-bucket", "c1").await;
    let (t, c) = (TenantId::from("t-bucket"), ConversationId::from("c1"));
    let seqs = |v: Vec<Message>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    for seq in 1..=11 {
        let m = message("t-bucket", "c1", seq, Some(&format!("k{seq}")));
        assert_eq!(store.append(&m).await.expect("append"), Appended::Stored, "seq {seq}");
        assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), seq, "after {seq}");
    }
    let all = store.messages_after(&t, &c, 0, 100).await.expect("read");
    assert_eq!(seqs(all), (1..=11).collect::<Vec<_>>());
    assert_eq!(seqs(store.messages_after(&t, &c, 2, 5).await.expect("read")), [3, 4, 5, 6, 7]);
    assert_eq!(seqs(store.messages_after(&t, &c, 3, 4).await.expect("read")), [4, 5, 6, 7]);
    assert_eq!(seqs(store.messages_after(&t, &c, 7, 100).await.expect("read")), [8, 9, 10, 11]);
    assert!(store.messages_after(&t, &c, 11, 100).await.expect("read").is_empty());
    assert_eq!(store.last_message(&t, &c).await.expect("last").map(|m| m.seq), Some(11));
    let gap = store.append(&message("t-bucket", "c1", 13, None)).await;
    assert!(matches!(gap, Err(StoreError::SeqGap { last: 11, got: 13 })), "{gap:?}");
    let taken = store.append(&message("t-bucket", "c1", 4, None)).await;
    assert!(matches!(taken, Err(StoreError::SeqConflict(4))), "{taken:?}");
    let again = message("t-bucket", "c1", 12, Some("k2"));
    match store.append(&again).await.expect("duplicate") {
        Appended::Duplicate(first) => assert_eq!(first.seq, 2, "found in its own bucket"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // A full last bucket (12..=15), then one more: the bisection finds bucket 4.
    for seq in 12..=16 {
        store.append(&message("t-bucket", "c1", seq, None)).await.expect("append");
    }
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 16);
    assert!(store.delete_conversation(&t, &c).await.expect("delete"));
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 0, "every bucket deleted");
    assert!(store.messages_after(&t, &c, 0, 100).await.expect("read").is_empty());
    seed_conversation(&store, "t-bucket", "c1").await;
    let reborn = message("t-bucket", "c1", 1, Some("k9"));
    assert_eq!(store.append(&reborn).await.expect("append"), Appended::Stored, "markers gone");
}

/// A client id is found through its marker however old its message, and through the tail
/// when a process died between storing a message and writing its marker.
async fn duplicates_are_found_by_marker_or_in_the_tail(store: &CqlStore, settings: &StoreSettings) {
    let raw = build_session(settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    seed_conversation(store, "t-dup", "c1").await;
    let (t, c) = (TenantId::from("t-dup"), ConversationId::from("c1"));
    let first = message("t-dup", "c1", 1, Some("early"));
    assert_eq!(store.append(&first).await.expect("append"), Appended::Stored);
    let later = TAIL + 4;
    for seq in 2..=later {
        store.append(&message("t-dup", "c1", seq, None)).await.expect("append");
    }
    let retry = message("t-dup", "c1", later + 1, Some("early"));
    assert_eq!(
        store.append(&retry).await.expect("retry"),
        Appended::Duplicate(first),
        "beyond the tail: found by its marker"
    );
    // Died after storing "unmarked" (seq later + 1), before its marker; the next owner stored
    // the answer to it, then the event comes again.
    let unmarked = message("t-dup", "c1", later + 1, Some("unmarked"));
    let (data, delivery) = message_columns(&unmarked).expect("columns");
    let insert = "INSERT INTO messages (tenant_id, conversation_id, bucket, seq, data, delivery) \
                  VALUES (?, ?, 0, ?, ?, ?) IF NOT EXISTS";
    let seq = i64::try_from(later + 1).expect("seq");
    raw.query_unpaged(insert, ("t-dup", "c1", seq, data, delivery)).await.expect("message");
    store.append(&message("t-dup", "c1", later + 2, None)).await.expect("answer");
    let again = message("t-dup", "c1", later + 3, Some("unmarked"));
    assert_eq!(
        store.append(&again).await.expect("again"),
        Appended::Duplicate(unmarked.clone()),
        "found in the tail"
    );
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), later + 2, "stored once");
    // Found in the tail, it got its marker: a resend long after is still a duplicate.
    for seq in later + 3..=later + 3 + TAIL {
        store.append(&message("t-dup", "c1", seq, None)).await.expect("append");
    }
    let late = message("t-dup", "c1", later + 4 + TAIL, Some("unmarked"));
    assert_eq!(
        store.append(&late).await.expect("late"),
        Appended::Duplicate(unmarked),
        "marker repaired"
    );
}

/// What a process dying between two writes leaves behind, written by hand.
async fn half_done_operations_are_completed_by_the_next_call(
    store: &CqlStore,
    settings: &StoreSettings,
) {
    let raw = build_session(settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    seed_conversation(store, "t-crash", "c1").await;
    let (t, c) = (TenantId::from("t-crash"), ConversationId::from("c1"));
    // A marker of "lost" naming seq 1 (left by a deleted conversation with the same id).
    let marker = "INSERT INTO client_msg_ids (tenant_id, conversation_id, client_msg_id, seq) \
                  VALUES (?, ?, ?, ?)";
    raw.query_unpaged(marker, ("t-crash", "c1", "lost", 1i64)).await.expect("marker");
    // Seq 1 goes to another message; "lost" comes with seq 2.
    store.append(&message("t-crash", "c1", 1, Some("other"))).await.expect("append");
    let retry = message("t-crash", "c1", 2, Some("lost"));
    assert_eq!(store.append(&retry).await.expect("retry"), Appended::Stored, "stored once");
    let again = message("t-crash", "c1", 3, Some("lost"));
    assert_eq!(store.append(&again).await.expect("again"), Appended::Duplicate(retry.clone()));
    assert_eq!(store.last_seq(&t, &c).await.expect("last_seq"), 2);

    // Died after storing a visitor message (seq 3), before counting its sentiment.
    let mut uncounted = message("t-crash", "c1", 3, None);
    uncounted.sentiment = Some(0.5);
    let (data, delivery) = message_columns(&uncounted).expect("columns");
    let insert = "INSERT INTO messages (tenant_id, conversation_id, bucket, seq, data, delivery) \
                  VALUES (?, ?, 0, 3, ?, ?) IF NOT EXISTS";
    raw.query_unpaged(insert, ("t-crash", "c1", data, delivery)).await.expect("message");
    let before = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(before.sentiment_count, 0);
    let mut next = message("t-crash", "c1", 4, None);
    next.sentiment = Some(-0.25);
    assert_eq!(store.append(&next).await.expect("append"), Appended::Stored);
    let after = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!((after.sentiment_count, after.sentiment_sum), (2, 0.25), "both counted once");
    // Retrying the append that already landed changes nothing.
    assert_eq!(store.append(&next).await.expect("retry"), Appended::Stored);
    let after = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(after.sentiment_count, 2);
    // Its analytics too: seq 3 caught up by seq 4, and the retry of seq 4 not counted again.
    let counts = totals(store, "t-crash").await;
    assert_eq!(counts.visitor_messages, 4, "every stored message counted once: {counts:?}");
    assert_eq!((counts.sentiment_count, counts.sentiment_sum), (2, 0.25));

    // Died after claiming an email, before writing the account: taken while the claim is
    // fresh (it may be a creation in flight), free once it is old.
    let claim = "INSERT INTO account_emails (email, tenant_id, account_id, claimed_at) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS";
    let now = parla_domain::model::now_ms();
    raw.query_unpaged(claim, ("fresh@example.com", "t-crash", "ghost-1", now))
        .await
        .expect("claim");
    raw.query_unpaged(claim, ("old@example.com", "t-crash", "ghost-2", now - 120_000))
        .await
        .expect("claim");
    let fresh = conformance::account("t-crash", "acc-1", "fresh@example.com");
    assert!(matches!(store.create_account(&fresh).await, Err(StoreError::EmailTaken)));
    let old = conformance::account("t-crash", "acc-2", "old@example.com");
    store.create_account(&old).await.expect("an orphan claim is taken over");
    let found = store.account_by_email("old@example.com").await.expect("lookup");
    assert_eq!(found.map(|a| a.id), Some(old.id));

    // Died after claiming a channel contact, before creating its conversation: the next
    // message of the contact creates the conversation the claim names.
    let mut claimed = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    claimed.id = "c-claimed".into();
    let contact = "INSERT INTO channel_contacts (connection_id, contact, tenant_id, \
                   conversation_id, data) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    let values = ("crash-conn", "+1", "t-crash", "c-claimed", encode(&claimed).expect("json"));
    raw.query_unpaged(contact, values).await.expect("claim");
    assert_eq!(store.find_contact_conversation(&t, "crash-conn", "+1").await.expect("find"), None);
    let mut other = claimed.clone();
    other.id = "c-other".into();
    let got = store.contact_conversation("crash-conn", "+1", &other).await.expect("contact");
    assert_eq!(got.id, claimed.id, "the claimed conversation, completed");
    assert!(store.get_conversation(&t, &claimed.id).await.expect("get").is_some());
    assert!(store.get_conversation(&t, &other.id).await.expect("get").is_none());
    let contact = store.conversation_contact(&t, &claimed.id).await.expect("contact");
    assert_eq!(contact, Some(("crash-conn".to_owned(), "+1".to_owned())));
}

async fn global_lookups_carry_their_tenant_and_scoped_reads_do_not_leak(store: &CqlStore) {
    let (mine, theirs) = (TenantId::from("t-scope-a"), TenantId::from("t-scope-b"));
    seed_conversation(store, "t-scope-a", "c1").await;
    let c = ConversationId::from("c1");
    store.append(&message("t-scope-a", "c1", 1, Some("k1"))).await.expect("append");
    let bot = BotId::from("t-scope-a-bot");
    assert_eq!(
        store.resolve_bot(&bot).await.expect("resolve").map(|b| b.tenant_id),
        Some(mine.clone())
    );
    assert_eq!(store.get_bot(&theirs, &bot).await.expect("get"), None);
    assert!(store.list_bots(&theirs).await.expect("list").is_empty());

    // The same conversation id in another tenant is another conversation.
    assert_eq!(store.get_conversation(&theirs, &c).await.expect("get"), None);
    assert!(store.messages_after(&theirs, &c, 0, 10).await.expect("read").is_empty());
    assert_eq!(store.last_seq(&theirs, &c).await.expect("last_seq"), 0);
    assert_eq!(store.last_message(&theirs, &c).await.expect("last"), None);
    assert!(store.list_tenant_conversations(&theirs, None, 10).await.expect("list").is_empty());
    assert!(store.list_conversations(&theirs, &bot, None, 10).await.expect("list").is_empty());
    assert!(!store.set_handling(&theirs, &c, &Handling::default()).await.expect("set"));
    assert!(!store.delete_conversation(&theirs, &c).await.expect("delete"));
    assert!(!store.set_delivery(&theirs, &c, 1, "conn", &delivery()).await.expect("set"));
    assert_eq!(store.messages_after(&mine, &c, 0, 10).await.expect("read").len(), 1, "intact");

    let account = conformance::account("t-scope-a", "acc-scope", "scope@example.com");
    store.create_account(&account).await.expect("account");
    let found = store.account_by_email("SCOPE@example.com").await.expect("lookup").expect("found");
    assert_eq!(found.tenant_id, mine);
    assert_eq!(store.get_account(&theirs, &account.id).await.expect("get"), None);
    assert!(!store.delete_account(&theirs, &account.id).await.expect("delete"));

    let refresh = RefreshToken {
        digest: "scope-d1".into(),
        account_id: account.id.clone(),
        tenant_id: mine.clone(),
        family: "scope-fam".into(),
        expires_at: parla_domain::model::now_ms() + 60_000,
        used: false,
        session_epoch: 0,
    };
    store.put_refresh_token(&refresh).await.expect("put");
    // Revoking the other tenant's sessions of the same account id reaches nothing of ours.
    store.revoke_account_sessions(&theirs, &account.id).await.expect("revoke");
    let used = store.use_refresh_token("scope-d1").await.expect("use").expect("exists");
    assert_eq!(used.tenant_id, mine);

    let channel = ChannelConnection {
        id: "scope-ch".into(),
        tenant_id: mine.clone(),
        bot_id: bot.clone(),
        kind: parla_domain::model::Channel::Sms,
        address: "+1555".into(),
        sealed_secrets: "sealed".into(),
        secret_hints: Default::default(),
        template: None,
        created_at: 1,
        updated_at: 1,
    };
    store.put_channel(&channel).await.expect("channel");
    assert_eq!(
        store.channel_by_id("scope-ch").await.expect("get").map(|c| c.tenant_id),
        Some(mine.clone())
    );
    assert!(store.list_channels(&theirs, &bot).await.expect("list").is_empty());
    assert!(!store.delete_channel(&theirs, "scope-ch").await.expect("delete"));

    let d =
        conformance::document("t-scope-a", "t-scope-a-bot", "scope-doc", ProcessStatus::Pending);
    store.put_document(&d, Some(b"")).await.expect("document");
    assert_eq!(store.document_content(&mine, "scope-doc").await.expect("content"), Some(vec![]));
    assert_eq!(store.document_content(&theirs, "scope-doc").await.expect("content"), None);
    assert_eq!(store.get_document(&theirs, "scope-doc").await.expect("get"), None);
    assert!(store.list_documents(&theirs, &bot).await.expect("list").is_empty());
    // A 2.5 MiB document spans three content parts and reads back whole.
    let big: Vec<u8> = (0..(5 << 19)).map(|i: u32| (i % 251) as u8).collect();
    store.put_document(&d, Some(&big)).await.expect("big");
    assert_eq!(store.document_content(&mine, "scope-doc").await.expect("content"), Some(big));
    store.put_document(&d, Some(b"small")).await.expect("smaller");
    let small = store.document_content(&mine, "scope-doc").await.expect("content");
    assert_eq!(small.as_deref(), Some(&b"small"[..]), "the old parts are gone");
    assert!(store.delete_document(&mine, "scope-doc").await.expect("delete"));
}

fn delivery() -> Delivery {
    Delivery {
        status: DeliveryStatus::Sent,
        provider_ids: vec!["pid-1".into()],
        error: None,
        updated_at: 1,
    }
}

async fn atomic_rules_hold_under_concurrency(store: &CqlStore) {
    let store = Arc::new(store.clone());
    let racers = 8;
    let race = |f: &dyn Fn(usize) -> tokio::task::JoinHandle<bool>| {
        let handles: Vec<_> = (0..racers).map(f).collect();
        async move {
            let mut wins = 0;
            for h in handles {
                wins += usize::from(h.await.expect("racer"));
            }
            wins
        }
    };

    // Refresh token: exactly one use sees it unused.
    let token = RefreshToken {
        digest: "race-d".into(),
        account_id: "acc-race".into(),
        tenant_id: "t-race".into(),
        family: "race-fam".into(),
        expires_at: parla_domain::model::now_ms() + 60_000,
        used: false,
        session_epoch: 0,
    };
    store.put_refresh_token(&token).await.expect("put");
    let wins = race(&|_| {
        let s = store.clone();
        tokio::spawn(async move {
            !s.use_refresh_token("race-d").await.expect("use").expect("exists").used
        })
    })
    .await;
    assert_eq!(wins, 1, "refresh token used once");

    // One-time token: taken once.
    let ott = OneTimeToken {
        digest: "race-ott".into(),
        kind: parla_domain::model::OneTimeKind::EmailVerification,
        account_id: "acc-race".into(),
        tenant_id: "t-race".into(),
        expires_at: parla_domain::model::now_ms() + 60_000,
        email: None,
        role: None,
    };
    store.put_one_time_token(&ott).await.expect("put");
    let wins = race(&|_| {
        let s = store.clone();
        tokio::spawn(
            async move { s.take_one_time_token("race-ott").await.expect("take").is_some() },
        )
    })
    .await;
    assert_eq!(wins, 1, "one-time token taken once");

    // An email registered once, whichever tenant races for it.
    let wins = race(&|i| {
        let s = store.clone();
        tokio::spawn(async move {
            let a = conformance::account(
                &format!("t-race-{i}"),
                &format!("acc-{i}"),
                "race@example.com",
            );
            match s.create_account(&a).await {
                Ok(()) => true,
                Err(StoreError::EmailTaken) => false,
                Err(e) => panic!("create_account: {e}"),
            }
        })
    })
    .await;
    assert_eq!(wins, 1, "one account per email");

    // A bot id owned by one tenant.
    let wins = race(&|i| {
        let s = store.clone();
        tokio::spawn(async move {
            match s.put_bot(&conformance::bot(&format!("t-race-{i}"), "race-bot")).await {
                Ok(()) => true,
                Err(StoreError::BotIdTaken) => false,
                Err(e) => panic!("put_bot: {e}"),
            }
        })
    })
    .await;
    assert_eq!(wins, 1, "one owner per bot id");

    // A conversation created once.
    seed_conversation(&*store, "t-race", "c-seed").await;
    let template = store
        .get_conversation(&"t-race".into(), &"c-seed".into())
        .await
        .expect("get")
        .expect("exists");
    let wins = race(&|_| {
        let (s, mut c) = (store.clone(), template.clone());
        tokio::spawn(async move {
            c.id = "c-race".into();
            match s.create_conversation(&c).await {
                Ok(()) => true,
                Err(StoreError::ConversationExists) => false,
                Err(e) => panic!("create_conversation: {e}"),
            }
        })
    })
    .await;
    assert_eq!(wins, 1, "a conversation created once");

    // Two first messages of a contact open one conversation.
    let handles: Vec<_> = (0..racers)
        .map(|i| {
            let (s, mut c) = (store.clone(), template.clone());
            tokio::spawn(async move {
                c.id = ConversationId(format!("c-contact-{i}"));
                s.contact_conversation("race-conn", "+39", &c).await.expect("contact").id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.expect("racer"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one conversation per contact: {ids:?}");
    let channel_conversations = store.channel_conversations(&"t-race".into()).await.expect("list");
    assert_eq!(channel_conversations, ids, "and only that one was created");

    // The same message raced with one seq and one client id: stored once.
    let m = message("t-race", "c-seed", 1, Some("race-k"));
    let handles: Vec<_> = (0..racers)
        .map(|_| {
            let (s, m) = (store.clone(), m.clone());
            tokio::spawn(async move { s.append(&m).await.expect("append") })
        })
        .collect();
    let mut stored = 0;
    for h in handles {
        match h.await.expect("racer") {
            Appended::Stored => stored += 1,
            Appended::Duplicate(first) => assert_eq!(first, m),
        }
    }
    assert!(stored >= 1, "stored");
    let (t, c) = (TenantId::from("t-race"), ConversationId::from("c-seed"));
    assert_eq!(store.messages_after(&t, &c, 0, 10).await.expect("read"), vec![m.clone()]);
    // Counted once however many racers finished its append; three conversations created.
    let counts = totals(&store, "t-race").await;
    assert_eq!((counts.visitor_messages, counts.conversations), (1, 3), "{counts:?}");

    // Delivery reports in any order: the status ends at the furthest one.
    assert!(store.set_delivery(&t, &c, 1, "race-conn", &delivery()).await.expect("set"));
    let statuses = [DeliveryStatus::Delivered, DeliveryStatus::Read, DeliveryStatus::Delivered];
    let handles: Vec<_> = (0..racers)
        .map(|i| {
            let s = store.clone();
            let status = statuses[i % statuses.len()];
            tokio::spawn(async move {
                s.advance_delivery("race-conn", "pid-1", status, None).await.expect("advance")
            })
        })
        .collect();
    for h in handles {
        h.await.expect("racer");
    }
    let last = store.last_message(&t, &c).await.expect("last").expect("exists");
    assert_eq!(last.delivery.map(|d| d.status), Some(DeliveryStatus::Read));
}

/// A conversation row from before migration 0003 has no `stats` and no `analytics_seq`: the
/// compare-and-sets must accept those nulls (and count from the next write on).
async fn a_conversation_from_before_analytics_counts_from_its_next_write(
    store: &CqlStore,
    settings: &StoreSettings,
) {
    let raw = build_session(settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    let forget = "UPDATE conversations SET stats = null, analytics_seq = null \
                  WHERE tenant_id = 't-legacy' AND conversation_id = 'c1' IF EXISTS";
    seed_conversation(store, "t-legacy", "c1").await;
    let (t, c) = (TenantId::from("t-legacy"), ConversationId::from("c1"));
    store.append(&message("t-legacy", "c1", 1, None)).await.expect("append");
    raw.query_unpaged(forget, ()).await.expect("legacy row");
    let legacy = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(legacy.stats, Default::default(), "no stats column: none counted");
    let mut second = message("t-legacy", "c1", 2, None);
    second.sentiment = Some(0.5);
    assert_eq!(store.append(&second).await.expect("append"), Appended::Stored);
    let mut answer = message("t-legacy", "c1", 3, None);
    (answer.sender, answer.created_at) = (Sender::Bot, second.created_at + 250);
    assert_eq!(store.append(&answer).await.expect("append"), Appended::Stored);
    raw.query_unpaged(forget, ()).await.expect("legacy row");
    let escalated = Handling { status: ConversationStatus::Escalated, ..Handling::default() };
    assert!(store.set_handling(&t, &c, &escalated).await.expect("set"), "applied on nulls");
    assert!(store.set_handling(&t, &c, &escalated).await.expect("set"), "and repeated");
    let counts = totals(store, "t-legacy").await;
    assert_eq!(
        (counts.visitor_messages, counts.bot_messages, counts.sentiment_count),
        (2, 1, 1),
        "{counts:?}"
    );
    assert_eq!((counts.first_responses, counts.first_response_ms), (1, 250));
    assert_eq!((counts.handovers, counts.conversations), (1, 1));
    let now = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert!(now.stats.handed_over && now.handling.status == ConversationStatus::Escalated);
    assert_eq!(now.sentiment_count, 1);
}

/// Appends and handling changes of one conversation racing (two nodes that both think they
/// own it, or an agent's change beside the actor): both compare-and-set the `stats`, and the
/// counts end where the final state says, each transition counted once.
async fn counts_hold_when_appends_and_handling_race(store: &CqlStore) {
    let store = Arc::new(store.clone());
    seed_conversation(&*store, "t-count-race", "c1").await;
    let (t, c) = (TenantId::from("t-count-race"), ConversationId::from("c1"));
    let started = store.get_conversation(&t, &c).await.expect("get").expect("exists").started_at;
    // Inside one hour (so one UTC day: the visitor is active once).
    let base = parla_domain::analytics::hour_of(parla_domain::model::now_ms());
    let exchanges = 10u64;
    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            for seq in 1..=2 * exchanges {
                let mut m = message("t-count-race", "c1", seq, None);
                m.created_at = base + i64::try_from(seq).expect("small") * 100;
                if seq % 2 == 0 {
                    m.sender = Sender::Bot;
                } else {
                    m.sentiment = Some(-0.5);
                }
                assert_eq!(store.append(&m).await.expect("append"), Appended::Stored);
            }
        })
    };
    let resolved = Handling {
        status: ConversationStatus::Resolved,
        resolution: Some(Resolution::Resolved),
        ended_at: Some(started + 60_000),
        csat: Some(5),
        ..Handling::default()
    };
    let escalated = Handling { status: ConversationStatus::Escalated, ..Handling::default() };
    // Every racer ends with a resolution, so the last write of all is one.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (store, t, c) = (store.clone(), t.clone(), c.clone());
            let (resolved, escalated) = (resolved.clone(), escalated.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    assert!(store.set_handling(&t, &c, &escalated).await.expect("escalate"));
                    assert!(store.set_handling(&t, &c, &resolved).await.expect("resolve"));
                }
            })
        })
        .collect();
    appender.await.expect("appender");
    for r in racers {
        r.await.expect("racer");
    }
    let counts = totals(&store, "t-count-race").await;
    let n = i64::try_from(exchanges).expect("small");
    let want = Counters {
        conversations: 1,
        visitor_messages: n,
        bot_messages: n,
        active_visitors: 1,
        handovers: 1,
        resolved: 1,
        first_responses: 1,
        first_response_ms: 100,
        durations: 1,
        duration_ms: 60_000,
        sentiment_count: n,
        sentiment_sum: -0.5 * f64::from(u32::try_from(exchanges).expect("small")),
        csat_count: 1,
        csat_sum: 5,
        unmatched: n,
        ..Counters::default()
    };
    assert_eq!(counts, want, "every transition counted once");
    let now = store.get_conversation(&t, &c).await.expect("get").expect("exists");
    assert_eq!(now.handling, resolved);
    assert_eq!(now.stats.resolution, Some(Resolution::Resolved));
    assert_eq!(now.stats.first_response_ms, Some(100));
    assert_eq!(now.sentiment_count, u32::try_from(exchanges).expect("small"));
    let listed = store.unmatched_messages(&t, None, base, base + HOUR_MS, 100).await;
    let seqs: Vec<u64> = listed.expect("unmatched").iter().map(|(_, m)| m.seq).collect();
    let want: Vec<u64> = (1..=2 * exchanges).rev().filter(|s| s % 2 == 1).collect();
    assert_eq!(seqs, want, "the visitor's messages, newest first");
}

/// Account and API key rows written before migration 0005 (no `version`, no `roles_version`,
/// no `revoked`/`last_used_at` cells): read as version 0 and as their record says, changed
/// compare-and-set against the null version, and the last-owner rule holds on them.
async fn rows_from_before_0005_are_changed_compare_and_set(
    store: &CqlStore,
    settings: &StoreSettings,
) {
    let raw = build_session(settings, Some(&settings.cql_keyspace), Duration::from_secs(20))
        .await
        .expect("session");
    let t = TenantId::from("t-pre-0005");
    let plain = "INSERT INTO accounts (tenant_id, account_id, data) VALUES (?, ?, ?)";
    for (id, role) in
        [("owner", parla_domain::model::Role::Owner), ("agent", parla_domain::model::Role::Agent)]
    {
        let email = format!("{id}@pre-0005.io");
        let claim = "INSERT INTO account_emails (email, tenant_id, account_id, claimed_at) \
                     VALUES (?, ?, ?, 0)";
        raw.query_unpaged(claim, (&email, t.as_str(), id)).await.expect("claim");
        let a = Account { role, ..conformance::account(t.as_str(), id, &email) };
        let values = (t.as_str(), id, encode(&a).expect("json"));
        raw.query_unpaged(plain, values).await.expect("a row as 0003 wrote it");
    }
    let agent = store.get_account(&t, &"agent".into()).await.expect("get").expect("exists");
    assert_eq!(agent.version, 0, "no version cell reads as 0");
    let stale = agent.clone();
    let verified = Account { email_verified: true, ..agent };
    store.update_account(&verified).await.expect("compared against the null version");
    assert!(matches!(store.update_account(&stale).await, Err(StoreError::Conflict)));
    let owner = store.get_account(&t, &"owner".into()).await.expect("get").expect("exists");
    let demoted = Account { role: parla_domain::model::Role::Admin, ..owner.clone() };
    assert!(matches!(store.update_account(&demoted).await, Err(StoreError::LastOwner)));
    assert!(matches!(store.delete_account(&t, &owner.id).await, Err(StoreError::LastOwner)));
    let promoted = store.get_account(&t, &"agent".into()).await.expect("get").expect("exists");
    let promoted = Account { role: parla_domain::model::Role::Owner, ..promoted };
    store.update_account(&promoted).await.expect("promote");
    store.delete_account_if_unchanged(&owner).await.expect("another owner remains");
    assert_eq!(store.account_by_email("owner@pre-0005.io").await.expect("lookup"), None);

    let key = ApiKey {
        id: "k-old".into(),
        tenant_id: t.clone(),
        name: "old".into(),
        prefix: "pk_old".into(),
        digest: "dig-pre-0005".into(),
        scopes: vec!["bots:read".into()],
        created_at: 1,
        last_used_at: Some(5),
        revoked: false,
        created_by: None,
    };
    let plain_key = "INSERT INTO api_keys (tenant_id, key_id, data) VALUES (?, ?, ?)";
    let values = (t.as_str(), "k-old", encode(&key).expect("json"));
    raw.query_unpaged(plain_key, values).await.expect("a key as 0003 wrote it");
    let index = "INSERT INTO api_key_digests (digest, tenant_id, key_id) VALUES (?, ?, ?)";
    raw.query_unpaged(index, ("dig-pre-0005", t.as_str(), "k-old")).await.expect("index");
    let found = store.api_key_by_digest("dig-pre-0005").await.expect("lookup").expect("found");
    assert_eq!(found, key, "read as its record says");
    assert!(store.revoke_api_key(&t, "k-old").await.expect("revoke"));
    store.touch_api_key(&t, "k-old", parla_domain::model::now_ms()).await.expect("touch");
    let found = store.api_key_by_digest("dig-pre-0005").await.expect("lookup").expect("found");
    assert!(found.revoked && found.last_used_at > Some(5), "{found:?}");
}
