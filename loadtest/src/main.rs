//! `parla-loadtest`: a load harness for Parla's widget WebSocket, side by side with two
//! baselines in the same run and with the same clients — a raw tokio-tungstenite server (the
//! transport's limit) and a Socket.IO server (what a chat is usually built on).
//!
//! It starts each target as a child process, opens N visitor connections from source
//! addresses spread over 127.0.0.0/8 (ramped), runs a scenario (`idle`, `chat`, `burst`,
//! `reconnect`), checks every frame of every conversation (no seq lost, duplicated or out of
//! order; every message echoed and answered; resumes continue exactly after `last_seq`), and
//! measures latencies (HdrHistogram), throughput, the server's memory per connection and CPU,
//! and its own CPU. Any integrity failure makes the exit code nonzero.
//!
//! # Layout
//! - `main`: the command line.
//! - `run`: the parent: per scenario and target, server → workers → phases → merged report.
//! - `worker`: worker processes (`parla-loadtest worker`) holding the client sockets, and
//!   the parent's handle on them (JSON lines over stdin/stdout).
//! - `client`: one simulated visitor (socket, handshake, scenario, bookkeeping); `--hold`.
//! - `check`: the per-conversation integrity checker.
//! - `scenario`: the scenarios and the plan every client follows.
//! - `servers`: starting the targets; the raw baseline server (`parla-loadtest serve-raw`).
//! - `socketio`: Engine.IO v4 / Socket.IO v5 framing over a plain WebSocket.
//! - `procstat`: RSS, CPU time and open files from /proc.
//! - `report`: histograms, counters, `report.json` and the markdown summary.
//! - `plot`: `latency.svg`, hand-written.
//!
//! # Concurrency model
//! The parent runs one target at a time. Its workers (⌈N / `--per-worker`⌉ processes, as one
//! process may hold at most 20,000 open files here) each run a multi-threaded tokio runtime
//! with one task per visitor; the task owns its socket and bookkeeping and follows the
//! worker's phase through a watch channel. Latency samples reach the worker's histograms in
//! batches under a mutex; the parent merges the workers' results at the end.
//!
//! Exit code: 0 every run passed; 1 a run failed (integrity, connections, a target error);
//! 2 bad arguments; 3 the harness itself failed (e.g. the global deadline).

use std::{path::PathBuf, process::ExitCode};

use clap::{ArgAction, Parser, Subcommand};
use serde::Serialize;

mod check;
mod client;
mod plot;
mod procstat;
mod report;
mod run;
mod scenario;
mod servers;
mod socketio;
mod worker;

/// Progress and errors, on stderr, apart from the figures on stdout.
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)] // The one place this binary writes to stderr.
        {
            eprintln!($($arg)*);
        }
    }};
}
pub(crate) use note;

use scenario::ScenarioArg;
use servers::Target;

/// The Socket.IO baseline's server, in this crate.
const SOCKETIO_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/socketio/server.js");

#[derive(Debug, Parser)]
#[command(
    name = "parla-loadtest",
    about = "Load Parla's widget WebSocket beside a raw WebSocket and a Socket.IO baseline; check every frame",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The raw WebSocket baseline server (started by the harness itself).
    #[command(hide = true)]
    ServeRaw(servers::RawArgs),
    /// A worker process holding client sockets (started by the harness itself).
    #[command(hide = true)]
    Worker,
}

/// The run's settings; all of them land in report.json.
#[derive(Debug, clap::Args, Serialize)]
pub struct Args {
    /// Targets, each started as its own process: parla, raw, socketio.
    #[arg(long, value_delimiter = ',', default_value = "parla,raw,socketio")]
    pub targets: Vec<Target>,
    /// Scenarios: idle, chat, burst, reconnect, or all.
    #[arg(long, value_delimiter = ',', default_value = "chat")]
    pub scenario: Vec<ScenarioArg>,
    /// Visitor connections (one conversation each).
    #[arg(long, short = 'n', alias = "conversations", default_value_t = 100)]
    pub connections: usize,
    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp: f64,
    /// idle: how long the connections are held, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub idle_secs: f64,
    /// chat, reconnect: how long messages are sent, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// chat, reconnect: time between two messages of one conversation, ms; 0 = closed loop
    /// (each conversation keeps --max-in-flight messages outstanding: the most throughput).
    #[arg(long, default_value_t = 1000.0)]
    pub interval_ms: f64,
    /// Each interval varies uniformly within ± this fraction.
    #[arg(long, default_value_t = 0.2)]
    pub jitter: f64,
    /// Target total messages per second, spread over the conversations (overrides
    /// --interval-ms: each conversation sends every connections / rate seconds).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Unanswered messages a conversation may have; a tick beyond it is skipped (and counted).
    #[arg(long, default_value_t = 4)]
    pub max_in_flight: usize,
    /// burst: rounds (every connection sends at the same instant, then all drain).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// reconnect: share of the sockets dropped (TCP close, no WebSocket close).
    #[arg(long, default_value_t = 0.2)]
    pub drop_fraction: f64,
    /// reconnect: seconds of chat before the drop (default: a third of --duration).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// reconnect: each dropped socket reconnects after a random delay up to this, ms.
    #[arg(long, default_value_t = 500)]
    pub reconnect_spread_ms: u64,
    /// After the window (and per burst round): how long replies may still take, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,
    /// Per connection attempt: TCP connect + WebSocket handshake + welcome, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub connect_timeout_secs: f64,
    /// What each message says (the default is a demo-bot intent; `{n}` becomes a number
    /// unique to each message).
    #[arg(long, default_value = "what happens if I reload the page")]
    pub text: String,
    /// Parla bot to talk to.
    #[arg(long, default_value = "demo")]
    pub bot: String,
    /// The parla binary (default: $CARGO_TARGET_DIR/release/parla, else target/release/parla).
    #[arg(long, env = "PARLA_BIN")]
    pub parla_bin: Option<PathBuf>,
    /// Load already running Parla servers instead of starting one (comma-separated widget
    /// socket URLs, used round-robin: a cluster's nodes; a reconnect moves to the next one,
    /// since a cluster must resume a conversation on any node).
    #[arg(long, alias = "url", value_delimiter = ',')]
    pub parla_url: Vec<String>,
    /// With --parla-url: the servers' pids, for their memory and CPU.
    #[arg(long, value_delimiter = ',')]
    pub parla_pid: Vec<u32>,
    /// Extra environment for the parla server this harness starts (repeatable), e.g.
    /// PARLA__EMBEDDINGS__LOCAL_MODEL= (empty: no model to load).
    #[arg(long, value_name = "KEY=VALUE")]
    pub parla_env: Vec<String>,
    /// The Socket.IO baseline's server.js (its node_modules beside it: `npm ci`).
    #[arg(long, default_value = SOCKETIO_SERVER)]
    pub socketio_server: PathBuf,
    /// The node binary.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// Socket.IO connection state recovery (so the reconnect scenario resumes there too).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub socketio_recovery: bool,
    /// Client sockets per worker process (each process may open at most 20,000 files).
    #[arg(long, default_value_t = 15_000)]
    pub per_worker: usize,
    /// Client sockets per loopback source address.
    #[arg(long, default_value_t = 10_000)]
    pub per_source: usize,
    /// Pause before measuring the server's memory (after start, after the connections), ms.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// The whole invocation aborts (nonzero exit) after this many seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub deadline: f64,
    /// Write report.json, latency.svg (and one per scenario) and the server logs here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of a run: open this many conversations on --parla-url, print `holding N` and
    /// keep them idle until stdin closes (scripts/bench-memory.sh measures the server then).
    #[arg(long)]
    pub hold: Option<usize>,
    /// Fault injection for tests: the raw server skips every Nth frame it sends.
    #[arg(long, hide = true, default_value_t = 0)]
    pub raw_drop_every: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::ServeRaw(args)) => servers::serve_raw(args).await.map(|()| true),
        Some(Command::Worker) => worker::worker_main().await.map(|()| true),
        None => {
            if let Err(e) = run::validate(&cli.run) {
                note!("parla-loadtest: {e:#}");
                return ExitCode::from(2);
            }
            run::main(cli.run).await
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            note!("parla-loadtest: {e:#}");
            ExitCode::from(3)
        }
    }
}
