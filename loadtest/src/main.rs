//! `parla-loadtest`: drives Parla's widget protocol with many concurrent conversations and
//! measures it, side by side with a raw WebSocket baseline in the same run.
//!
//! # Layout
//! - `run`: the load: C conversations, each one socket that says `hello`, then sends M messages
//!   one after another, each waiting for its durable echo and the bot's whole streamed reply.
//!   Measures confirmed messages per second, send → echo (durable) and send → first token.
//! - `baseline`: a raw WebSocket server in this process that answers each `message` frame at
//!   once with the same frames Parla sends (echo, stream_start, one token, stream_end), with no
//!   actor, no store and no bot: the floor that transport, JSON and this client cost.
//!
//! # Concurrency model
//! One tokio task per simulated visitor; results are merged at the end. For more sockets than
//! one process may open (20k files here), run several processes.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpListener, time::Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(
    name = "parla-loadtest",
    about = "Load Parla's widget socket; compare with a raw WebSocket baseline"
)]
struct Args {
    /// Parla's widget socket, e.g. ws://127.0.0.1:8080/v1/widget/ws. Omit to run the baseline only.
    #[arg(long)]
    url: Option<String>,
    /// Bot to talk to.
    #[arg(long, default_value = "demo")]
    bot: String,
    /// Concurrent conversations (one socket each).
    #[arg(long, default_value_t = 50)]
    conversations: usize,
    /// Messages per conversation.
    #[arg(long, default_value_t = 40)]
    messages: usize,
    /// What each message says (the default matches a demo-bot intent; pick text that matches
    /// none to exercise the knowledge base or the LLM). `{n}` becomes a number unique to each
    /// message, so no two questions are the same.
    #[arg(long, default_value = "what is parla?")]
    text: String,
    /// Also measure the raw WebSocket baseline in the same run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    baseline: bool,
    /// Instead of the load: open this many sockets to `--url`, open a conversation on each
    /// (`hello`, welcome, greeting), print `holding N`, and keep them idle until stdin closes.
    /// For measuring the server's memory per live conversation.
    #[arg(long)]
    hold: Option<usize>,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Report {
    confirmed: usize,
    elapsed: Duration,
    to_echo: Vec<Duration>,
    to_first_token: Vec<Duration>,
    to_end: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.hold {
        let url = args.url.as_deref().context("--hold needs --url")?;
        return hold(url, &args.bot, n).await;
    }
    println!(
        "| target | conversations | messages | confirmed msg/s | echo p50 ms | echo p99 ms | first token p50 ms | first token p99 ms | reply end p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    if args.baseline {
        let addr = start_baseline().await?;
        let report = run(&format!("ws://{addr}/"), &args).await?;
        print_row("raw WebSocket baseline", &args, &report);
    }
    if let Some(url) = &args.url {
        let report = run(url, &args).await?;
        print_row("Parla (actor + durable store)", &args, &report);
    }
    Ok(())
}

fn print_row(name: &str, args: &Args, r: &Report) {
    let rate = r.confirmed as f64 / r.elapsed.as_secs_f64();
    println!(
        "| {name} | {} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        args.conversations,
        args.messages,
        ms(percentile(&r.to_echo, 0.50)),
        ms(percentile(&r.to_echo, 0.99)),
        ms(percentile(&r.to_first_token, 0.50)),
        ms(percentile(&r.to_first_token, 0.99)),
        ms(percentile(&r.to_end, 0.99)),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(url: &str, args: &Args) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.conversations);
    for n in 0..args.conversations {
        let (url, bot, messages) = (url.to_owned(), args.bot.clone(), args.messages);
        let text = args.text.clone();
        tasks.push(tokio::spawn(async move { visitor(&url, &bot, n, messages, &text).await }));
    }
    let mut report = Report::default();
    for task in tasks {
        let one = task.await.context("visitor task")??;
        report.confirmed += one.confirmed;
        report.to_echo.extend(one.to_echo);
        report.to_first_token.extend(one.to_first_token);
        report.to_end.extend(one.to_end);
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// One simulated visitor: hello, then `messages` round trips.
async fn visitor(
    url: &str,
    bot: &str,
    n: usize,
    messages: usize,
    text: &str,
) -> anyhow::Result<Report> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.context("connect")?;
    let (mut sink, mut stream) = ws.split();
    let mut recv = async || -> anyhow::Result<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t)?),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => bail!("socket ended: {other:?}"),
                Err(_) => bail!("no frame in 30 s"),
            }
        }
    };
    sink.send(Message::Text(json!({"type": "hello", "bot_id": bot}).to_string().into())).await?;
    let welcome = recv().await?;
    if welcome["type"] != "welcome" {
        bail!("expected welcome, got {welcome}");
    }
    let mut report = Report::default();
    for i in 0..messages {
        let id = format!("lt-{n}-{i}");
        let text = text.replace("{n}", &(n * 100_000 + i).to_string());
        let frame = json!({"type": "message", "client_msg_id": id, "text": text});
        let sent = Instant::now();
        sink.send(Message::Text(frame.to_string().into())).await?;
        let mut first_token = None;
        loop {
            let f = recv().await?;
            match f["type"].as_str() {
                Some("message") if f["client_msg_id"] == id.as_str() => {
                    report.to_echo.push(sent.elapsed());
                    report.confirmed += 1;
                }
                Some("token") if first_token.is_none() => first_token = Some(sent.elapsed()),
                Some("stream_end") => {
                    report.to_end.push(sent.elapsed());
                    report.to_first_token.push(first_token.unwrap_or_else(|| sent.elapsed()));
                    break;
                }
                Some("error") => bail!("server error: {f}"),
                _ => {}
            }
        }
    }
    Ok(report)
}

/// Starts the raw WebSocket baseline on a free port.
async fn start_baseline() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true); // As Parla's server does.
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut seq = 0u64;
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let replies = match frame["type"].as_str() {
                        Some("hello") => vec![
                            json!({"type": "welcome", "conversation_id": "c", "resume_token": "t", "last_seq": 0}),
                        ],
                        Some("message") => {
                            seq += 2;
                            vec![
                                json!({"type": "message", "seq": seq - 1, "id": "u", "sender": "user", "text": frame["text"], "client_msg_id": frame["client_msg_id"]}),
                                json!({"type": "stream_start", "stream_id": "s", "sender": "bot"}),
                                json!({"type": "token", "stream_id": "s", "delta": "ok"}),
                                json!({"type": "stream_end", "stream_id": "s", "seq": seq, "id": "b", "text": "ok"}),
                            ]
                        }
                        _ => vec![],
                    };
                    for reply in replies {
                        if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Opens `n` conversations and keeps them idle until stdin closes.
async fn hold(url: &str, bot: &str, n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .with_context(|| format!("connect socket {i}"))?;
        ws.send(Message::Text(json!({"type": "hello", "bot_id": bot}).to_string().into())).await?;
        // Wait for the welcome so every conversation exists before we report.
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"welcome\"") => break,
                Ok(Some(Ok(_))) => continue,
                other => bail!("socket {i}: no welcome: {other:?}"),
            }
        }
        sockets.push(ws);
    }
    println!("holding {n}");
    // Keep answering pings (each socket is polled) until stdin closes.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    for mut ws in sockets {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = ws.next() => if frame.is_none() { break },
                    _ = stop.changed() => break,
                }
            }
        });
    }
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let _ = stop_tx.send(true);
    let _ = stop_rx.changed().await;
    Ok(())
}
