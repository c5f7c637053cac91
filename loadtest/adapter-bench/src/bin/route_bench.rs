//! `parla-route-bench`: the two candidates for the outbound delivery route of distributed mode
//! (issue 7), measured in the same run on the same machine — each is the other's baseline.
//!
//! - **Redis pub/sub**: the engine PUBLISHes to a per-conversation channel from one connection,
//!   pipelined in order (up to 512 per round trip, as `engine/adapters/cluster/src/lib.rs` does); the
//!   gateway SUBSCRIBEs on another connection.
//! - **A per-node Kafka topic**: the engine produces to the gateway node's topic (one
//!   partition: one ordered log), the gateway consumes it with a consumer *assigned* to the
//!   partition (no group membership: a node's topic has exactly one reader, so there is
//!   nothing to balance and no offsets to commit; librdkafka still wants a `group.id` set).
//!
//! The payload is a real `token` event as the engine encodes it (`Event::Token`, ≈ 85 bytes of
//! JSON); its `delta` carries a sequence number, which the receiving side decodes — as the
//! gateway decodes every event — to check order and loss.
//!
//! # What is measured
//!
//! 1. **One-way latency**: one event at a time, the next sent once the previous has arrived and
//!    a pause (`--pause-ms`) has passed, so no event queues behind another. Publisher and
//!    subscriber live in this process on separate connections; both timestamps come from one
//!    monotonic clock (`Instant`): before the publish call, and when the subscriber's task gets
//!    the event from its client library. Kafka is measured with the consumer's
//!    `fetch.wait.max.ms` at 5 (what the engine's consumer uses), 1 and 0.
//! 2. **Throughput**: `--burst` events published as fast as the route takes them (Redis:
//!    pipelines of 512 from one connection; Kafka: every record enqueued at once into a
//!    `FutureProducer`, for `linger.ms` 0 and 5 × `acks` all and 1), timed until the
//!    subscriber has them all. Loss, duplicates and reordering are counted.
//!
//! Each Kafka scenario gets a fresh one-partition topic, created with the admin client and
//! deleted at the end (also after an error). The whole run is bounded by `--max-seconds`.
//!
//! # Concurrency
//!
//! One tokio runtime. Each subscriber is a task that timestamps arrivals and forwards
//! `(seq, instant)` over an unbounded channel to the driver (unbounded because the driver
//! drains it only after a burst is published: it holds at most `--burst` small entries); the
//! driver publishes and checks, one scenario at a time.
//!
//! Usage: `parla-route-bench --redis URL --kafka BROKERS --n 5000 --burst 100000 --json out.json`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use parla_domain::bus::Event;
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

#[derive(Debug, Parser)]
#[command(name = "parla-route-bench", about = "Redis pub/sub vs a Kafka topic as delivery route")]
struct Args {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:16379")]
    redis: String,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    kafka: String,
    /// Events measured one at a time for latency, per scenario.
    #[arg(long, default_value_t = 5000)]
    n: u64,
    /// Events per throughput burst.
    #[arg(long, default_value_t = 100_000)]
    burst: u64,
    /// Pause after each latency event has arrived, in milliseconds.
    #[arg(long, default_value_t = 1)]
    pause_ms: u64,
    /// Events sent (one at a time, not measured) before each scenario, to open connections,
    /// fetch metadata and start fetching.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// The whole run gives up after this many seconds.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// Also write the figures here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Progress and non-fatal errors, on stderr, apart from the figures on stdout.
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)] // The one place this binary writes to stderr.
        {
            eprintln!($($arg)*);
        }
    }};
}

/// Same shape as a stream id the engine mints (a simple-format UUID v7).
const STREAM_ID: &str = "019a7f3c2b1d7e4fa0c31d2e5b6a7c8d";

/// A `token` event as the engine publishes it, carrying `seq` in its delta.
fn token_frame(seq: u64) -> Vec<u8> {
    let event = Event::Token { stream_id: STREAM_ID.to_owned(), delta: format!(" tok{seq:08}") };
    serde_json::to_vec(&event).expect("an event always encodes")
}

/// Decodes a received event and returns its sequence number.
fn seq_of(payload: &[u8]) -> Option<u64> {
    match serde_json::from_slice::<Event>(payload).ok()? {
        Event::Token { delta, .. } => delta.strip_prefix(" tok")?.parse().ok(),
        _ => None,
    }
}

/// One event as the subscriber got it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    seq: u64,
    at: Instant,
}

/// Aborts the subscriber task when its route is dropped (which closes its connection).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The engine side of a route.
enum Publisher {
    Redis { conn: redis::aio::ConnectionManager, channel: String },
    Kafka { producer: FutureProducer, topic: String },
}

/// What the engine's publish loop sends per Redis round trip at most.
const REDIS_PIPELINE: usize = 512;

impl Publisher {
    /// Publishes one event; for Kafka, returns its delivery report to check later.
    async fn one(&mut self, payload: &[u8]) -> anyhow::Result<Option<DeliveryFuture>> {
        match self {
            Publisher::Redis { conn, channel } => {
                let mut pipe = redis::pipe();
                pipe.cmd("PUBLISH").arg(channel.as_str()).arg(payload).ignore();
                let () = pipe.query_async(conn).await.context("redis PUBLISH")?;
                Ok(None)
            }
            Publisher::Kafka { producer, topic } => {
                let record = FutureRecord::<(), [u8]>::to(topic).payload(payload);
                let delivery =
                    producer.send_result(record).map_err(|(e, _)| e).context("kafka produce")?;
                Ok(Some(delivery))
            }
        }
    }

    /// Publishes all of `payloads` as fast as the route takes them, in order; returns how many
    /// the route reported as failed.
    async fn burst(&mut self, payloads: &[Vec<u8>]) -> anyhow::Result<u64> {
        match self {
            Publisher::Redis { conn, channel } => {
                for chunk in payloads.chunks(REDIS_PIPELINE) {
                    let mut pipe = redis::pipe();
                    for payload in chunk {
                        pipe.cmd("PUBLISH").arg(channel.as_str()).arg(payload.as_slice()).ignore();
                    }
                    let () = pipe.query_async(conn).await.context("redis PUBLISH pipeline")?;
                }
                Ok(0)
            }
            Publisher::Kafka { producer, topic } => {
                let mut reports = Vec::with_capacity(payloads.len());
                for payload in payloads {
                    let mut record =
                        FutureRecord::<(), [u8]>::to(topic.as_str()).payload(payload.as_slice());
                    loop {
                        match producer.send_result(record) {
                            Ok(report) => {
                                reports.push(report);
                                break;
                            }
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                r,
                            )) => {
                                record = r;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err((e, _)) => return Err(e).context("kafka produce"),
                        }
                    }
                }
                let mut failed = 0;
                for report in reports {
                    if !matches!(report.await, Ok(Ok(_))) {
                        failed += 1;
                    }
                }
                Ok(failed)
            }
        }
    }
}

/// A publisher, its subscriber, and the sequence numbers between them.
struct Route {
    name: String,
    publisher: Publisher,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// The next sequence number to send.
    next: u64,
    /// Arrivals that were not the one awaited (late after a timeout, duplicated, reordered).
    stray: u64,
    /// Delivery reports with an error (Kafka).
    failed: u64,
    _subscriber: AbortOnDrop,
}

impl Route {
    /// Sends one event and waits up to `wait` for it; returns its one-way latency, or `None`
    /// if it did not arrive in time.
    async fn ping(&mut self, wait: Duration) -> anyhow::Result<Option<Duration>> {
        let seq = self.next;
        self.next += 1;
        let payload = token_frame(seq);
        let sent = Instant::now();
        let delivery = self.publisher.one(&payload).await?;
        let deadline = sent + wait;
        let latency = loop {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some(a)) if a.seq == seq => break Some(a.at.saturating_duration_since(sent)),
                Ok(Some(_)) => self.stray += 1,
                Ok(None) => bail!("the {} subscriber stopped", self.name),
                Err(_) => break None,
            }
        };
        if let Some(delivery) = delivery
            && !matches!(delivery.await, Ok(Ok(_)))
        {
            self.failed += 1;
        }
        Ok(latency)
    }

    /// Sends `count` events one at a time, each awaited, none measured.
    async fn warm(&mut self, count: u64) -> anyhow::Result<()> {
        for _ in 0..count {
            if self.ping(Duration::from_secs(15)).await?.is_none() {
                bail!("{}: a warm-up event did not arrive within 15 s", self.name);
            }
        }
        Ok(())
    }

    async fn latency(&mut self, n: u64, pause: Duration) -> anyhow::Result<LatencyRow> {
        let (stray, failed) = (self.stray, self.failed);
        let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let (mut lost, mut lost_in_a_row) = (0, 0);
        for _ in 0..n {
            match self.ping(Duration::from_secs(2)).await? {
                Some(latency) => {
                    samples.push(latency);
                    lost_in_a_row = 0;
                }
                None => {
                    lost += 1;
                    lost_in_a_row += 1;
                    if lost_in_a_row == 5 {
                        bail!("{}: 5 events in a row did not arrive within 2 s", self.name);
                    }
                }
            }
            tokio::time::sleep(pause).await;
        }
        samples.sort_unstable();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1));
            samples.get(rank - 1).copied().map_or(f64::NAN, micros)
        };
        let mean = samples.iter().map(|d| micros(*d)).sum::<f64>() / samples.len().max(1) as f64;
        Ok(LatencyRow {
            route: self.name.clone(),
            sent: n,
            received: samples.len() as u64,
            lost,
            stray: self.stray - stray,
            failed_reports: self.failed - failed,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: samples.last().copied().map_or(f64::NAN, micros),
            mean_us: mean,
        })
    }

    async fn burst(&mut self, count: u64, config: &str) -> anyhow::Result<BurstRow> {
        let first = self.next;
        self.next += count;
        let payloads: Vec<Vec<u8>> = (first..first + count).map(token_frame).collect();
        let start = Instant::now();
        let failed = self.publisher.burst(&payloads).await?;
        let published = start.elapsed();
        let mut seen = vec![false; payloads.len()];
        let (mut received, mut duplicates, mut reordered) = (0u64, 0u64, 0u64);
        let mut highest: Option<u64> = None;
        let mut last = start;
        while received < count {
            // An idle gap this long means the rest is not coming.
            match tokio::time::timeout(Duration::from_secs(10), self.arrivals.recv()).await {
                Ok(Some(a)) => {
                    let Some(i) = a.seq.checked_sub(first).filter(|i| *i < count) else {
                        self.stray += 1;
                        continue;
                    };
                    let slot = seen.get_mut(i as usize).expect("i < count = seen.len()");
                    if *slot {
                        duplicates += 1;
                        continue;
                    }
                    *slot = true;
                    received += 1;
                    last = last.max(a.at);
                    match highest {
                        Some(h) if a.seq < h => reordered += 1,
                        _ => highest = Some(a.seq),
                    }
                }
                Ok(None) => bail!("the {} subscriber stopped", self.name),
                Err(_) => break,
            }
        }
        let delivered = last.saturating_duration_since(start);
        Ok(BurstRow {
            route: self.name.clone(),
            config: config.to_owned(),
            events: count,
            received,
            lost: count - received,
            duplicates,
            reordered,
            failed_reports: failed,
            publish_s: published.as_secs_f64(),
            deliver_s: delivered.as_secs_f64(),
            events_per_s: received as f64 / delivered.as_secs_f64().max(1e-9),
        })
    }
}

#[derive(Debug, Serialize)]
struct LatencyRow {
    route: String,
    sent: u64,
    received: u64,
    lost: u64,
    stray: u64,
    failed_reports: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    mean_us: f64,
}

#[derive(Debug, Serialize)]
struct BurstRow {
    route: String,
    config: String,
    events: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    failed_reports: u64,
    /// Until the last publish was answered (Redis) or acknowledged (Kafka delivery report).
    publish_s: f64,
    /// Until the subscriber had the last event.
    deliver_s: f64,
    events_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    started_unix_s: u64,
    loadavg_start: String,
    loadavg_end: String,
    payload_bytes: usize,
    n: u64,
    burst: u64,
    pause_ms: u64,
    warmup: u64,
    kafka_consumer: &'static str,
    kafka_producer: &'static str,
    latency: Vec<LatencyRow>,
    throughput: Vec<BurstRow>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_owned()).unwrap_or_default()
}

async fn redis_route(url: &str, channel: String) -> anyhow::Result<Route> {
    let client = redis::Client::open(url).context("redis URL")?;
    let mut pubsub = client.get_async_pubsub().await.context("redis subscriber connection")?;
    // Once this returns, the subscription is live: nothing published after it is missed.
    pubsub.subscribe(&channel).await.context("redis SUBSCRIBE")?;
    let conn = client.get_connection_manager().await.context("redis publisher connection")?;
    let (tx, arrivals) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let at = Instant::now();
            if let Some(seq) = seq_of(msg.get_payload_bytes())
                && tx.send(Arrival { seq, at }).is_err()
            {
                return;
            }
        }
    });
    Ok(Route {
        name: "redis pub/sub".to_owned(),
        publisher: Publisher::Redis { conn, channel },
        arrivals,
        next: 0,
        stray: 0,
        failed: 0,
        _subscriber: AbortOnDrop(task),
    })
}

/// The producer settings of a Kafka scenario.
#[derive(Debug, Clone, Copy)]
struct ProducerConfig {
    linger_ms: u32,
    acks_all: bool,
}

impl ProducerConfig {
    fn label(self) -> String {
        let acks = if self.acks_all { "all, idempotent" } else { "1, not idempotent" };
        format!("linger.ms={}, acks={acks}", self.linger_ms)
    }
}

fn kafka_producer(brokers: &str, config: ProducerConfig) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", config.linger_ms.to_string())
        .set("acks", if config.acks_all { "all" } else { "1" })
        // librdkafka refuses idempotence with acks other than all.
        .set("enable.idempotence", config.acks_all.to_string())
        .set("socket.nagle.disable", "true")
        .set("message.timeout.ms", "15000")
        // Room for a whole burst, so it is never held back by the client's own queue.
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("kafka producer")
}

async fn kafka_route(
    brokers: &str,
    topic: &str,
    fetch_wait_ms: u32,
    producer: ProducerConfig,
) -> anyhow::Result<Route> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // librdkafka's assign() needs a group id, but an assigned consumer never joins the
        // group (no rebalance, no coordinator) and commits nothing here.
        .set("group.id", format!("{topic}.reader"))
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.min.bytes", "1")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("socket.nagle.disable", "true")
        .create()
        .context("kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).context("kafka partition")?;
    consumer.assign(&assignment).context("kafka assign")?;
    let (tx, arrivals) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(msg) => {
                    let at = Instant::now();
                    if let Some(seq) = msg.payload().and_then(seq_of)
                        && tx.send(Arrival { seq, at }).is_err()
                    {
                        return;
                    }
                }
                Err(e) => note!("kafka consumer: {e}"),
            }
        }
    });
    Ok(Route {
        name: format!("kafka topic, fetch.wait.max.ms={fetch_wait_ms}"),
        publisher: Publisher::Kafka {
            producer: kafka_producer(brokers, producer)?,
            topic: topic.to_owned(),
        },
        arrivals,
        next: 0,
        stray: 0,
        failed: 0,
        _subscriber: AbortOnDrop(task),
    })
}

/// Creates one-partition topics and waits until their metadata shows them.
async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
) -> anyhow::Result<()> {
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await.context("create topics")? {
        if let Err((name, code)) = result {
            bail!("create topic {name}: {code}");
        }
    }
    for name in names {
        let mut ready = false;
        for _ in 0..50 {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .context("topic metadata")?;
            ready = metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.partitions().iter().any(|p| p.leader() >= 0));
            if ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            bail!("topic {name} has no partition leader after 5 s");
        }
    }
    Ok(())
}

async fn delete_topics(admin: &AdminClient<DefaultClientContext>, names: &[String]) {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    match admin.delete_topics(&names, &options).await {
        Ok(results) => {
            for result in results {
                if let Err((name, code)) = result {
                    note!("delete topic {name}: {code}");
                }
            }
        }
        Err(e) => note!("delete topics: {e}"),
    }
}

/// Latency fetch waits tried for the Kafka consumer; the first is the engine's setting and is
/// also the one used for throughput.
const FETCH_WAITS_MS: [u32; 3] = [5, 1, 0];

/// The producer settings the engine uses, and the latency scenarios' producer.
const ENGINE_PRODUCER: ProducerConfig = ProducerConfig { linger_ms: 0, acks_all: true };

const BURST_PRODUCERS: [ProducerConfig; 4] = [
    ENGINE_PRODUCER,
    ProducerConfig { linger_ms: 5, acks_all: true },
    ProducerConfig { linger_ms: 0, acks_all: false },
    ProducerConfig { linger_ms: 5, acks_all: false },
];

async fn run(
    args: &Args,
    topics: &[String],
    report: &mut Report,
    admin: &AdminClient<DefaultClientContext>,
) -> anyhow::Result<()> {
    let pause = Duration::from_millis(args.pause_ms);
    create_topics(admin, topics).await?;
    let (latency_topics, burst_topic) = topics.split_at(FETCH_WAITS_MS.len());
    let burst_topic = burst_topic.first().context("a topic for the bursts")?;

    note!("redis pub/sub: latency…");
    let channel = format!("parla-route-bench:{}:conv", std::process::id());
    let mut redis = redis_route(&args.redis, channel).await?;
    redis.warm(args.warmup).await?;
    report.latency.push(redis.latency(args.n, pause).await?);

    for (fetch_wait, topic) in FETCH_WAITS_MS.into_iter().zip(latency_topics) {
        note!("kafka fetch.wait.max.ms={fetch_wait}: latency…");
        let mut kafka = kafka_route(&args.kafka, topic, fetch_wait, ENGINE_PRODUCER).await?;
        kafka.warm(args.warmup).await?;
        report.latency.push(kafka.latency(args.n, pause).await?);
    }

    note!("redis pub/sub: burst of {}…", args.burst);
    redis.warm(20).await?;
    let config = format!("pipelines of {REDIS_PIPELINE}, one connection");
    report.throughput.push(redis.burst(args.burst, &config).await?);
    drop(redis);

    let mut kafka =
        kafka_route(&args.kafka, burst_topic, FETCH_WAITS_MS[0], ENGINE_PRODUCER).await?;
    for producer in BURST_PRODUCERS {
        note!("kafka {}: burst of {}…", producer.label(), args.burst);
        kafka.publisher = Publisher::Kafka {
            producer: kafka_producer(&args.kafka, producer)?,
            topic: burst_topic.clone(),
        };
        kafka.warm(20).await?;
        report.throughput.push(kafka.burst(args.burst, &producer.label()).await?);
    }
    Ok(())
}

fn print_summary(report: &Report) {
    println!(
        "\nOne-way latency, {} events one at a time ({} ms pause), payload {} bytes:",
        report.n, report.pause_ms, report.payload_bytes
    );
    println!(
        "| route | received | lost | stray | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | mean ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &report.latency {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            r.route,
            r.received,
            r.lost,
            r.stray,
            r.p50_us / 1e3,
            r.p90_us / 1e3,
            r.p99_us / 1e3,
            r.p999_us / 1e3,
            r.max_us / 1e3,
            r.mean_us / 1e3
        );
    }
    println!("\nThroughput, bursts of {} events:", report.burst);
    println!(
        "| route | config | received | lost | dup | reordered | failed | published s | delivered s | events/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &report.throughput {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.0} |",
            r.route,
            r.config,
            r.received,
            r.lost,
            r.duplicates,
            r.reordered,
            r.failed_reports,
            r.publish_s,
            r.deliver_s,
            r.events_per_s
        );
    }
    println!("\nload average: start {} / end {}", report.loadavg_start, report.loadavg_end);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut report = Report {
        started_unix_s: started,
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
        payload_bytes: token_frame(0).len(),
        n: args.n,
        burst: args.burst,
        pause_ms: args.pause_ms,
        warmup: args.warmup,
        kafka_consumer: "StreamConsumer assigned to partition 0 (assign, no group membership), fetch.min.bytes=1",
        kafka_producer: "FutureProducer, socket.nagle.disable=true; latency: linger.ms=0, \
                         acks=all, idempotent",
        latency: Vec::new(),
        throughput: Vec::new(),
    };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &args.kafka).create().context("admin")?;
    let prefix = format!("parla-route-bench-{started}-{}", std::process::id());
    let topics: Vec<String> = FETCH_WAITS_MS
        .iter()
        .map(|w| format!("{prefix}-latency-fw{w}"))
        .chain([format!("{prefix}-burst")])
        .collect();
    let bound = Duration::from_secs(args.max_seconds);
    let outcome = match tokio::time::timeout(bound, run(&args, &topics, &mut report, &admin)).await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow::anyhow!("gave up after --max-seconds {}", args.max_seconds)),
    };
    delete_topics(&admin, &topics).await;
    report.loadavg_end = loadavg();
    print_summary(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encode the report")?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    outcome
}
