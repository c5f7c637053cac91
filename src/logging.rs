//! The process's log subscriber: lines on stderr, filtered by `RUST_LOG` (default `info`),
//! written as `[log] format` says — `pretty` for people, `json` (one object per line) for a
//! log collector.
//!
//! In JSON each line carries its event's fields at the top level and, under `spans`, the
//! fields of the spans it was written in: the conversation actor's work runs in a
//! `conversation` span (`tenant`, `conversation`), the sockets' frames in `widget` / `agent`
//! spans, so every line of one conversation can be selected by its id.

use parla_config::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber for the whole process; a second call (a test that already has
/// one) leaves the first in place.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already = if settings.format == "json" {
        builder
            .json()
            .flatten_event(true)
            // Every enclosing span once, outermost first; the innermost alone would lose the
            // conversation under a nested span.
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
