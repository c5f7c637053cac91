//! `parla-store-bench`: message appends through the `Store` port, the embedded store (redb)
//! beside the CQL store (Cassandra here, ScyllaDB in production) in the same run.
//!
//! Each of `--conversations` conversations gets `--exchanges` exchanges, as its actor writes
//! them: a visitor message (with a `client_msg_id` and a sentiment, so every idempotency and
//! counting path runs), then the bot's reply. Conversations run concurrently; one
//! conversation's appends are sequential, each starting when the previous returned (durable),
//! as in the engine. Reported per store: exchanges per second, and the latency of a visitor's
//! and of a bot's append (p50 / p99 / max). Every conversation is read back at the end and
//! checked whole (seqs 1..=2·exchanges, each once, in order): a run with a gap fails.
//!
//! ```text
//! parla-store-bench --conversations 20 --exchanges 50 [--cql 127.0.0.1:19042]
//! ```
//!
//! The CQL run migrates a fresh keyspace (`parla_bench_<random>`, left behind: the test
//! services' Cassandra lives in a scratch directory).

use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::Context as _;
use clap::Parser;
use parla_domain::{
    conformance,
    model::{ConversationId, Sender, TenantId},
    store::{Appended, Store},
};

#[derive(Parser, Debug)]
#[command(name = "parla-store-bench")]
struct Args {
    /// Conversations written concurrently.
    #[arg(long, default_value_t = 20)]
    conversations: usize,
    /// Exchanges (visitor message + bot reply) per conversation.
    #[arg(long, default_value_t = 50)]
    exchanges: u64,
    /// A CQL node (host:port); without it only the embedded store runs.
    #[arg(long)]
    cql: Option<String>,
}

#[derive(Default)]
struct Timings {
    visitor: Vec<Duration>,
    bot: Vec<Duration>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(name: &str, store: Arc<dyn Store>, args: &Args) -> anyhow::Result<()> {
    let tenant = format!("bench-{}", uuid::Uuid::new_v4().simple());
    for c in 0..args.conversations {
        conformance::seed_conversation(&*store, &tenant, &format!("c{c}")).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.conversations {
        let (store, tenant, exchanges) = (store.clone(), tenant.clone(), args.exchanges);
        tasks.push(tokio::spawn(async move {
            let conversation = format!("c{c}");
            let mut timings = Timings::default();
            for e in 0..exchanges {
                let cid = format!("m{e}");
                let mut visitor =
                    conformance::message(&tenant, &conversation, 2 * e + 1, Some(&cid));
                visitor.sentiment = Some(0.25);
                let t = Instant::now();
                let stored = store.append(&visitor).await?;
                timings.visitor.push(t.elapsed());
                anyhow::ensure!(matches!(stored, Appended::Stored), "visitor append: {stored:?}");
                let mut bot = conformance::message(&tenant, &conversation, 2 * e + 2, None);
                bot.sender = Sender::Bot;
                let t = Instant::now();
                let stored = store.append(&bot).await?;
                timings.bot.push(t.elapsed());
                anyhow::ensure!(matches!(stored, Appended::Stored), "bot append: {stored:?}");
            }
            anyhow::Ok(timings)
        }));
    }
    let mut all = Timings::default();
    for task in tasks {
        let t = task.await??;
        all.visitor.extend(t.visitor);
        all.bot.extend(t.bot);
    }
    let elapsed = started.elapsed();
    // Every conversation whole: seqs 1..=2n, each once, in order.
    let want: Vec<u64> = (1..=2 * args.exchanges).collect();
    let tenant = TenantId::from(tenant.as_str());
    for c in 0..args.conversations {
        let id = ConversationId(format!("c{c}"));
        let read = store.messages_after(&tenant, &id, 0, want.len() + 1);
        let seqs: Vec<u64> = read.await?.iter().map(|m| m.seq).collect();
        anyhow::ensure!(seqs == want, "{name}: conversation c{c} read back {seqs:?}");
    }
    all.visitor.sort();
    all.bot.sort();
    let exchanges = args.conversations as f64 * args.exchanges as f64;
    println!(
        "{name:>8}: {:>8.0} exchanges/s | visitor append p50 {:.2} p99 {:.2} max {:.2} ms | \
         bot append p50 {:.2} p99 {:.2} max {:.2} ms | {} conversations x {} exchanges, read back whole",
        exchanges / elapsed.as_secs_f64(),
        pct(&all.visitor, 0.5),
        pct(&all.visitor, 0.99),
        pct(&all.visitor, 1.0),
        pct(&all.bot, 0.5),
        pct(&all.bot, 0.99),
        pct(&all.bot, 1.0),
        args.conversations,
        args.exchanges,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let redb = parla_store_redb::RedbStore::open(dir.path(), 256, 4096)?;
    run("embedded", Arc::new(redb), &args).await?;
    if let Some(node) = &args.cql {
        let mut settings = parla_config::Settings::defaults()?.store;
        settings.backend = "cql".into();
        settings.cql_nodes = vec![node.clone()];
        settings.cql_keyspace =
            format!("parla_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        parla_store_cql::migrate(&settings).await.context("migrating")?;
        let store = parla_store_cql::CqlStore::connect(&settings).await?;
        run("cql", Arc::new(store), &args).await?;
    }
    Ok(())
}
