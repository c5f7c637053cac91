//! Worker processes: one process may hold at most 20,000 open files on this machine (a hard
//! limit), so the clients are spread over processes of this same binary
//! (`parla-loadtest worker`), each with at most `--per-worker` sockets. Every run uses
//! workers, even a small one: one code path.
//!
//! The parent talks to a worker over its stdin/stdout, one JSON object per line:
//! - parent → worker: the [`WorkerConfig`] first, then [`Control`]s (`start`, `round`,
//!   `stop`);
//! - worker → parent: [`Event`]s: `ready` once every client has connected (or failed),
//!   `round_done` per burst round, and finally `result` with the counters, the checks and the
//!   histograms. Anything else a worker says goes to stderr.
//!
//! A worker whose stdin closes (the parent died or gave up) exits at once: no orphan load.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{mpsc, watch},
    task::JoinSet,
    time::{Instant, sleep_until},
};

use crate::{
    client::{ConnEvent, Phase, RECONNECT_ATTEMPTS, Shared, visit},
    report::WorkerResult,
    scenario::Plan,
};

/// One worker's share of the clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// Global index of its first client (indices pick the source address and the endpoint).
    pub first: usize,
    pub count: usize,
    /// Its share of `--ramp`, connections per second.
    pub ramp_per_s: f64,
    pub plan: Plan,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Control {
    Start,
    Round { n: u32 },
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready { connected: u64, failed: u64 },
    RoundDone { n: u32, drain_us: u64, timed_out: bool },
    Result { result: Box<WorkerResult> },
}

async fn emit(out: &mut tokio::io::Stdout, event: &Event) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}

/// A burst round in progress in this worker.
#[derive(Debug)]
struct Round {
    n: u32,
    go: Instant,
    waiting: u64,
    last: Instant,
    deadline: Instant,
}

/// `parla-loadtest worker`: reads its configuration, runs its clients, reports.
pub async fn worker_main() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let first = stdin.next_line().await?.context("worker: no configuration on stdin")?;
    let cfg: WorkerConfig = serde_json::from_str(&first).context("worker: configuration")?;
    if cfg.plan.endpoints.is_empty() || cfg.count == 0 {
        bail!("worker: nothing to do");
    }
    let mut out = tokio::io::stdout();
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        plan: cfg.plan.clone(),
        phase: phase_rx,
        events: events_tx,
        result: Mutex::new(WorkerResult::default()),
    });
    let drain = Duration::from_millis(cfg.plan.drain_ms);

    // The ramp: client j starts at j / rate.
    let ramp = {
        let shared = shared.clone();
        let (first, count, rate) = (cfg.first, cfg.count, cfg.ramp_per_s.max(0.001));
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut set = JoinSet::new();
            for j in 0..count {
                sleep_until(t0 + Duration::from_secs_f64(j as f64 / rate)).await;
                set.spawn(visit(first + j, shared.clone()));
            }
            set
        })
    };

    let (mut connected, mut failed, mut ready) = (0u64, 0u64, false);
    let mut round: Option<Round> = None;
    loop {
        let deadline = round.as_ref().map(|r| r.deadline);
        tokio::select! {
            event = events.recv() => {
                match event {
                    Some(ConnEvent::Connected) => connected += 1,
                    Some(ConnEvent::Failed) => failed += 1,
                    Some(ConnEvent::RoundDone { round: n, at }) => {
                        if let Some(r) = round.as_mut().filter(|r| r.n == n) {
                            r.waiting = r.waiting.saturating_sub(1);
                            r.last = r.last.max(at);
                        }
                    }
                    None => {}
                }
                if !ready && connected + failed == cfg.count as u64 {
                    ready = true;
                    emit(&mut out, &Event::Ready { connected, failed }).await?;
                }
                if let Some(r) = round.take_if(|r| r.waiting == 0) {
                    let drain_us = (r.last - r.go).as_micros() as u64;
                    emit(&mut out, &Event::RoundDone { n: r.n, drain_us, timed_out: false }).await?;
                }
            }
            line = stdin.next_line() => {
                let Ok(Some(line)) = line else {
                    // The parent is gone: stop the load now.
                    std::process::exit(2);
                };
                match serde_json::from_str::<Control>(&line).context("worker: control line")? {
                    Control::Start => {
                        let _ = phase_tx.send(Phase::Running);
                    }
                    Control::Round { n } => {
                        let go = Instant::now();
                        round = Some(Round { n, go, waiting: connected, last: go, deadline: go + drain });
                        let _ = phase_tx.send(Phase::Round(n));
                        if connected == 0 {
                            round = None;
                            emit(&mut out, &Event::RoundDone { n, drain_us: 0, timed_out: false }).await?;
                        }
                    }
                    Control::Stop => {
                        let _ = phase_tx.send(Phase::Stop);
                        break;
                    }
                }
            }
            () = async { if let Some(d) = deadline { sleep_until(d).await } else { std::future::pending().await } } => {
                if let Some(r) = round.take() {
                    let drain_us = (Instant::now() - r.go).as_micros() as u64;
                    emit(&mut out, &Event::RoundDone { n: r.n, drain_us, timed_out: true }).await?;
                }
            }
        }
    }

    // Every visitor is bounded: the drain, then at most a reconnect's attempts.
    let patience = drain
        + Duration::from_millis(cfg.plan.connect_timeout_ms) * (RECONNECT_ATTEMPTS + 1)
        + Duration::from_secs(10);
    let mut set = ramp.await.context("worker: ramp")?;
    let all_done =
        tokio::time::timeout(patience, async { while set.join_next().await.is_some() {} }).await;
    if all_done.is_err() {
        set.abort_all();
        crate::note!(
            "worker: {} clients did not finish in {patience:?}; reporting without them",
            set.len()
        );
    }
    let result = shared.result.lock().unwrap_or_else(|e| e.into_inner()).clone();
    emit(&mut out, &Event::Result { result: Box::new(result) }).await?;
    Ok(())
}

/// The parent's handle on a worker process.
#[derive(Debug)]
pub struct WorkerProc {
    _child: Child,
    pub pid: Option<u32>,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl WorkerProc {
    /// Starts `exe worker` and hands it its configuration.
    pub async fn spawn(exe: &Path, cfg: &WorkerConfig) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting a worker ({})", exe.display()))?;
        let pid = child.id();
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut line = serde_json::to_vec(cfg)?;
        line.push(b'\n');
        stdin.write_all(&line).await.context("configuring a worker")?;
        Ok(Self { _child: child, pid, stdin, lines: BufReader::new(stdout).lines() })
    }

    pub async fn send(&mut self, control: &Control) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(control)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await.context("a worker stopped listening")?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub async fn next(&mut self) -> anyhow::Result<Event> {
        let line =
            self.lines.next_line().await?.context("a worker exited early (see its stderr)")?;
        serde_json::from_str(&line).with_context(|| format!("a worker said {line:.200}"))
    }
}
