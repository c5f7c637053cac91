//! Members' sessions: who an access token names, checked as their account is now. The admin
//! API issues the tokens and implements this port; the agent socket, a transport of its own,
//! asks it on sign-in, on every command and whenever the member's account changes.

use async_trait::async_trait;

use crate::model::{AccountId, Role, TenantId};

/// A signed-in member, as their token names them and their account is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub tenant: TenantId,
    pub account: AccountId,
    /// Their role now (a demotion counts at once, whatever the token said).
    pub role: Role,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: u64,
}

/// Why a token names no member now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A bad token, or its account is gone (the member was removed).
    Invalid,
    Expired,
    /// The member's sessions were ended (a password reset).
    Revoked,
    /// The check itself failed (the store): nothing is known either way.
    Unavailable,
}

impl Refusal {
    /// The wire code clients switch on.
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "token_invalid",
            Self::Expired => "token_expired",
            Self::Revoked => "token_revoked",
            Self::Unavailable => "internal",
        }
    }
}

/// A token refused, with a message safe to show its holder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SessionRefused {
    pub reason: Refusal,
    pub message: String,
}

/// Checks access tokens against accounts as they are now.
#[async_trait]
pub trait MemberSessions: Send + Sync + std::fmt::Debug + 'static {
    /// The member `access_token` names: its signature and expiry hold, the account exists, and
    /// the token was issued in the account's current session epoch.
    async fn member(&self, access_token: &str) -> Result<Member, SessionRefused>;
}
