//! `parla`: the one binary. `parla serve` runs everything on the embedded defaults.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use parla_config::Settings;

#[derive(Debug, Parser)]
#[command(name = "parla", version, about = "Parla: real-time messaging engine for AI chatbots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server: widget WebSocket, demo page, engine and embedded store.
    Serve {
        /// A TOML file layered over the built-in defaults (see config/parla.default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the embedded store.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// What this process runs in a cluster: all, gateway, engine or admin.
        #[arg(long)]
        role: Option<String>,
    },
    /// Applies the CQL schema (`schema-cql/`) to the cluster `[store]` names; idempotent.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Rotates the master key that seals secrets at rest: writes a new key first in the key file
    /// (the old ones stay after it, still opening), then asks the running server, on its
    /// operations listener, to re-seal every secret under the new key. `--retire` then drops the
    /// old keys from the file.
    RotateKey {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory of the embedded store (the key file's default lives beside it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The server's operations listener (host:port); default `[server] ops_listen`.
        #[arg(long)]
        ops: Option<String>,
        /// Once the server has re-sealed everything, keep only the new key in the file.
        #[arg(long)]
        retire: bool,
        /// No new key: only have the server re-seal everything under its current key (the
        /// last step of a rotation with keys in the environment).
        #[arg(long, conflicts_with = "retire")]
        reseal: bool,
    },
    /// Prints the effective configuration (defaults, file, environment) as JSON.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints, as a JSON array, the tokens the demo bot streams in reply to `--text` (its
    /// built-in responder): the load harness checks every server's frames against them.
    #[command(hide = true)]
    DemoReply {
        #[arg(long)]
        text: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Extracts one document's text, stdin to JSON on stdout, within memory and CPU limits it
    /// sets on itself: the server runs it for every document (see
    /// `parla_knowledge::extractor`), people do not.
    #[command(hide = true)]
    Extract {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        cpu_secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    // Everything this process creates is its owner's alone (the data dir holds secrets and
    // transcripts): files 0600, folders 0700. Set before any thread or file exists.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, data_dir, role } => {
            let mut overrides = Vec::new();
            if let Some(listen) = listen {
                overrides.push(("server.listen", listen.into()));
            }
            if let Some(dir) = data_dir {
                overrides.push(("store.data_dir", dir.display().to_string().into()));
            }
            if let Some(role) = role {
                overrides.push(("cluster.role", role.into()));
            }
            let settings = Settings::load(config.as_deref(), &overrides)?;
            parla::logging::init(&settings.log);
            serve(settings)
        }
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref(), &[])?;
            parla::logging::init(&settings.log);
            let applied = tokio::runtime::Runtime::new()?.block_on(parla::migrate(&settings))?;
            if applied.is_empty() {
                println!("parla: the CQL schema is up to date");
            }
            for version in applied {
                println!("parla: applied {version}");
            }
            Ok(())
        }
        Command::Extract { kind, memory_bytes, cpu_secs } => {
            let code = parla_knowledge::extractor::child_main(&kind, memory_bytes, cpu_secs);
            std::process::exit(code)
        }
        Command::DemoReply { text, config } => {
            let settings = Settings::load(config.as_deref(), &[])?;
            let tokens = parla_engine::demo::demo_reply(&text, settings.responder.min_confidence);
            println!("{}", serde_json::to_string(&tokens)?);
            Ok(())
        }
        Command::RotateKey { config, data_dir, ops, retire, reseal } => {
            let mut overrides = Vec::new();
            if let Some(dir) = data_dir {
                overrides.push(("store.data_dir", dir.display().to_string().into()));
            }
            let settings = Settings::load(config.as_deref(), &overrides)?;
            let ops = ops.unwrap_or_else(|| settings.server.ops_listen.clone());
            parla::secrets::rotate_key_command(&settings, &ops, retire, reseal)
        }
        Command::Config { config } => {
            let settings = Settings::load(config.as_deref(), &[])?;
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(())
        }
    }
}

#[tokio::main]
async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir = settings.store.data_dir.clone();
    let running = parla::start(settings).await?;
    let url = format!("{}://{}", if running.tls { "https" } else { "http" }, running.addr);
    println!("parla: listening on {url}");
    if let Some(ops) = running.ops_addr {
        println!("parla: /readyz and /metrics on http://{ops}");
    }
    println!("parla: data dir {}", data_dir.display());
    if running.demo_created {
        println!("parla: created the demo tenant and bot `demo`");
    }
    println!("parla: chat with the demo bot at {url}/?bot=demo");
    let stopper = running.stopper();
    let signalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = signalled.clone();
    let stopping = tokio::spawn(async move {
        shutdown_signal().await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!("shutting down");
        stopper.stop().await;
    });
    let result = running.wait().await;
    // Stopped by a signal: let the stop finish (a cluster node hands its conversations over)
    // before the runtime, and every actor with it, is dropped.
    if signalled.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = stopping.await;
    }
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
