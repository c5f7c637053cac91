//! What a run measured: latency histograms (HdrHistogram, microseconds) that travel from the
//! workers to the parent as JSON, the counters, and the final report — `report.json` (every
//! figure) and the markdown summary on stdout (one table per scenario, one row per target,
//! Parla's ratios to the baselines).

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::check::CheckCounts;

/// The largest latency recorded: one hour. Anything longer is clamped (a run never lasts
/// that long; see `--deadline`).
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits. On the wire (worker → parent)
/// it is its recorded buckets, `[[value, count], …]`: exact, compact, and needs no
/// serialization feature of the crate.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid"))
    }
}

impl Hist {
    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(MAX_US)) as u64);
    }

    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Hist) {
        for v in other.0.iter_recorded() {
            self.record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    fn record_n(&mut self, us: u64, n: u64) {
        // Same bounds on both sides, so this cannot fail short of a counter overflow.
        let _ = self.0.record_n(us.clamp(1, MAX_US), n);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn ms_at(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        (self.count() > 0).then(|| LatencySummary {
            count: self.count(),
            mean_ms: round3(self.0.mean() / 1000.0),
            p50_ms: round3(self.ms_at(0.50)),
            p90_ms: round3(self.ms_at(0.90)),
            p99_ms: round3(self.ms_at(0.99)),
            p999_ms: round3(self.ms_at(0.999)),
            max_ms: round3(self.0.max() as f64 / 1000.0),
        })
    }
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buckets: Vec<(u64, u64)> =
            self.0.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        buckets.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buckets = Vec::<(u64, u64)>::deserialize(d)?;
        let mut h = Hist::default();
        for (value, count) in buckets {
            h.record_n(value, count);
        }
        Ok(h)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Every latency the clients measure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    /// TCP connect → `welcome` (Socket.IO: → the `40` connect reply).
    pub connect: Hist,
    /// `message` sent → its echo (the durable acknowledgement).
    pub echo: Hist,
    /// `message` sent → the first `token` of its reply.
    pub first_token: Hist,
    /// `message` sent → the reply's `stream_end`.
    pub stream_end: Hist,
    /// Reconnect attempt → `welcome` of the resumed (or fresh) conversation.
    pub reconnect: Hist,
}

impl Latencies {
    pub fn merge(&mut self, o: &Latencies) {
        self.connect.merge(&o.connect);
        self.echo.merge(&o.echo);
        self.first_token.merge(&o.first_token);
        self.stream_end.merge(&o.stream_end);
        self.reconnect.merge(&o.reconnect);
    }

    pub fn named(&self) -> [(&'static str, &Hist); 5] {
        [
            ("connect", &self.connect),
            ("echo", &self.echo),
            ("first_token", &self.first_token),
            ("stream_end", &self.stream_end),
            ("reconnect", &self.reconnect),
        ]
    }
}

/// Counts one worker's clients keep; summed by the parent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    pub connected: u64,
    pub connect_failed: u64,
    /// Failures by cause: first connects (`timeout`, `reset`, `client_emfile`, …), and
    /// `disconnect_*`, `reconnect_*` and `server_error_*` during the run.
    pub failures: BTreeMap<String, u64>,
    /// Wall clock (µs since the epoch) of the first connect attempt and of the last
    /// `welcome`: the achieved connect rate spans the workers, so it needs a shared clock.
    pub first_attempt_unix_us: Option<u64>,
    pub last_welcome_unix_us: Option<u64>,
    pub sent: u64,
    pub confirmed: u64,
    pub answered: u64,
    pub frames: u64,
    /// The same four, counted only inside the measured window (start → stop).
    pub window_sent: u64,
    pub window_confirmed: u64,
    pub window_answered: u64,
    pub window_frames: u64,
    /// Timer ticks that sent nothing because the conversation had `--max-in-flight`
    /// messages unanswered: the target is slower than the offered rate.
    pub skipped: u64,
    /// Timer ticks that sent nothing because the socket was reconnecting.
    pub offline_skips: u64,
    /// Streamed replies completed, and their tokens.
    pub replies: u64,
    pub reply_tokens: u64,
    pub min_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Sockets dropped on purpose (reconnect scenario).
    pub dropped: u64,
}

impl Counters {
    pub fn fail(&mut self, cause: &str) {
        *self.failures.entry(cause.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, o: &Counters) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.first_attempt_unix_us = min_opt(self.first_attempt_unix_us, o.first_attempt_unix_us);
        self.last_welcome_unix_us = self.last_welcome_unix_us.max(o.last_welcome_unix_us);
        self.sent += o.sent;
        self.confirmed += o.confirmed;
        self.answered += o.answered;
        self.frames += o.frames;
        self.window_sent += o.window_sent;
        self.window_confirmed += o.window_confirmed;
        self.window_answered += o.window_answered;
        self.window_frames += o.window_frames;
        self.skipped += o.skipped;
        self.offline_skips += o.offline_skips;
        self.replies += o.replies;
        self.reply_tokens += o.reply_tokens;
        self.min_tokens = min_opt(self.min_tokens, o.min_tokens);
        self.max_tokens = self.max_tokens.max(o.max_tokens);
        self.dropped += o.dropped;
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Everything one worker process measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub counters: Counters,
    pub latencies: Latencies,
    pub checks: CheckCounts,
}

impl WorkerResult {
    pub fn merge(&mut self, o: &WorkerResult) {
        self.counters.merge(&o.counters);
        self.latencies.merge(&o.latencies);
        self.checks.add(&o.checks);
    }
}

/// The whole invocation: where it ran, how, and one entry per target × scenario.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub command_line: Vec<String>,
    pub settings: serde_json::Value,
    /// Tokens per reply the baselines stream: what Parla's demo bot answers to `--text`.
    pub baseline_reply_tokens: usize,
    /// What each target is, and how it reconnects.
    pub targets: BTreeMap<String, String>,
    pub runs: Vec<RunReport>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    pub mem_total_kib: Option<u64>,
    /// UTC, RFC 3339.
    pub date: String,
    /// This process's open-file limit (each worker and each server has the same).
    pub fd_limit: Option<u64>,
    pub clk_tck: u64,
}

impl Machine {
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_default();
        let mem_total_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu,
            mem_total_kib,
            date: utc_now(),
            fd_limit: crate::procstat::fd_limit(std::process::id()),
            clk_tck: crate::procstat::clk_tck(),
        }
    }
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ` (no date crate for one timestamp).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// One target × scenario.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub target: String,
    pub scenario: String,
    /// No error, every connection made, every check clean.
    pub ok: bool,
    pub errors: Vec<String>,
    pub connections: Connections,
    /// The measured window (start → stop) in seconds: the hold, the chat, or the rounds.
    pub window_s: f64,
    pub throughput: Throughput,
    pub tokens_per_reply: Option<TokenStats>,
    pub latency_ms: BTreeMap<String, LatencySummary>,
    pub checks: CheckCounts,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub server: ServerFigures,
    pub harness: HarnessFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstFigures>,
    /// Kept for the plot; the JSON has the percentiles above.
    #[serde(skip)]
    pub latencies: Latencies,
}

#[derive(Debug, Default, Serialize)]
pub struct Connections {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Connections per second from the first attempt to the last `welcome`.
    pub connect_rate_per_s: Option<f64>,
    pub workers: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Throughput {
    pub sent: u64,
    pub confirmed: u64,
    pub answered: u64,
    /// Visitor messages echoed per second in the window.
    pub confirmed_per_s: f64,
    pub answered_per_s: f64,
    /// Frames received by the clients per second in the window (tokens included).
    pub frames_per_s: f64,
    pub skipped_sends: u64,
    pub offline_skips: u64,
    pub dropped_sockets: u64,
}

#[derive(Debug, Serialize)]
pub struct TokenStats {
    pub replies: u64,
    pub mean: f64,
    pub min: u64,
    pub max: u64,
}

/// The target's process(es), from /proc; `None` where no pid is known (an external URL
/// without `--parla-pid`).
#[derive(Debug, Default, Serialize)]
pub struct ServerFigures {
    pub pids: Vec<u32>,
    /// Before any client connected.
    pub rss_before_kib: Option<u64>,
    /// Once every client had its `welcome` (and a settle pause).
    pub rss_connected_kib: Option<u64>,
    /// At the end of the measured window.
    pub rss_after_kib: Option<u64>,
    /// Peak RSS of the process's life (VmHWM).
    pub rss_peak_kib: Option<u64>,
    /// (connected − before) / connections.
    pub rss_per_connection_kib: Option<f64>,
    /// Over the measured window, % of one core.
    pub cpu_percent: Option<f64>,
    /// Over the connect phase, % of one core.
    pub connect_cpu_percent: Option<f64>,
    pub open_files: Option<u64>,
    pub fd_limit: Option<u64>,
    pub log: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct HarnessFigures {
    pub workers: usize,
    /// The workers' CPU over the measured window, % of one core (all workers together).
    pub cpu_percent: Option<f64>,
    /// The workers' resident memory at the end of the window, summed.
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct BurstFigures {
    pub rounds: usize,
    /// Per round: from the instant every client sends to the last reply's end.
    pub drain_ms: Vec<f64>,
    /// Rounds some clients did not finish within `--drain-secs`.
    pub timed_out_rounds: usize,
}

/// Markdown: one table per scenario, one row per target, then Parla's ratios.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let m = &report.machine;
    let _ = writeln!(out, "# {} · {} cores · {} · Linux {}", m.date, m.nproc, m.cpu, m.kernel);
    let _ = writeln!(out);
    for (target, note) in &report.targets {
        let _ = writeln!(out, "- **{target}**: {note}");
    }
    for scenario in scenarios {
        let runs: Vec<&RunReport> = report.runs.iter().filter(|r| r.scenario == scenario).collect();
        let _ = writeln!(out, "\n## {scenario}\n");
        let _ = writeln!(
            out,
            "| target | conns | connect/s | connect p99 ms | msgs/s | frames/s | echo p50 / p99 ms | first token p50 / p99 ms | end p99 ms | tokens/reply | server KiB/conn | server CPU % | harness CPU % | lost | dup | ooo | result |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for r in &runs {
            let lat = |k: &str, f: fn(&LatencySummary) -> f64| {
                r.latency_ms.get(k).map_or("–".to_owned(), |s| format!("{:.2}", f(s)))
            };
            let _ = writeln!(
                out,
                "| {} | {}/{} | {} | {} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.target,
                r.connections.connected,
                r.connections.requested,
                opt(r.connections.connect_rate_per_s, 0),
                lat("connect", |s| s.p99_ms),
                r.throughput.confirmed_per_s,
                r.throughput.frames_per_s,
                lat("echo", |s| s.p50_ms),
                lat("echo", |s| s.p99_ms),
                lat("first_token", |s| s.p50_ms),
                lat("first_token", |s| s.p99_ms),
                lat("stream_end", |s| s.p99_ms),
                r.tokens_per_reply.as_ref().map_or("–".to_owned(), |t| format!("{:.1}", t.mean)),
                opt(r.server.rss_per_connection_kib, 1),
                opt(r.server.cpu_percent, 0),
                opt(r.harness.cpu_percent, 0),
                r.lost,
                r.duplicates,
                r.out_of_order,
                if r.ok { "ok" } else { "FAIL" },
            );
        }
        let find = |t: &str| runs.iter().find(|r| r.target == t);
        if let Some(parla) = find("parla") {
            for base in ["raw", "socketio"] {
                let Some(b) = find(base) else { continue };
                let mut parts = Vec::new();
                let (p, b_tput) = (parla.throughput.confirmed_per_s, b.throughput.confirmed_per_s);
                if p > 0.0 && b_tput > 0.0 {
                    parts.push(format!("throughput {}", ratio(p, b_tput)));
                }
                if let (Some(p), Some(b)) =
                    (parla.server.rss_per_connection_kib, b.server.rss_per_connection_kib)
                    && b > 0.0
                {
                    parts.push(format!("memory per connection {}", ratio(p, b)));
                }
                if !parts.is_empty() {
                    let _ = writeln!(out, "\nParla/{base}: {}", parts.join(", "));
                }
            }
        }
        if scenario == "burst" {
            for r in &runs {
                if let Some(b) = &r.burst {
                    let drains: Vec<String> =
                        b.drain_ms.iter().map(|d| format!("{d:.0}")).collect();
                    let _ = writeln!(
                        out,
                        "\n{} burst drain per round (ms): {}",
                        r.target,
                        drains.join(", ")
                    );
                }
            }
        }
        for r in &runs {
            if r.scenario == "reconnect" {
                let c = &r.checks;
                let _ = writeln!(
                    out,
                    "\n{} reconnect: {} sockets dropped, {} resumed, {} fresh conversations, reconnect p99 {} ms",
                    r.target,
                    r.throughput.dropped_sockets,
                    c.resumed,
                    c.fresh_reconnects,
                    r.latency_ms
                        .get("reconnect")
                        .map_or("–".to_owned(), |s| format!("{:.1}", s.p99_ms)),
                );
            }
            for e in &r.errors {
                let _ = writeln!(out, "\n**{} {}**: {e}", r.target, r.scenario);
            }
        }
    }
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}×", a / b) } else { "–".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_trip_through_json() {
        let mut h = Hist::default();
        for us in [1, 10, 100, 1000, 10_000, 123_456, 9_999_999] {
            h.record_us(us);
        }
        let back: Hist = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back.count(), h.count());
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(back.ms_at(q), h.ms_at(q));
        }
        let mut merged = Hist::default();
        merged.merge(&h);
        merged.merge(&back);
        assert_eq!(merged.count(), 2 * h.count());
    }

    #[test]
    fn dates_are_rfc3339() {
        let d = utc_now();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20") && d.ends_with('Z'));
    }
}
