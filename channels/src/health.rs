//! Each connection's health as this node saw it: when its provider last reached us with a
//! correctly signed webhook, when it last accepted a message we sent, and the last failure.
//! The webhooks record what comes in once its signature checks out, the sink (and push) what
//! each send came to; the admin API reads it through `ChannelAdmin::health`.
//!
//! In memory, per node, on purpose: it answers "is this connection wired up and working?"
//! without a store write on every message. So it is empty after a restart, and in a cluster a
//! node knows only the webhooks that reached it and the sends it made (the tenant's channel
//! lease holder sends). The messages' own `delivery` records are the durable account.

use std::collections::HashMap;

use parking_lot::Mutex;
use parla_domain::channels::{ChannelHealth, ChannelHealthError};
use parla_engine::model::now_ms;

/// The longest failure message kept, in characters: a provider's error is a sentence, and the
/// console shows it on one line.
const MAX_MESSAGE_CHARS: usize = 300;

/// Every connection's [`ChannelHealth`] on this node.
#[derive(Debug, Default)]
pub(crate) struct HealthBook {
    /// By connection id. One small entry per connection that had traffic here since the
    /// start (only existing connections get any: an unknown one is refused first); a deleted
    /// connection's entry stays until the restart.
    by_connection: Mutex<HashMap<String, ChannelHealth>>,
}

impl HealthBook {
    /// The provider reached us: a webhook for `connection` passed its signature check.
    pub(crate) fn inbound(&self, connection: &str) {
        self.update(connection, |h| h.last_inbound_at = Some(now_ms()));
    }

    /// The provider accepted a message sent on `connection`.
    pub(crate) fn delivered(&self, connection: &str) {
        self.update(connection, |h| h.last_delivered_at = Some(now_ms()));
    }

    /// Something sent on `connection` failed, for the reason `message` (which holds no
    /// secret: the provider's status and message, or ours).
    pub(crate) fn failed(&self, connection: &str, message: &str) {
        let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        let error = ChannelHealthError { at: now_ms(), message };
        self.update(connection, |h| h.last_error = Some(error));
    }

    pub(crate) fn get(&self, connection: &str) -> ChannelHealth {
        self.by_connection.lock().get(connection).cloned().unwrap_or_default()
    }

    fn update(&self, connection: &str, change: impl FnOnce(&mut ChannelHealth)) {
        change(self.by_connection.lock().entry(connection.to_owned()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::HealthBook;

    #[test]
    fn each_connection_keeps_its_last_of_each_and_long_errors_are_cut() {
        let book = HealthBook::default();
        assert_eq!(book.get("c1"), Default::default(), "nothing seen: all empty");
        book.inbound("c1");
        book.failed("c1", &"x".repeat(1000));
        book.delivered("c1");
        let h = book.get("c1");
        assert!(h.last_inbound_at.is_some() && h.last_delivered_at.is_some());
        let error = h.last_error.expect("kept after a later success");
        assert_eq!(error.message.chars().count(), super::MAX_MESSAGE_CHARS);
        assert_eq!(book.get("c2"), Default::default(), "connections stay apart");
    }
}
