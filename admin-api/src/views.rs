//! What the API answers: one typed view per response body, so the OpenAPI document is derived
//! from the very types the handlers serialise (a field cannot drift from its description).
//! Views leave out what never leaves the server: password hashes, TOTP secrets, key digests,
//! resume-token digests.

use parla_engine::model::{
    Account, AccountId, AccountType, ApiKey, Bot, BotId, Channel, Conversation, ConversationId,
    Handling, Intent, IntentAction, IntentResponse, Message, Role, Tenant, TenantId,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what a client branches on (e.g. `validation_failed`).
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// Machine-readable context, e.g. `field` for a validation error, `retry_after_secs`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A member account, as its tenant sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: AccountId,
    pub email: String,
    pub name: String,
    pub company: Option<String>,
    pub account_type: AccountType,
    pub role: Role,
    pub tenant_id: TenantId,
    pub email_verified: bool,
    /// Whether logins need a second factor.
    pub totp_enabled: bool,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.clone(),
            email: a.email.clone(),
            name: a.name.clone(),
            company: a.company.clone(),
            account_type: a.account_type,
            role: a.role,
            tenant_id: a.tenant_id.clone(),
            email_verified: a.email_verified,
            totp_enabled: a.totp.as_ref().is_some_and(|t| t.enabled),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self { id: t.id.clone(), name: t.name.clone() }
    }
}

/// `register`: the new owner and its new workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub account: AccountView,
    pub tenant: TenantView,
}

/// A signed-in session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// JWT (HS256); send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: `refresh` answers with a new one.
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<AccountView>,
}

/// An invitation on its way: pending until accepted, revoked or `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    /// For `DELETE /api/members/invitations/{id}`.
    pub id: String,
    pub email: String,
    pub role: Role,
    /// Who sent it; accepting needs them still to be a member allowed to grant `role`.
    pub invited_by: AccountId,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; past it the link no longer works.
    pub expires_at: i64,
}

impl From<&parla_engine::model::Invitation> for InvitationView {
    fn from(i: &parla_engine::model::Invitation) -> Self {
        Self {
            id: i.id.clone(),
            email: i.email.clone(),
            role: i.role,
            invited_by: i.invited_by.clone(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// The tenant's pending invitations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub data: Vec<InvitationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrollment {
    /// For a QR code: `otpauth://totp/Parla:…?secret=…&issuer=Parla`.
    pub otpauth_url: String,
    /// The same secret, base32, for typing in by hand.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnabled {
    pub enabled: bool,
    /// Ten single-use codes, shown once; each replaces a TOTP code at one login.
    pub recovery_codes: Vec<String>,
}

/// An API key as listed: never its value or digest.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    /// The account id of the member who minted it (`null` for keys minted before this was
    /// recorded): it is revoked when they are removed or demoted below admin.
    pub created_by: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked: k.revoked,
            created_by: k.created_by.as_ref().map(|a| a.as_str().to_owned()),
        }
    }
}

/// A new API key with its value, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// `pk_…`: send as `Authorization: Bearer pk_…`.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKeyView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotList {
    pub data: Vec<Bot>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentList {
    pub data: Vec<IntentView>,
}

/// An intent; its webhook secrets are write-only (never answered back).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntentView {
    pub id: String,
    pub bot_id: BotId,
    pub name: String,
    pub description: Option<String>,
    pub examples: Vec<String>,
    pub response: IntentResponse,
    pub actions: Vec<ActionView>,
}

/// An intent action, without its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionView {
    Webhook { url: String },
}

impl From<&Intent> for IntentView {
    fn from(i: &Intent) -> Self {
        Self {
            id: i.id.clone(),
            bot_id: i.bot_id.clone(),
            name: i.name.clone(),
            description: i.description.clone(),
            examples: i.examples.clone(),
            response: i.response.clone(),
            actions: i
                .actions
                .iter()
                .map(|a| match a {
                    IntentAction::Webhook { url, .. } => ActionView::Webhook { url: url.clone() },
                })
                .collect(),
        }
    }
}

/// A conversation without its messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: ConversationId,
    pub bot_id: BotId,
    pub source: Channel,
    pub started_at: i64,
    pub user_agent: Option<String>,
    /// Status, assignee, resolution, waiting time, agents' read position, CSAT.
    #[serde(flatten)]
    pub handling: Handling,
    /// Mean sentiment of the visitor's messages, -1 to 1; null before any polar message.
    pub sentiment: Option<f32>,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        Self {
            id: c.id.clone(),
            bot_id: c.bot_id.clone(),
            source: c.source,
            started_at: c.started_at,
            user_agent: c.user_agent.clone(),
            handling: c.handling.clone(),
            sentiment: c.sentiment(),
        }
    }
}

/// One page of a bot's conversations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    pub data: Vec<ConversationView>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A conversation and one page of its messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    pub conversation: ConversationView,
    /// What the visitor's forms collected, by field name (later submissions replace a
    /// field's value); empty when nothing was collected.
    pub user_data: std::collections::BTreeMap<String, String>,
    /// In `seq` order.
    pub messages: Vec<Message>,
    /// Pass as `after_seq` for the next page; null on the last page.
    pub next_after_seq: Option<u64>,
}

/// A conversation opened by an integration.
#[derive(Debug, Serialize, ToSchema)]
pub struct Opened {
    pub conversation_id: ConversationId,
    /// What a widget sends in `hello.resume_token` to join this conversation.
    pub resume_token: String,
}

/// A message stored by the conversation's actor.
#[derive(Debug, Serialize, ToSchema)]
pub struct Posted {
    pub message: Message,
    /// True when this `client_msg_id` was already stored: `message` is the original.
    pub duplicate: bool,
}
