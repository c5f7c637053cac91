//! What /proc says about a process: resident memory, CPU time, open files. Each target is a
//! child process (or a pid given on the command line) precisely so that these figures belong
//! to the server alone. Linux only; a figure that cannot be read is `None`, never a panic.

use std::{sync::OnceLock, time::Duration};

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User + system CPU time of `pid`, in clock ticks (fields 14 and 15 of `/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, the Linux value, when that fails).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// CPU ticks over a wall-clock window, as a percentage of one core.
pub fn cpu_percent(ticks: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ticks as f64 / clk_tck() as f64 / secs * 100.0
}

/// How many files `pid` has open.
pub fn open_files(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The soft limit on open files of `pid` (`Max open files` in `/proc/PID/limits`).
pub fn fd_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Sums a per-process figure over several processes (a cluster of servers); `None` when any
/// of them cannot be read, so a partial sum never passes for the whole.
pub fn sum(pids: &[u32], figure: impl Fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| figure(p)).sum()
}

/// A snapshot of the figures the report uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub rss_kib: Option<u64>,
    pub cpu_ticks: Option<u64>,
}

impl Snapshot {
    pub fn of(pids: &[u32]) -> Self {
        Self { rss_kib: sum(pids, |p| status_kib(p, "VmRSS")), cpu_ticks: sum(pids, cpu_ticks) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").is_some_and(|k| k > 0));
        assert!(cpu_ticks(me).is_some());
        assert!(open_files(me).is_some_and(|n| n > 0));
        assert!(fd_limit(me).is_some_and(|n| n > 0));
        assert!(clk_tck() > 0);
        assert!(sum(&[], cpu_ticks).is_none());
    }
}
