//! `parla-http-rate`: an open-loop, fixed-rate HTTP load generator.
//!
//! Requests start on a fixed schedule (`--rate` per second) whatever the server's answers do,
//! and each latency is measured from the request's *scheduled* start, so a stalled server
//! shows up in the percentiles instead of slowing the generator down (no coordinated
//! omission — what wrk2 does, and what plain wrk does not). Connections are HTTP/1.1
//! keep-alive, taken from a pool and opened on demand.
//!
//! Tokio's timer has millisecond granularity, so a request may start up to ~1 ms after its
//! scheduled time; that lag is in the latency (and in the baseline row alike). The service
//! time — from the moment the request is written — is reported beside it.
//!
//! Several `--path`s are used in turn; `{n}` in `--body` becomes the request's number (unique
//! idempotency keys).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

#[derive(Debug, Parser)]
#[command(name = "parla-http-rate", about = "Fixed-rate HTTP load with latency percentiles")]
struct Args {
    /// Server address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path; repeat to rotate over several.
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// JSON body; `{n}` is replaced by the request's number.
    #[arg(long)]
    body: Option<String>,
    /// Sent as `Authorization: Bearer …`.
    #[arg(long)]
    token: Option<String>,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of load (after a 2 s warm-up that is not measured).
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// A label for the output row.
    #[arg(long, default_value = "")]
    label: String,
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends `request`, reads one response; returns its status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).context("response head")?;
        let status: u16 =
            head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buf.len() < header_end + length {
            self.read_more().await?;
        }
        Ok(status)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn request(args: &Args, n: usize) -> Vec<u8> {
    let path = &args.paths[n % args.paths.len()];
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {}\r\n", args.method, args.addr);
    if let Some(token) = &args.token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = args.body.as_ref().map(|b| b.replace("{n}", &n.to_string())).unwrap_or_default();
    if args.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    head.into_bytes()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let warmup = 2 * args.rate as usize;
    let total = warmup + args.seconds as usize * args.rate as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let scheduled = start + interval * n as u32;
        tokio::time::sleep_until(scheduled).await;
        let (args, pool) = (args.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let idle = pool.lock().ok().and_then(|mut p| p.pop());
            let sent = Instant::now();
            let bytes = request(&args, n);
            let (conn, status) = match idle {
                Some(mut conn) => match conn.exchange(&bytes).await {
                    Ok(status) => (conn, status),
                    // The server closed an idle keep-alive connection: once more on a new one.
                    Err(_) => {
                        let mut conn = Conn::open(args.addr).await?;
                        let status = conn.exchange(&bytes).await?;
                        (conn, status)
                    }
                },
                None => {
                    let mut conn = Conn::open(args.addr).await?;
                    let status = conn.exchange(&bytes).await?;
                    (conn, status)
                }
            };
            let (latency, service) = (scheduled.elapsed(), sent.elapsed());
            if let Ok(mut p) = pool.lock() {
                p.push(conn);
            }
            anyhow::Ok((n, status, latency, service))
        }));
    }
    let sent_in = start.elapsed();
    let (mut latencies, mut services, mut errors, mut non_2xx) =
        (Vec::new(), Vec::new(), 0usize, 0usize);
    for task in tasks {
        match task.await? {
            Ok((n, status, latency, service)) if n >= warmup => {
                if !(200..300).contains(&status) {
                    non_2xx += 1;
                }
                latencies.push(latency);
                services.push(service);
            }
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    latencies.sort();
    services.sort();
    let pct_of = |sorted: &[Duration], p: f64| {
        let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
        sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let pct = |p: f64| pct_of(&latencies, p);
    let achieved = total as f64 / sent_in.as_secs_f64();
    let connections = pool.lock().map(|p| p.len()).unwrap_or(0);
    println!(
        "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
        args.label,
        args.rate,
        achieved,
        latencies.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0),
        pct_of(&services, 0.50),
        pct_of(&services, 0.99),
        non_2xx,
        errors,
        connections
    );
    Ok(())
}
