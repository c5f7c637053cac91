//! The targets. Each is a child process this harness starts (so its memory and CPU in /proc
//! are its own) on 127.0.0.1 port 0, and reads the address it prints:
//!
//! - `parla`: `parla serve` on a fresh data dir (durable store), token pacing off, rate limits
//!   and the live-conversation cap lifted; or already running servers (`--parla-url`);
//! - `raw`: [`serve_raw`], a hidden subcommand of this binary: a tokio-tungstenite server that
//!   answers the widget protocol's frames with no actor, no store and no bot — the floor of
//!   transport + JSON;
//! - `socketio`: `node loadtest/socketio/server.js`, a Socket.IO server doing the same work in
//!   memory (no persistence).
//!
//! Both baselines stream the reply Parla's demo bot gives to the run's text, token for token
//! ([`demo_reply_tokens`]), so every target sends the same frames.

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{TcpSocket, TcpStream},
    process::{Child, Command},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{Args, client::ws_config, scenario::Protocol};

/// How long a server may take to say it listens (Parla loads its embedding model first).
const STARTUP: Duration = Duration::from_secs(90);

/// Listen backlog of the baselines: actix-web's default, so a connect storm meets the same
/// queue on every target.
const BACKLOG: u32 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Parla,
    Raw,
    Socketio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Parla => "parla",
            Target::Raw => "raw",
            Target::Socketio => "socketio",
        }
    }
}

/// A running target; dropping it kills the child and removes its data dir.
#[derive(Debug)]
pub struct Server {
    pub pids: Vec<u32>,
    pub urls: Vec<String>,
    pub protocol: Protocol,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Why the child is gone, if it is.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("the server exited during the run ({status})"))
    }
}

/// The `parla` binary: `--parla-bin`, `PARLA_BIN`, else `$CARGO_TARGET_DIR/release/parla`.
pub fn parla_bin(args: &Args) -> PathBuf {
    args.parla_bin.clone().unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from);
        target.join("release").join("parla")
    })
}

/// Starts `target` (or adopts the external Parla servers), its output going to `log`.
pub async fn start(
    target: Target,
    args: &Args,
    tokens: &[String],
    log: &Path,
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("locating this binary")?;
    match target {
        Target::Parla if !args.parla_url.is_empty() => Ok(Server {
            pids: args.parla_pid.clone(),
            urls: args.parla_url.clone(),
            protocol: Protocol::WidgetResume,
            child: None,
            _data: None,
        }),
        Target::Parla => {
            let bin = parla_bin(args);
            if !bin.is_file() {
                bail!(
                    "parla: no binary at {}: build it (cargo build --release -p parla) or pass --parla-bin / PARLA_BIN",
                    bin.display()
                );
            }
            let data = tempfile::Builder::new()
                .prefix("parla-loadtest.")
                .tempdir_in("/var/tmp")
                .or_else(|_| tempfile::tempdir())
                .context("a data dir for parla")?;
            let mut cmd = Command::new(&bin);
            // The data dir inside the temporary one: the master key Parla generates beside it
            // is removed with it.
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data.path().join("data"))
                .env("RUST_LOG", "warn")
                .env("PARLA__RESPONDER__TOKEN_DELAY_MS", "0")
                .env("PARLA__SERVER__OPS_LISTEN", "127.0.0.1:0")
                // Every simulated visitor comes from loopback: the per-address limits off.
                .env("PARLA__GATEWAY__MAX_SOCKETS_PER_IP", "10000000")
                .env("PARLA__GATEWAY__HELLOS_PER_IP_PER_MINUTE", "10000000")
                .env("PARLA__GATEWAY__HELLO_BURST_PER_IP", "10000000")
                .env("PARLA__GATEWAY__NEW_CONVERSATIONS_PER_BOT_PER_MINUTE", "10000000")
                .env("PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_BOT", "10000000")
                .env("PARLA__GATEWAY__NEW_CONVERSATIONS_PER_IP_PER_MINUTE", "10000000")
                .env("PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_IP", "10000000")
                .env("PARLA__GATEWAY__RATE_PER_SECOND", "1000000")
                .env("PARLA__GATEWAY__RATE_BURST", "1000000")
                .env("PARLA__ENGINE__MAX_LIVE_CONVERSATIONS_PER_TENANT", "10000000");
            for kv in &args.parla_env {
                let (k, v) = kv.split_once('=').context("--parla-env takes KEY=VALUE")?;
                cmd.env(k, v);
            }
            let (child, addr) = spawn(cmd, "parla: listening on http://", "parla", log).await?;
            Ok(Server {
                pids: child.id().into_iter().collect(),
                urls: vec![format!("ws://{addr}/v1/widget/ws")],
                protocol: Protocol::WidgetResume,
                child: Some(child),
                _data: Some(data),
            })
        }
        Target::Raw => {
            let mut cmd = Command::new(&exe);
            cmd.args(["serve-raw", "--listen", "127.0.0.1:0", "--tokens-json"])
                .arg(serde_json::to_string(tokens)?)
                .arg("--drop-every")
                .arg(args.raw_drop_every.to_string());
            let (child, addr) = spawn(cmd, "raw: listening on ", "raw", log).await?;
            Ok(Server {
                pids: child.id().into_iter().collect(),
                urls: vec![format!("ws://{addr}/")],
                protocol: Protocol::WidgetFresh,
                child: Some(child),
                _data: None,
            })
        }
        Target::Socketio => {
            let script = &args.socketio_server;
            let dir = script.parent().unwrap_or(Path::new("."));
            if !script.is_file() {
                bail!("socketio: no server at {}", script.display());
            }
            if !dir.join("node_modules").join("socket.io").is_dir() {
                bail!(
                    "socketio: {}/node_modules is missing: run `npm ci` in {}",
                    dir.display(),
                    dir.display()
                );
            }
            let mut cmd = Command::new(&args.node);
            cmd.arg(script)
                .env("HOST", "127.0.0.1")
                .env("PORT", "0")
                .env("REPLY_TOKENS", serde_json::to_string(tokens)?)
                .env("RECOVERY", if args.socketio_recovery { "1" } else { "0" });
            let (child, addr) = spawn(cmd, "socketio: listening on ", "socketio", log).await?;
            Ok(Server {
                pids: child.id().into_iter().collect(),
                urls: vec![format!("ws://{addr}{}", crate::socketio::PATH)],
                protocol: Protocol::SocketIo,
                child: Some(child),
                _data: None,
            })
        }
    }
}

/// Spawns `cmd` (stdout and stderr into `log`) and waits for the stdout line starting with
/// `prefix`; returns the child and the rest of that line.
async fn spawn(
    mut cmd: Command,
    prefix: &str,
    what: &str,
    log: &Path,
) -> anyhow::Result<(Child, String)> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file.try_clone()?))
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // Plain file writes: a few lines into the page cache (tokio's fs feature is not worth it).
    let mut file = file;
    let found = tokio::time::timeout(STARTUP, async {
        while let Some(line) = lines.next_line().await? {
            writeln!(file, "{line}")?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok::<_, std::io::Error>(Some(rest.trim().to_owned()));
            }
        }
        Ok(None)
    })
    .await;
    let addr = match found {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!("{what} exited before listening: {}", tail(log)),
        Ok(Err(e)) => bail!("{what}: reading its output: {e}"),
        Err(_) => bail!("{what} did not listen within {STARTUP:?}: {}", tail(log)),
    };
    // Keep draining stdout into the log so the child never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok((child, addr))
}

/// The last lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
    format!("{} (log {})", if tail.is_empty() { "no output" } else { &tail }, log.display())
}

/// Whether a server log shows the per-process open-file limit (EMFILE).
pub fn log_shows_emfile(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| {
        t.contains("Too many open files") || t.contains("EMFILE") || t.contains("os error 24")
    })
}

/// The tokens Parla's demo bot streams in reply to `text`: its built-in responder matched
/// against the demo intents (as `parla serve` creates them), else the fallback message, split
/// the responder's way — asked of the `parla` binary itself (`parla demo-reply`), so the harness
/// links nothing of Parla's.
pub async fn demo_reply_tokens(parla: &Path, text: &str) -> anyhow::Result<Vec<String>> {
    let out = tokio::process::Command::new(parla)
        .args(["demo-reply", "--text", text])
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} demo-reply: build it (cargo build --release -p parla) or pass --parla-bin / PARLA_BIN",
                parla.display()
            )
        })?;
    anyhow::ensure!(
        out.status.success(),
        "{} demo-reply: {}",
        parla.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).context("demo-reply's tokens")
}

/// `parla-loadtest serve-raw`.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The reply streamed to every message, as a JSON array of tokens.
    #[arg(long, default_value = r#"["ok"]"#)]
    pub tokens_json: String,
    /// Fault injection, for the test that proves the checker catches loss: silently skip
    /// every Nth frame a connection would send (0 = off).
    #[arg(long, default_value_t = 0)]
    pub drop_every: u64,
}

/// The raw baseline: per connection, `hello` → `welcome`; each `message` → its echo (with a
/// per-connection seq and the `client_msg_id`), `stream_start`, one `token` per reply token,
/// `stream_end` (seq). No store: a reconnect is a new conversation.
pub async fn serve_raw(args: RawArgs) -> anyhow::Result<()> {
    let tokens: Vec<String> = serde_json::from_str(&args.tokens_json).context("--tokens-json")?;
    let tokens = Arc::new(tokens);
    let socket = if args.listen.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(BACKLOG)?;
    println!("raw: listening on {}", listener.local_addr()?);
    let ids = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(raw_connection(tcp, id, tokens.clone(), args.drop_every));
            }
            Err(e) => {
                // EMFILE and friends: say so (the harness reads this log) and do not spin.
                crate::note!("raw: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn raw_connection(tcp: TcpStream, id: u64, tokens: Arc<Vec<String>>, drop_every: u64) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config())).await
    else {
        return;
    };
    let reply: String = tokens.concat();
    let (mut seq, mut sent) = (0u64, 0u64);
    // Ids as long as Parla's (32 hex digits), so the frames weigh the same.
    let ident = |n: u64| format!("{id:016x}{n:016x}");
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        let now = crate::client::unix_us() / 1000;
        let mut out = Vec::new();
        match frame["type"].as_str() {
            Some("hello") => out.push(json!({
                "type": "welcome", "conversation_id": ident(0), "resume_token": "raw",
                "last_seq": 0, "protocol": 1,
            })),
            Some("message") => {
                seq += 1;
                out.push(json!({
                    "type": "message", "seq": seq, "id": ident(seq), "sender": "user",
                    "text": frame["text"], "client_msg_id": frame["client_msg_id"], "created_at": now,
                }));
                let stream_id = ident(seq | 1 << 63);
                out.push(json!({"type": "stream_start", "stream_id": stream_id, "sender": "bot"}));
                for t in tokens.iter() {
                    out.push(json!({"type": "token", "stream_id": stream_id, "delta": t}));
                }
                seq += 1;
                out.push(json!({
                    "type": "stream_end", "stream_id": stream_id, "seq": seq, "id": ident(seq),
                    "text": reply, "created_at": now,
                }));
            }
            Some("ping") => out.push(json!({"type": "pong"})),
            _ => {}
        }
        for frame in out {
            sent += 1;
            if drop_every > 0 && sent % drop_every == 0 {
                continue;
            }
            if ws.feed(Message::Text(frame.to_string().into())).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
