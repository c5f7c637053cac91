//! `parla-fake-llm`: an OpenAI-compatible chat-completions server with a fixed time to first
//! token, for measuring what Parla adds on top of an LLM's own latency; and a probe that
//! measures that server's time to first token directly (the baseline).
//!
//! Serve: `parla-fake-llm serve --listen 127.0.0.1:0 --first-token-ms 200` prints
//! `listening on ADDR`; every POST gets `--tokens` SSE chunks (`data: {chunk}`), the first after
//! `--first-token-ms`, the rest `--token-ms` apart, then a usage chunk and `data: [DONE]`.
//! Probe: `parla-fake-llm probe --addr ADDR --requests 200` prints p50/p99 of request → first
//! `data:` byte.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

#[derive(Debug, Parser)]
#[command(name = "parla-fake-llm")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 200)]
        first_token_ms: u64,
        #[arg(long, default_value_t = 10)]
        tokens: usize,
        #[arg(long, default_value_t = 5)]
        token_ms: u64,
    },
    Probe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Serve { listen, first_token_ms, tokens, token_ms } => {
            let listener = TcpListener::bind(listen).await?;
            println!("listening on {}", listener.local_addr()?);
            loop {
                let (socket, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let first = Duration::from_millis(first_token_ms);
                    let _ = serve(socket, first, tokens, Duration::from_millis(token_ms)).await;
                });
            }
        }
        Command::Probe { addr, requests } => probe(addr, requests).await,
    }
}

/// Reads one request (headers, then Content-Length bytes), answers with the stream, closes.
async fn serve(
    mut socket: TcpStream,
    first: Duration,
    tokens: usize,
    gap: Duration,
) -> anyhow::Result<()> {
    socket.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let body_start = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before a request");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < body_start + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    socket
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        )
        .await?;
    tokio::time::sleep(first).await;
    for i in 0..tokens {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let event = format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" w{i}\"}}}}]}}\n\n"
        );
        socket.write_all(event.as_bytes()).await?;
    }
    socket
        .write_all(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\ndata: [DONE]\n\n")
        .await?;
    socket.shutdown().await?;
    Ok(())
}

/// Time from writing a request to the first `data:` byte, `requests` times in a row.
async fn probe(addr: SocketAddr, requests: usize) -> anyhow::Result<()> {
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        let mut socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        socket.write_all(request.as_bytes()).await?;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed before a token");
            }
            seen.extend_from_slice(&chunk[..n]);
            if seen.windows(5).any(|w| w == b"data:") {
                times.push(start.elapsed());
                break;
            }
        }
    }
    times.sort();
    let pct = |p: f64| {
        let i = ((times.len() as f64 * p).ceil() as usize).saturating_sub(1);
        times.get(i).map(|d| d.as_secs_f64() * 1000.0).context("no samples")
    };
    println!(
        "fake LLM first token: p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        pct(0.5)?,
        pct(0.99)?,
        times.len()
    );
    Ok(())
}
