//! Channel connections as the admin API sees them: what each kind's sealed secrets hold, how a
//! connection is doing ([`ChannelHealth`]), and the [`ChannelAdmin`] port it connects channels
//! through (the `parla-channels` transport implements it), so the admin API never imports
//! another transport.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::TenantId;

/// What the admin API needs of the channels: sealing a new connection's secrets, watching its
/// tenant's conversations for outbound delivery, and how a connection is doing.
pub trait ChannelAdmin: Send + Sync + std::fmt::Debug + 'static {
    /// `plain` (a kind's secrets as JSON) sealed for storage, bound to the connection's id.
    fn seal(&self, connection_id: &str, plain: &[u8]) -> String;

    /// Starts delivering `tenant`'s conversations to their channels (idempotent).
    fn watch(&self, tenant: &TenantId);

    /// What this node has seen of the connection since it started (empty when nothing).
    fn health(&self, connection_id: &str) -> ChannelHealth;
}

/// How a connection is doing, as the node answering saw it since it started: kept in memory,
/// per node, so it is empty after a restart, and in a cluster each node knows only the webhooks
/// it received and the messages it sent (see `docs/channels.md`). Every field is null until
/// something happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChannelHealth {
    /// When the provider last reached us: a webhook (message or status report) whose
    /// signature checked out (Unix ms).
    pub last_inbound_at: Option<i64>,
    /// When the provider last accepted a message we sent (Unix ms).
    pub last_delivered_at: Option<i64>,
    /// The last failure, kept after later successes (compare its `at` with
    /// `last_delivered_at`).
    pub last_error: Option<ChannelHealthError>,
}

/// A connection's failure: a send the provider refused or that never reached it, or a failure
/// the provider reported later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChannelHealthError {
    /// When (Unix ms).
    pub at: i64,
    /// What went wrong, as a workspace may read it (the provider's status and message; never a
    /// credential).
    pub message: String,
}

/// Declares a kind's secrets: serializable, never printed.
macro_rules! secrets {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: String,)+
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Secrets(<sealed>)")
            }
        }
    };
}

secrets! {
    /// A WhatsApp connection's credentials, sealed at rest.
    WhatsAppSecrets { access_token, app_secret, verify_token }
}

secrets! {
    /// A Twilio connection's credentials, sealed at rest.
    SmsSecrets { account_sid, auth_token }
}

secrets! {
    /// A Google service account's credentials, sealed at rest.
    PushSecrets {
        client_email,
        /// PEM (PKCS#8), as in the service account's JSON key file.
        private_key,
    }
}
