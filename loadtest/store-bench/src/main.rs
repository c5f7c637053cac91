//! `store-bench`: durable append throughput with group commit, per candidate embedded store.
//!
//! Each append does what `engine/adapters/store-redb/src/lib.rs` does: check the conversation exists, look up
//! the idempotency index (tenant, conversation, client_msg_id), check the seq follows the last one,
//! then insert the message under (tenant, conversation, seq) and the index entry → seq.
//!
//! Group commit: K client threads each submit one append at a time to one writer thread, which
//! takes the first queued request, drains up to B-1 more, applies them in one transaction, commits
//! with fsync, then acknowledges each. The baseline has no writer thread: one client, one
//! transaction and one fsync per append, called directly.
//!
//! Every commit is durable: redb `Durability::Immediate` (its default), SQLite WAL with
//! `synchronous=FULL`, fjall single-writer transactions with `PersistMode::SyncAll`.
//!
//! Usage: `store-bench [--messages N] [--engines redb,sqlite,fjall] [--runs R] [--batch B]
//! [--clients 1,16,256] [--dir /var/tmp]`

use std::{
    error::Error,
    path::{Path, PathBuf},
    sync::{Arc, Barrier, mpsc},
    thread,
    time::{Duration, Instant},
};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// One append, as the writer receives it.
#[derive(Debug)]
struct Append {
    tenant: Arc<str>,
    conversation: Arc<str>,
    client_msg_id: String,
    seq: u64,
    body: Vec<u8>,
}

impl Append {
    /// Client `client`'s `i`-th append to conversation (t, c), with seq `i + 1`.
    fn nth(client: usize, i: u64, t: &Arc<str>, c: &Arc<str>) -> Self {
        let cid = client_msg_id(client, i);
        Append {
            body: message_json(i, t, c, i + 1, &cid),
            tenant: t.clone(),
            conversation: c.clone(),
            client_msg_id: cid,
            seq: i + 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    Duplicate(u64),
    SeqConflict,
}

/// A store under test. `apply_batch` is one transaction and one durable commit.
trait Engine: Send {
    fn create_conversations(&mut self, convs: &[(Arc<str>, Arc<str>)]) -> Result<()>;
    fn apply_batch(&mut self, batch: &[&Append]) -> Result<Vec<Outcome>>;
    fn count_messages(&mut self) -> Result<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineKind {
    Redb,
    Sqlite,
    Fjall,
}

impl EngineKind {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "redb" => Ok(Self::Redb),
            "sqlite" => Ok(Self::Sqlite),
            "fjall" => Ok(Self::Fjall),
            other => Err(format!("unknown engine {other:?} (redb, sqlite, fjall)").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Redb => "redb 4",
            Self::Sqlite => "SQLite (rusqlite)",
            Self::Fjall => "fjall 3",
        }
    }

    fn open(self, dir: &Path) -> Result<Box<dyn Engine>> {
        Ok(match self {
            Self::Redb => Box::new(redb_engine::RedbEngine::open(dir)?),
            Self::Sqlite => Box::new(sqlite_engine::SqliteEngine::open(dir)?),
            Self::Fjall => Box::new(fjall_engine::FjallEngine::open(dir)?),
        })
    }
}

fn check_seq(last: u64, seq: u64) -> Result<Option<Outcome>> {
    if seq <= last {
        return Ok(Some(Outcome::SeqConflict));
    }
    if seq != last + 1 {
        return Err(format!("seq gap: last {last}, got {seq}").into());
    }
    Ok(None)
}

mod redb_engine {
    use super::{Append, Arc, Engine, Outcome, Path, Result, check_seq};
    use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

    const CONVERSATIONS: TableDefinition<(&str, &str), &[u8]> =
        TableDefinition::new("conversations");
    const MESSAGES: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("messages");
    const CLIENT_IDS: TableDefinition<(&str, &str, &str), u64> =
        TableDefinition::new("client_msg_ids");

    pub struct RedbEngine {
        db: Database,
    }

    impl RedbEngine {
        pub fn open(dir: &Path) -> Result<Self> {
            let db = Database::create(dir.join("parla.redb"))?;
            let txn = db.begin_write()?;
            {
                txn.open_table(CONVERSATIONS)?;
                txn.open_table(MESSAGES)?;
                txn.open_table(CLIENT_IDS)?;
            }
            txn.commit()?;
            Ok(Self { db })
        }
    }

    impl Engine for RedbEngine {
        fn create_conversations(&mut self, convs: &[(Arc<str>, Arc<str>)]) -> Result<()> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(CONVERSATIONS)?;
                for (t, c) in convs {
                    table.insert((&**t, &**c), br#"{"status":"open"}"#.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        }

        fn apply_batch(&mut self, batch: &[&Append]) -> Result<Vec<Outcome>> {
            // Default durability is Immediate: commit() returns after fsync.
            let txn = self.db.begin_write()?;
            let mut out = Vec::with_capacity(batch.len());
            {
                let conversations = txn.open_table(CONVERSATIONS)?;
                let mut messages = txn.open_table(MESSAGES)?;
                let mut client_ids = txn.open_table(CLIENT_IDS)?;
                for m in batch {
                    let (t, c) = (&*m.tenant, &*m.conversation);
                    if conversations.get((t, c))?.is_none() {
                        return Err("conversation not found".into());
                    }
                    let existing =
                        client_ids.get((t, c, m.client_msg_id.as_str()))?.map(|g| g.value());
                    if let Some(seq) = existing {
                        out.push(Outcome::Duplicate(seq));
                        continue;
                    }
                    let last = match messages.range((t, c, 0)..=(t, c, u64::MAX))?.next_back() {
                        Some(entry) => entry?.0.value().2,
                        None => 0,
                    };
                    if let Some(o) = check_seq(last, m.seq)? {
                        out.push(o);
                        continue;
                    }
                    messages.insert((t, c, m.seq), m.body.as_slice())?;
                    client_ids.insert((t, c, m.client_msg_id.as_str()), m.seq)?;
                    out.push(Outcome::Stored);
                }
            }
            txn.commit()?;
            Ok(out)
        }

        fn count_messages(&mut self) -> Result<u64> {
            use redb::ReadableDatabase;
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(MESSAGES)?.len()?)
        }
    }
}

mod sqlite_engine {
    use super::{Append, Arc, Engine, Outcome, Path, Result, check_seq};
    use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

    pub struct SqliteEngine {
        conn: Connection,
    }

    impl SqliteEngine {
        pub fn open(dir: &Path) -> Result<Self> {
            let conn = Connection::open(dir.join("parla.sqlite"))?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(format!("journal_mode is {mode}, not wal").into());
            }
            // FULL: the WAL is fsynced at every commit, so a committed append survives power loss.
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(
                "CREATE TABLE conversations(
                     tenant TEXT NOT NULL, conv TEXT NOT NULL, body BLOB NOT NULL,
                     PRIMARY KEY (tenant, conv)) WITHOUT ROWID;
                 CREATE TABLE messages(
                     tenant TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,
                     body BLOB NOT NULL,
                     PRIMARY KEY (tenant, conv, seq)) WITHOUT ROWID;
                 CREATE TABLE client_msg_ids(
                     tenant TEXT NOT NULL, conv TEXT NOT NULL, client_msg_id TEXT NOT NULL,
                     seq INTEGER NOT NULL,
                     PRIMARY KEY (tenant, conv, client_msg_id)) WITHOUT ROWID;",
            )?;
            Ok(Self { conn })
        }
    }

    impl Engine for SqliteEngine {
        fn create_conversations(&mut self, convs: &[(Arc<str>, Arc<str>)]) -> Result<()> {
            let tx = self.conn.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO conversations(tenant, conv, body) VALUES (?1, ?2, ?3)",
                )?;
                for (t, c) in convs {
                    ins.execute(params![&**t, &**c, br#"{"status":"open"}"#.as_slice()])?;
                }
            }
            tx.commit()?;
            Ok(())
        }

        fn apply_batch(&mut self, batch: &[&Append]) -> Result<Vec<Outcome>> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(batch.len());
            {
                let mut conv = tx.prepare_cached(
                    "SELECT 1 FROM conversations WHERE tenant = ?1 AND conv = ?2",
                )?;
                let mut dup = tx.prepare_cached(
                    "SELECT seq FROM client_msg_ids
                     WHERE tenant = ?1 AND conv = ?2 AND client_msg_id = ?3",
                )?;
                let mut last = tx.prepare_cached(
                    "SELECT seq FROM messages WHERE tenant = ?1 AND conv = ?2
                     ORDER BY seq DESC LIMIT 1",
                )?;
                let mut ins_msg = tx.prepare_cached(
                    "INSERT INTO messages(tenant, conv, seq, body) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut ins_cid = tx.prepare_cached(
                    "INSERT INTO client_msg_ids(tenant, conv, client_msg_id, seq)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for m in batch {
                    let (t, c) = (&*m.tenant, &*m.conversation);
                    if !conv.exists(params![t, c])? {
                        return Err("conversation not found".into());
                    }
                    let existing: Option<i64> =
                        dup.query_row(params![t, c, m.client_msg_id], |r| r.get(0)).optional()?;
                    if let Some(seq) = existing {
                        out.push(Outcome::Duplicate(u64::try_from(seq)?));
                        continue;
                    }
                    let last_seq: Option<i64> =
                        last.query_row(params![t, c], |r| r.get(0)).optional()?;
                    let last_seq = u64::try_from(last_seq.unwrap_or(0))?;
                    if let Some(o) = check_seq(last_seq, m.seq)? {
                        out.push(o);
                        continue;
                    }
                    let seq = i64::try_from(m.seq)?;
                    ins_msg.execute(params![t, c, seq, m.body])?;
                    ins_cid.execute(params![t, c, m.client_msg_id, seq])?;
                    out.push(Outcome::Stored);
                }
            }
            tx.commit()?;
            Ok(out)
        }

        fn count_messages(&mut self) -> Result<u64> {
            let n: i64 = self.conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
            Ok(u64::try_from(n)?)
        }
    }
}

mod fjall_engine {
    use super::{Append, Arc, Engine, Outcome, Path, Result, check_seq};
    use fjall::{
        KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase,
        SingleWriterTxKeyspace,
    };

    pub struct FjallEngine {
        db: SingleWriterTxDatabase,
        conversations: SingleWriterTxKeyspace,
        messages: SingleWriterTxKeyspace,
        client_ids: SingleWriterTxKeyspace,
    }

    /// `tenant 0 conversation 0`: ids never contain NUL, so this prefix is unambiguous.
    fn prefix(t: &str, c: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(t.len() + c.len() + 2 + 36);
        k.extend_from_slice(t.as_bytes());
        k.push(0);
        k.extend_from_slice(c.as_bytes());
        k.push(0);
        k
    }

    impl FjallEngine {
        pub fn open(dir: &Path) -> Result<Self> {
            let db = SingleWriterTxDatabase::builder(dir.join("fjall")).open()?;
            let conversations = db.keyspace("conversations", KeyspaceCreateOptions::default)?;
            let messages = db.keyspace("messages", KeyspaceCreateOptions::default)?;
            let client_ids = db.keyspace("client_msg_ids", KeyspaceCreateOptions::default)?;
            Ok(Self { db, conversations, messages, client_ids })
        }
    }

    impl Engine for FjallEngine {
        fn create_conversations(&mut self, convs: &[(Arc<str>, Arc<str>)]) -> Result<()> {
            let mut tx = self.db.write_tx().durability(Some(PersistMode::SyncAll));
            for (t, c) in convs {
                tx.insert(&self.conversations, prefix(t, c), br#"{"status":"open"}"#.as_slice());
            }
            tx.commit()?;
            Ok(())
        }

        fn apply_batch(&mut self, batch: &[&Append]) -> Result<Vec<Outcome>> {
            let mut tx = self.db.write_tx().durability(Some(PersistMode::SyncAll));
            let mut out = Vec::with_capacity(batch.len());
            for m in batch {
                let p = prefix(&m.tenant, &m.conversation);
                if !tx.contains_key(&self.conversations, &p)? {
                    return Err("conversation not found".into());
                }
                let mut cid_key = p.clone();
                cid_key.extend_from_slice(m.client_msg_id.as_bytes());
                if let Some(v) = tx.get(&self.client_ids, &cid_key)? {
                    let bytes: [u8; 8] = (*v).try_into()?;
                    out.push(Outcome::Duplicate(u64::from_be_bytes(bytes)));
                    continue;
                }
                let last = match tx.prefix(&self.messages, &p).next_back() {
                    Some(guard) => {
                        let key = guard.key()?;
                        let tail = key.get(key.len().saturating_sub(8)..).unwrap_or_default();
                        u64::from_be_bytes(tail.try_into()?)
                    }
                    None => 0,
                };
                if let Some(o) = check_seq(last, m.seq)? {
                    out.push(o);
                    continue;
                }
                let mut msg_key = p;
                msg_key.extend_from_slice(&m.seq.to_be_bytes());
                tx.insert(&self.messages, msg_key, m.body.as_slice());
                tx.insert(&self.client_ids, cid_key, m.seq.to_be_bytes().as_slice());
                out.push(Outcome::Stored);
            }
            // SyncAll: the journal is fsynced before commit returns.
            tx.commit()?;
            Ok(out)
        }

        fn count_messages(&mut self) -> Result<u64> {
            let snapshot = self.db.read_tx();
            Ok(u64::try_from(snapshot.len(&self.messages)?)?)
        }
    }
}

/// A ~300-byte JSON message, shaped like the engine's `Message`.
fn message_json(id: u64, t: &str, c: &str, seq: u64, cid: &str) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"m-{id:032x}","tenant_id":"{t}","conversation_id":"{c}","seq":{seq},"client_msg_id":"{cid}","sender":"user","kind":"text","created_at":"2026-11-25T20:40:23.123Z","text":""#
    );
    let mut s = head;
    let filler = "Hello, I would like to know the status of my order please. ";
    while s.len() < 298 {
        s.push_str(filler);
    }
    s.truncate(298);
    s.push_str(r#""}"#);
    s.into_bytes()
}

fn client_msg_id(client: usize, i: u64) -> String {
    format!("{client:08x}-0000-4000-8000-{i:012x}")
}

fn conv_of(client: usize) -> (Arc<str>, Arc<str>) {
    (
        Arc::from(format!("tenant-{:04}", client % 4)),
        Arc::from(format!("conv-{client:08}-7f3a-4c1e-9b2d-0123456789ab")),
    )
}

#[derive(Debug, Clone, Copy)]
struct Config {
    clients: usize,
    /// `None`: the baseline, no writer thread, one transaction per append.
    batch: Option<usize>,
}

impl Config {
    fn label(self) -> String {
        match self.batch {
            None => format!("K={} no batching (baseline)", self.clients),
            Some(b) => format!("K={} B={b}", self.clients),
        }
    }
}

#[derive(Debug)]
struct RunResult {
    appends: u64,
    commits: u64,
    wall: Duration,
    /// Submit → ack, microseconds, sorted.
    latencies_us: Vec<u64>,
}

impl RunResult {
    fn percentile_ms(&self, p: usize) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let idx = (n * p / 100).min(n - 1);
        self.latencies_us.get(idx).copied().unwrap_or_default() as f64 / 1000.0
    }
}

struct Request {
    append: Append,
    reply: mpsc::Sender<Result<Outcome>>,
}

/// Messages for client `client` of `clients`, out of `total`.
fn share(total: u64, clients: usize, client: usize) -> u64 {
    let k = clients as u64;
    total / k + u64::from((client as u64) < total % k)
}

fn run(kind: EngineKind, cfg: Config, total: u64, dir: &Path) -> Result<RunResult> {
    let mut engine = kind.open(dir)?;
    let convs: Vec<_> = (0..cfg.clients).map(conv_of).collect();
    engine.create_conversations(&convs)?;

    let (result, mut engine) = match cfg.batch {
        None => run_direct(engine, &convs, total)?,
        Some(b) => run_group_commit(engine, &convs, total, b)?,
    };

    // Sanity: everything is there, and a retried client_msg_id is answered as a duplicate.
    let stored = engine.count_messages()?;
    if stored != total {
        return Err(format!("{} stored {stored} messages, expected {total}", kind.name()).into());
    }
    let (t, c) = conv_of(0);
    let retry = Append {
        body: message_json(u64::MAX, &t, &c, 1, &client_msg_id(0, 0)),
        tenant: t,
        conversation: c,
        client_msg_id: client_msg_id(0, 0),
        seq: share(total, cfg.clients, 0) + 1,
    };
    let outcome = engine.apply_batch(&[&retry])?;
    if outcome != [Outcome::Duplicate(1)] {
        return Err(
            format!("{}: retry gave {outcome:?}, expected Duplicate(1)", kind.name()).into()
        );
    }
    Ok(result)
}

/// The baseline: the client calls the store itself, one transaction and commit per append.
fn run_direct(
    mut engine: Box<dyn Engine>,
    convs: &[(Arc<str>, Arc<str>)],
    total: u64,
) -> Result<(RunResult, Box<dyn Engine>)> {
    let (t, c) = convs.first().cloned().ok_or("no conversation")?;
    let mut latencies = Vec::with_capacity(usize::try_from(total)?);
    let start = Instant::now();
    for i in 0..total {
        let a = Append::nth(0, i, &t, &c);
        let submitted = Instant::now();
        let outcome = engine.apply_batch(&[&a])?;
        latencies.push(u64::try_from(submitted.elapsed().as_micros())?);
        if outcome != [Outcome::Stored] {
            return Err(format!("append {i}: {outcome:?}").into());
        }
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    Ok((RunResult { appends: total, commits: total, wall, latencies_us: latencies }, engine))
}

/// K client threads, one writer thread draining up to `max_batch` requests per transaction.
fn run_group_commit(
    mut engine: Box<dyn Engine>,
    convs: &[(Arc<str>, Arc<str>)],
    total: u64,
    max_batch: usize,
) -> Result<(RunResult, Box<dyn Engine>)> {
    let clients = convs.len();
    // Bounded like the engine's queue; with one request in flight per client it never fills.
    let (tx, rx) = mpsc::sync_channel::<Request>(4096);
    let max_batch = max_batch.max(1);

    let writer = thread::Builder::new().name("bench-writer".into()).spawn(
        move || -> Result<(u64, Box<dyn Engine>)> {
            let mut commits = 0u64;
            let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
            while let Ok(first) = rx.recv() {
                batch.push(first);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(req) => batch.push(req),
                        Err(_) => break,
                    }
                }
                let appends: Vec<&Append> = batch.iter().map(|r| &r.append).collect();
                let outcome = engine.apply_batch(&appends);
                commits += 1;
                match outcome {
                    Ok(outcomes) => {
                        for (req, o) in batch.drain(..).zip(outcomes) {
                            let _ = req.reply.send(Ok(o));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for req in batch.drain(..) {
                            let _ = req.reply.send(Err(msg.clone().into()));
                        }
                    }
                }
            }
            Ok((commits, engine))
        },
    )?;

    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::with_capacity(clients);
    for (client, (t, c)) in convs.iter().cloned().enumerate() {
        let tx = tx.clone();
        let barrier = barrier.clone();
        let n = share(total, clients, client);
        handles.push(
            thread::Builder::new()
                .name(format!("bench-client-{client}"))
                .stack_size(256 * 1024)
                .spawn(move || -> Result<Vec<u64>> {
                    let (reply, acks) = mpsc::channel();
                    let mut latencies = Vec::with_capacity(usize::try_from(n)?);
                    barrier.wait();
                    for i in 0..n {
                        let append = Append::nth(client, i, &t, &c);
                        let submitted = Instant::now();
                        tx.send(Request { append, reply: reply.clone() })
                            .map_err(|_| "writer gone")?;
                        let outcome = acks.recv().map_err(|_| "writer dropped the reply")??;
                        latencies.push(u64::try_from(submitted.elapsed().as_micros())?);
                        if outcome != Outcome::Stored {
                            return Err(format!("client {client} append {i}: {outcome:?}").into());
                        }
                    }
                    Ok(latencies)
                })?,
        );
    }
    drop(tx);

    barrier.wait();
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(usize::try_from(total)?);
    for h in handles {
        latencies.extend(h.join().map_err(|_| "client thread panicked")??);
    }
    let wall = start.elapsed();
    let (commits, engine) = writer.join().map_err(|_| "writer thread panicked")??;
    latencies.sort_unstable();
    Ok((RunResult { appends: total, commits, wall, latencies_us: latencies }, engine))
}

#[derive(Debug, Clone, Copy)]
struct Metrics {
    appends_per_s: f64,
    commits_per_s: f64,
    mean_batch: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Metrics {
    fn of(r: &RunResult) -> Self {
        let secs = r.wall.as_secs_f64();
        Self {
            appends_per_s: r.appends as f64 / secs,
            commits_per_s: r.commits as f64 / secs,
            mean_batch: r.appends as f64 / r.commits as f64,
            p50_ms: r.percentile_ms(50),
            p99_ms: r.percentile_ms(99),
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[derive(Debug)]
struct Args {
    messages: u64,
    engines: Vec<EngineKind>,
    runs: usize,
    batch: usize,
    clients: Vec<usize>,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        messages: 20_000,
        engines: vec![EngineKind::Redb, EngineKind::Sqlite],
        runs: 1,
        batch: 512,
        clients: vec![1, 16, 256],
        dir: PathBuf::from("/var/tmp"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!(
                "store-bench [--messages N] [--engines redb,sqlite,fjall] [--runs R] \
                 [--batch B] [--clients 1,16,256] [--dir /var/tmp]"
            );
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--messages" => args.messages = value.parse()?,
            "--engines" => {
                args.engines = value.split(',').map(EngineKind::parse).collect::<Result<_>>()?;
            }
            "--runs" => args.runs = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--clients" => {
                args.clients = value
                    .split(',')
                    .map(|s| s.parse::<usize>().map_err(BoxError::from))
                    .collect::<Result<_>>()?;
            }
            "--dir" => args.dir = PathBuf::from(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if args.messages == 0 || args.runs == 0 || args.clients.contains(&0) {
        return Err("--messages, --runs and --clients must be positive".into());
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let mut configs = vec![Config { clients: 1, batch: None }];
    configs.extend(args.clients.iter().map(|&k| Config { clients: k, batch: Some(args.batch) }));

    println!(
        "store-bench: {} messages per run, {} run(s) per configuration, databases under {}",
        args.messages,
        args.runs,
        args.dir.display()
    );
    println!("load average at start: {}", loadavg());
    // Runs are interleaved (run 1 of everything, then run 2, ...) so that a slow spell of the
    // disk or a busy neighbour does not land on one engine only.
    let mut rows: Vec<(usize, usize, usize, RunResult)> = Vec::new();
    for r in 1..=args.runs {
        for (ci, &cfg) in configs.iter().enumerate() {
            for (ei, &kind) in args.engines.iter().enumerate() {
                let dir = args
                    .dir
                    .join(format!("parla-store-bench-{}-{kind:?}-{ci}-{r}", std::process::id()));
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::create_dir_all(&dir)?;
                let res = run(kind, cfg, args.messages, &dir);
                std::fs::remove_dir_all(&dir)?;
                rows.push((ei, ci, r, res?));
            }
        }
    }
    println!("load average at end: {}", loadavg());
    rows.sort_by_key(|&(ei, ci, r, _)| (ei, ci, r));

    println!();
    println!(
        "| engine | configuration | run | appends/s | commits/s | mean batch | p50 ms | p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (ei, ci, r, res) in &rows {
        let (kind, cfg) = (args.engines[*ei], configs[*ci]);
        let m = Metrics::of(res);
        println!(
            "| {} | {} | {r} | {:.0} | {:.0} | {:.1} | {:.2} | {:.2} |",
            kind.name(),
            cfg.label(),
            m.appends_per_s,
            m.commits_per_s,
            m.mean_batch,
            m.p50_ms,
            m.p99_ms,
        );
    }

    println!();
    println!("Summary, min–max over {} run(s):", args.runs);
    println!();
    println!("| engine | configuration | appends/s | commits/s | mean batch | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (ei, &kind) in args.engines.iter().enumerate() {
        for (ci, &cfg) in configs.iter().enumerate() {
            let ms: Vec<Metrics> = rows
                .iter()
                .filter(|row| row.0 == ei && row.1 == ci)
                .map(|row| Metrics::of(&row.3))
                .collect();
            let range = |f: fn(&Metrics) -> f64, prec: usize| {
                let lo = ms.iter().map(f).fold(f64::INFINITY, f64::min);
                let hi = ms.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
                if format!("{lo:.prec$}") == format!("{hi:.prec$}") {
                    format!("{lo:.prec$}")
                } else {
                    format!("{lo:.prec$}–{hi:.prec$}")
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                cfg.label(),
                range(|m| m.appends_per_s, 0),
                range(|m| m.commits_per_s, 0),
                range(|m| m.mean_batch, 1),
                range(|m| m.p50_ms, 2),
                range(|m| m.p99_ms, 2),
            );
        }
    }
    Ok(())
}
