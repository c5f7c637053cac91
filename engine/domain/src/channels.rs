//! Channel connections as the admin API sees them: what each kind's sealed secrets hold, and the
//! [`ChannelAdmin`] port it connects channels through (the `parla-channels` transport implements
//! it), so the admin API never imports another transport.

use serde::{Deserialize, Serialize};

use crate::model::TenantId;

/// What the admin API needs of the channels: sealing a new connection's secrets and watching
/// its tenant's conversations for outbound delivery.
pub trait ChannelAdmin: Send + Sync + std::fmt::Debug + 'static {
    /// `plain` (a kind's secrets as JSON) sealed for storage, bound to the connection's id.
    fn seal(&self, connection_id: &str, plain: &[u8]) -> String;

    /// Starts delivering `tenant`'s conversations to their channels (idempotent).
    fn watch(&self, tenant: &TenantId);
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
