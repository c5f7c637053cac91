//! The parent process: for each scenario, for each target — start the server, measure it
//! idle, spawn the workers, wait until every client is connected, measure again, run the
//! scenario's window, measure, stop, collect and merge the workers' results, kill the server.
//! Then `report.json`, the SVG plots and the markdown summary.
//!
//! Every wait is bounded (ramp, rounds, drain, results) and the whole invocation has a global
//! deadline; children are killed when their handles drop, so an abort leaves nothing behind.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::time::{Instant, sleep, timeout};

use crate::{
    Args,
    client::RECONNECT_ATTEMPTS,
    plot,
    procstat::{self, Snapshot},
    report::{
        BurstFigures, Connections, HarnessFigures, Machine, Report, RunReport, ServerFigures,
        Throughput, TokenStats, WorkerResult,
    },
    scenario::{self, Plan, Scenario},
    servers::{self, Target},
    worker::{Control, Event, WorkerConfig, WorkerProc},
};

/// Bounds that keep every run finite and on this machine.
pub const MAX_CONNECTIONS: usize = 200_000;
pub const MAX_WINDOW_SECS: f64 = 3600.0;
pub const MAX_ROUNDS: u32 = 1000;
/// A worker keeps some files for itself (runtime, pipes) and a reconnect holds two sockets
/// for a moment: 18,000 sockets leave room under the 20,000 limit.
pub const MAX_PER_WORKER: usize = 18_000;
/// Ephemeral ports per source address with a bind before connect: ~28k; keep a margin.
pub const MAX_PER_SOURCE: usize = 20_000;

pub fn validate(args: &Args) -> anyhow::Result<()> {
    let n = args.connections;
    if n == 0 || n > MAX_CONNECTIONS {
        bail!("--connections must be 1..={MAX_CONNECTIONS}");
    }
    if args.per_worker == 0 || args.per_worker > MAX_PER_WORKER {
        bail!("--per-worker must be 1..={MAX_PER_WORKER} (one process holds at most 20,000 files)");
    }
    if args.per_source == 0 || args.per_source > MAX_PER_SOURCE {
        bail!("--per-source must be 1..={MAX_PER_SOURCE}");
    }
    for (name, v) in [("--duration", args.duration), ("--idle-secs", args.idle_secs)] {
        if !positive(v) || v > MAX_WINDOW_SECS {
            bail!("{name} must be in (0, {MAX_WINDOW_SECS}]");
        }
    }
    if !positive(args.ramp) || !positive(args.deadline) {
        bail!("--ramp and --deadline must be positive");
    }
    if !(args.interval_ms == 0.0 || positive(args.interval_ms)) {
        bail!("--interval-ms must be positive, or 0 for a closed loop");
    }
    if args.rate.is_some_and(|r| !positive(r)) {
        bail!("--rate must be positive");
    }
    if !(0.0..1.0).contains(&args.jitter) || !(0.0..=1.0).contains(&args.drop_fraction) {
        bail!("--jitter must be in [0, 1) and --drop-fraction in [0, 1]");
    }
    if args.warmup.is_some_and(|w| !(0.0..args.duration).contains(&w)) {
        bail!("--warmup must be in [0, --duration)");
    }
    if args.max_in_flight == 0 || args.rounds == 0 || args.rounds > MAX_ROUNDS {
        bail!("--max-in-flight must be at least 1 and --rounds 1..={MAX_ROUNDS}");
    }
    if !(0.0..=600.0).contains(&args.drain_secs)
        || !positive(args.connect_timeout_secs)
        || args.connect_timeout_secs > 600.0
    {
        bail!("--drain-secs and --connect-timeout-secs must be within 600 s");
    }
    if args.targets.is_empty() || args.scenario.is_empty() {
        bail!("no target or no scenario");
    }
    if args.parla_env.iter().any(|kv| !kv.contains('=')) {
        bail!("--parla-env takes KEY=VALUE");
    }
    for url in &args.parla_url {
        scenario::endpoint(url)?;
    }
    Ok(())
}

/// A finite number above zero (NaN is not).
fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Runs everything asked (the arguments validated); returns whether every run passed.
pub async fn main(args: Args) -> anyhow::Result<bool> {
    if let Some(n) = args.hold {
        let plan =
            plan(&args, Scenario::Idle, &args.parla_url, crate::scenario::Protocol::WidgetResume)?;
        crate::client::hold(plan, n).await?;
        return Ok(true);
    }
    let deadline = Duration::from_secs_f64(args.deadline);
    match timeout(deadline, run_all(&args)).await {
        Ok(result) => result,
        Err(_) => bail!(
            "the global deadline (--deadline {} s) passed: aborted, servers and workers killed",
            args.deadline
        ),
    }
}

/// What every run of an invocation shares.
#[derive(Debug)]
struct Ctx<'a> {
    args: &'a Args,
    exe: PathBuf,
    tokens: Vec<String>,
    logs: PathBuf,
}

/// Streamed by the baselines when neither Parla is measured nor its binary built.
const STAND_IN_REPLY: &str = "Nothing is lost: the widget keeps the conversation, and on reconnect \
     the server replays every message it missed, in order, before live traffic.";

/// The reply every target streams: the demo bot's, asked of the `parla` binary, whenever Parla
/// is a target or built; else (baselines alone, no binary) a stand-in of the same shape, split
/// the same way (each word with the space before it).
async fn reply_tokens(args: &Args) -> anyhow::Result<Vec<String>> {
    let parla = servers::parla_bin(args);
    if args.targets.contains(&servers::Target::Parla) || parla.exists() {
        return servers::demo_reply_tokens(&parla, &args.text)
            .await
            .context("the demo bot's reply");
    }
    crate::note!(
        "no parla binary at {} and no Parla target: the baselines stream a stand-in reply",
        parla.display()
    );
    Ok(STAND_IN_REPLY
        .split(' ')
        .enumerate()
        .map(|(i, word)| if i == 0 { word.to_owned() } else { format!(" {word}") })
        .collect())
}

async fn run_all(args: &Args) -> anyhow::Result<bool> {
    let machine = Machine::probe();
    let tokens = reply_tokens(args).await?;
    let scratch = tempfile::tempdir()?;
    let logs = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => scratch.path().to_owned(),
    };
    let ctx = Ctx { args, exe: std::env::current_exe()?, tokens, logs };
    let mut runs = Vec::new();
    for scenario in scenario::expand(&args.scenario) {
        for &target in &args.targets {
            crate::note!("== {} × {}", target.name(), scenario.name());
            let run = match run_one(&ctx, target, scenario).await {
                Ok(run) => run,
                Err(e) => failed_run(target, scenario, format!("{e:#}")),
            };
            for e in &run.errors {
                crate::note!("   {}", e);
            }
            runs.push(run);
        }
    }
    let ok = runs.iter().all(|r| r.ok);
    let report = Report {
        machine,
        command_line: std::env::args().collect(),
        settings: serde_json::to_value(args)?,
        baseline_reply_tokens: ctx.tokens.len(),
        targets: args
            .targets
            .iter()
            .map(|t| (t.name().to_owned(), target_note(*t, args)))
            .collect(),
        runs,
        ok,
    };
    if let Some(dir) = &args.out {
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
        write_plots(dir, &report)?;
    }
    print!("{}", crate::report::summary(&report));
    if let Some(dir) = &args.out {
        println!("\n(report.json, latency.svg and the server logs are in {})", dir.display());
    }
    Ok(ok)
}

/// What a target is, for the report: what it does per message and how it reconnects.
fn target_note(target: Target, args: &Args) -> String {
    match target {
        Target::Parla if !args.parla_url.is_empty() => format!(
            "Parla servers already running ({}); resume by hello with last_seq",
            args.parla_url.join(", ")
        ),
        Target::Parla => {
            "parla serve: a conversation actor per conversation, every message stored \
            durably (embedded store) before its echo; resume by hello with last_seq (replay)"
                .into()
        }
        Target::Raw => "raw tokio-tungstenite server: the same frames, no actor, no store, no \
            bot; a reconnect gets a fresh conversation and the client resends what is \
            unanswered (no recovery)"
            .into(),
        Target::Socketio => format!(
            "Socket.IO 4 on Node: the same frames as events, in memory, no persistence; {}",
            if args.socketio_recovery {
                "connection state recovery (its packet buffer kept 2 min, scanned per recovery)"
            } else {
                "no recovery: a reconnect gets a fresh session and the client resends"
            }
        ),
    }
}

/// `latency-<scenario>.svg` for each scenario, and `latency.svg`: chat's, else the first.
fn write_plots(dir: &Path, report: &Report) -> anyhow::Result<()> {
    let mut first: Option<String> = None;
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    for scenario in scenarios {
        let metrics: &[&str] = match scenario {
            "idle" => &["connect"],
            "reconnect" => &["echo", "first_token", "stream_end", "reconnect"],
            _ => &["echo", "first_token", "stream_end"],
        };
        let mut series = Vec::new();
        for r in report.runs.iter().filter(|r| r.scenario == scenario) {
            for (metric, hist) in r.latencies.named() {
                if metrics.contains(&metric) {
                    series.push(plot::Series { target: &r.target, metric, hist });
                }
            }
        }
        let svg = plot::latency_svg(&format!("{scenario}: latency by percentile"), &series);
        std::fs::write(dir.join(format!("latency-{scenario}.svg")), &svg)?;
        if scenario == "chat" || first.is_none() {
            first = Some(svg);
        }
    }
    if let Some(svg) = first {
        std::fs::write(dir.join("latency.svg"), svg)?;
    }
    Ok(())
}

fn failed_run(target: Target, scenario: Scenario, error: String) -> RunReport {
    RunReport {
        target: target.name().into(),
        scenario: scenario.name().into(),
        ok: false,
        errors: vec![error],
        connections: Connections::default(),
        window_s: 0.0,
        throughput: Throughput::default(),
        tokens_per_reply: None,
        latency_ms: Default::default(),
        checks: Default::default(),
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        server: ServerFigures::default(),
        harness: HarnessFigures::default(),
        burst: None,
        latencies: Default::default(),
    }
}

fn plan(
    args: &Args,
    scenario: Scenario,
    urls: &[String],
    protocol: crate::scenario::Protocol,
) -> anyhow::Result<Plan> {
    let endpoints =
        urls.iter().map(|u| scenario::endpoint(u)).collect::<anyhow::Result<Vec<_>>>()?;
    if endpoints.is_empty() {
        bail!("no URL to connect to");
    }
    let interval_ms = match args.rate {
        Some(rate) => args.connections as f64 / rate * 1000.0,
        None => args.interval_ms,
    };
    Ok(Plan {
        scenario,
        protocol,
        endpoints,
        bot: args.bot.clone(),
        text: args.text.clone(),
        interval_ms,
        jitter: args.jitter,
        max_in_flight: args.max_in_flight,
        drop_fraction: args.drop_fraction,
        warmup_ms: (args.warmup.unwrap_or(args.duration / 3.0) * 1000.0) as u64,
        reconnect_spread_ms: args.reconnect_spread_ms,
        drain_ms: (args.drain_secs * 1000.0) as u64,
        connect_timeout_ms: (args.connect_timeout_secs * 1000.0) as u64,
        per_source: args.per_source,
    })
}

/// Reads events from every worker until each has produced what `pick` wants.
async fn collect<T>(
    workers: &mut [WorkerProc],
    patience: Duration,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    timeout(patience, async {
        let mut out = Vec::with_capacity(workers.len());
        for w in workers.iter_mut() {
            loop {
                if let Some(t) = pick(w.next().await?) {
                    out.push(t);
                    break;
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|_| anyhow::anyhow!("the workers did not report {what} within {patience:?}"))?
}

async fn send_all(workers: &mut [WorkerProc], control: &Control) -> anyhow::Result<()> {
    for w in workers.iter_mut() {
        w.send(control).await?;
    }
    Ok(())
}

async fn run_one(ctx: &Ctx<'_>, target: Target, scenario: Scenario) -> anyhow::Result<RunReport> {
    let args = ctx.args;
    let log = ctx.logs.join(format!("{}-{}.log", target.name(), scenario.name()));
    let mut server = servers::start(target, args, &ctx.tokens, &log).await?;
    let pids = server.pids.clone();
    let plan = plan(args, scenario, &server.urls, server.protocol)?;
    let settle = Duration::from_millis(args.settle_ms);
    sleep(settle).await;
    let before = Snapshot::of(&pids);

    // The workers, each with a slice of the clients and its share of the ramp.
    let n = args.connections;
    let count = n.div_ceil(args.per_worker);
    let mut workers = Vec::with_capacity(count);
    for i in 0..count {
        let (first, end) = (i * n / count, (i + 1) * n / count);
        let cfg = WorkerConfig {
            first,
            count: end - first,
            ramp_per_s: args.ramp / count as f64,
            plan: plan.clone(),
        };
        workers.push(WorkerProc::spawn(&ctx.exe, &cfg).await?);
    }
    let worker_pids: Vec<u32> = workers.iter().filter_map(|w| w.pid).collect();
    let connect_started = Instant::now();
    let ready_patience =
        Duration::from_secs_f64(n as f64 / args.ramp + args.connect_timeout_secs + 30.0);
    let ready = collect(&mut workers, ready_patience, "ready", |e| match e {
        Event::Ready { connected, failed } => Some((connected, failed)),
        _ => None,
    })
    .await?;
    let connect_window = connect_started.elapsed();
    let connected: u64 = ready.iter().map(|r| r.0).sum();
    let after_connect = Snapshot::of(&pids);
    sleep(settle).await;
    let connected_snap = Snapshot::of(&pids);
    let open_files = procstat::sum(&pids, procstat::open_files);
    let fd_limit = pids.first().and_then(|&p| procstat::fd_limit(p));

    // The measured window.
    let harness_start = Snapshot::of(&worker_pids);
    let window_start = Instant::now();
    let server_start = Snapshot::of(&pids);
    send_all(&mut workers, &Control::Start).await?;
    let drain = Duration::from_secs_f64(args.drain_secs);
    let mut burst = None;
    match scenario {
        Scenario::Idle => sleep(Duration::from_secs_f64(args.idle_secs)).await,
        Scenario::Chat | Scenario::Reconnect => sleep(Duration::from_secs_f64(args.duration)).await,
        Scenario::Burst => {
            let mut figures = BurstFigures { rounds: args.rounds as usize, ..Default::default() };
            for round in 0..args.rounds {
                send_all(&mut workers, &Control::Round { n: round }).await?;
                let done =
                    collect(
                        &mut workers,
                        drain + Duration::from_secs(30),
                        "a round",
                        |e| match e {
                            Event::RoundDone { n, drain_us, timed_out } if n == round => {
                                Some((drain_us, timed_out))
                            }
                            _ => None,
                        },
                    )
                    .await?;
                let slowest = done.iter().map(|d| d.0).max().unwrap_or(0);
                figures.drain_ms.push(slowest as f64 / 1000.0);
                if done.iter().any(|d| d.1) {
                    figures.timed_out_rounds += 1;
                }
            }
            burst = Some(figures);
        }
    }
    let window = window_start.elapsed();
    let server_end = Snapshot::of(&pids);
    let harness_end = Snapshot::of(&worker_pids);
    let peak = procstat::sum(&pids, |p| procstat::status_kib(p, "VmHWM"));
    let server_gone = server.exited();

    send_all(&mut workers, &Control::Stop).await?;
    let patience = drain
        + Duration::from_secs_f64(args.connect_timeout_secs) * (RECONNECT_ATTEMPTS + 1)
        + Duration::from_secs(30);
    let results = collect(&mut workers, patience, "results", |e| match e {
        Event::Result { result } => Some(result),
        _ => None,
    })
    .await?;
    drop(workers);
    let mut merged = WorkerResult::default();
    for r in &results {
        merged.merge(r);
    }
    drop(server);

    // Assemble.
    let c = &merged.counters;
    let window_s = window.as_secs_f64();
    let per_s = |x: u64| if window_s > 0.0 { x as f64 / window_s } else { 0.0 };
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    let rss_per_connection_kib = match (before.rss_kib, connected_snap.rss_kib) {
        (Some(b), Some(a)) if connected > 0 => Some((a as f64 - b as f64) / connected as f64),
        _ => None,
    };
    let connect_rate_per_s = match (c.first_attempt_unix_us, c.last_welcome_unix_us) {
        (Some(a), Some(b)) if b > a && c.connected > 0 => {
            Some(c.connected as f64 / ((b - a) as f64 / 1e6))
        }
        _ => None,
    };
    let mut errors = Vec::new();
    if let Some(gone) = server_gone {
        errors.push(match &log_of(&log) {
            Some(l) => format!("{gone}: {}", servers::tail(l)),
            None => gone,
        });
    }
    if c.connect_failed > 0 || connected < n as u64 {
        let mut e = format!(
            "{} of {n} connections failed ({})",
            n as u64 - connected.min(n as u64),
            failures_text(&first_connect_failures(&c.failures))
        );
        let near_limit = match (open_files, fd_limit) {
            (Some(open), Some(limit)) => open + 64 >= limit,
            _ => false,
        };
        if near_limit || log_of(&log).is_some_and(servers::log_shows_emfile) {
            e.push_str(&format!(
                "; the server hit its open-file limit (EMFILE: {} open of {} allowed): one process cannot hold more connections here; spread them over several nodes (--parla-url a,b,…)",
                open_files.map_or("?".into(), |v| v.to_string()),
                fd_limit.map_or("?".into(), |v| v.to_string()),
            ));
        }
        if c.failures.contains_key("client_emfile") {
            e.push_str("; the harness hit its own open-file limit: lower --per-worker");
        }
        errors.push(e);
    }
    let checks = merged.checks.clone();
    let failures = checks.failures();
    if !failures.is_empty() {
        errors.push(format!(
            "integrity checks failed: {}",
            failures_text(&failures.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
        ));
    }
    if matches!(scenario, Scenario::Chat | Scenario::Reconnect | Scenario::Burst)
        && c.window_confirmed == 0
    {
        errors.push("no message was confirmed in the measured window".into());
    }
    if let Some(b) = &burst
        && b.timed_out_rounds > 0
    {
        errors
            .push(format!("{} burst rounds did not drain within --drain-secs", b.timed_out_rounds));
    }
    let latency_ms = merged
        .latencies
        .named()
        .into_iter()
        .filter_map(|(name, h)| Some((name.to_owned(), h.summary()?)))
        .collect();
    Ok(RunReport {
        target: target.name().into(),
        scenario: scenario.name().into(),
        ok: errors.is_empty(),
        errors,
        connections: Connections {
            requested: n as u64,
            connected,
            failed: c.connect_failed,
            failures: c.failures.clone(),
            connect_rate_per_s,
            workers: count,
        },
        window_s,
        throughput: Throughput {
            sent: c.sent,
            confirmed: c.confirmed,
            answered: c.answered,
            confirmed_per_s: per_s(c.window_confirmed),
            answered_per_s: per_s(c.window_answered),
            frames_per_s: per_s(c.window_frames),
            skipped_sends: c.skipped,
            offline_skips: c.offline_skips,
            dropped_sockets: c.dropped,
        },
        tokens_per_reply: (c.replies > 0).then(|| TokenStats {
            replies: c.replies,
            mean: c.reply_tokens as f64 / c.replies as f64,
            min: c.min_tokens.unwrap_or(0),
            max: c.max_tokens.unwrap_or(0),
        }),
        latency_ms,
        lost: checks.lost(),
        duplicates: checks.duplicates(),
        out_of_order: checks.out_of_order,
        checks,
        server: ServerFigures {
            pids: pids.clone(),
            rss_before_kib: before.rss_kib,
            rss_connected_kib: connected_snap.rss_kib,
            rss_after_kib: server_end.rss_kib,
            rss_peak_kib: peak,
            rss_per_connection_kib,
            cpu_percent: delta(server_start.cpu_ticks, server_end.cpu_ticks)
                .map(|t| procstat::cpu_percent(t, window)),
            connect_cpu_percent: delta(before.cpu_ticks, after_connect.cpu_ticks)
                .map(|t| procstat::cpu_percent(t, connect_window)),
            open_files,
            fd_limit,
            log: log_of(&log).map(|l| l.display().to_string()),
        },
        harness: HarnessFigures {
            workers: count,
            cpu_percent: delta(harness_start.cpu_ticks, harness_end.cpu_ticks)
                .map(|t| procstat::cpu_percent(t, window)),
            rss_kib: harness_end.rss_kib,
        },
        burst,
        latencies: merged.latencies,
    })
}

/// The log of a server this harness started (none for external servers).
fn log_of(log: &Path) -> Option<&Path> {
    log.is_file().then_some(log)
}

/// The causes of failed first connects: the failures map also counts disconnects,
/// reconnects and server errors, under those prefixes.
fn first_connect_failures(
    all: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    all.iter()
        .filter(|(k, _)| {
            !["disconnect_", "reconnect_", "server_error_"].iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn failures_text(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "no cause recorded".into();
    }
    map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}
