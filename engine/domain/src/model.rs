//! Domain types, after the product brief's data model.
//!
//! Identifiers are newtypes over strings so a tenant id can never be passed where a bot id is
//! expected. Timestamps are Unix milliseconds (UTC).

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

pub use parla_protocol::vocab::{Appearance, MessageType, Sender, WidgetPosition};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A tenant (workspace): the unit of isolation. Every stored key starts with it.
    TenantId
);
id_type!(
    /// A bot. Globally unique, because a widget connects knowing only the bot id.
    BotId
);
id_type!(
    /// A conversation, unique within its tenant.
    ConversationId
);
id_type!(
    /// A stored message.
    MessageId
);
id_type!(
    /// A member account of a tenant (a person who logs in to the admin API).
    AccountId
);

impl ConversationId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

impl MessageId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

/// Addresses one conversation of one tenant: the routing key of every event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationKey {
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
}

/// Identifies one client connection (a visitor's socket), unique across nodes.
///
/// On the wire between nodes it is a hex string: serde's buffering of internally tagged enums
/// (our events) cannot carry a `u128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u128);

impl ConnId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().as_u128())
    }
}

impl Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for ConnId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        u128::from_str_radix(&hex, 16).map(ConnId).map_err(serde::de::Error::custom)
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A member's role in its tenant, most powerful first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Agent,
    Viewer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountType {
    #[default]
    Individual,
    Business,
    Enterprise,
}

/// A person who administers a tenant. Emails are unique across all tenants (login knows no
/// tenant) and stored lower-cased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub tenant_id: TenantId,
    pub email: String,
    pub name: String,
    pub company: Option<String>,
    pub account_type: AccountType,
    pub role: Role,
    /// Argon2id PHC string; never leaves the server.
    pub password_hash: String,
    pub email_verified: bool,
    pub created_at: i64,
    /// Two-factor authentication, once enrolled.
    #[serde(default)]
    pub totp: Option<TotpState>,
    /// Access tokens carry the epoch they were issued in; bumping it (password reset) ends
    /// every one of them at once, without waiting for them to expire.
    #[serde(default)]
    pub session_epoch: u64,
    /// How many times the record was written: updates are compare-and-set on it (see
    /// [`crate::store::Accounts::update_account`]), so a read-modify-write that raced another
    /// (a TOTP enrolment against a password reset) is refused instead of undoing it.
    #[serde(default)]
    pub version: u64,
}

/// An account's TOTP (RFC 6238) second factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpState {
    /// The shared secret, base32. Needed in clear to compute codes.
    pub secret_base32: String,
    /// False between enrolment and the first confirmed code.
    pub enabled: bool,
    /// The last time step accepted: a code is accepted once (RFC 6238 §5.2).
    pub last_step: u64,
    /// SHA-256 digests of the unused recovery codes.
    pub recovery_digests: Vec<String>,
}

/// What a one-time token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneTimeKind {
    PasswordReset,
    EmailVerification,
    /// An invitation to join `tenant_id` as `role`; `account_id` is the inviter.
    Invitation,
}

/// A single-use, expiring token sent by mail (reset and verification links), stored only as
/// the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneTimeToken {
    pub digest: String,
    pub kind: OneTimeKind,
    pub account_id: AccountId,
    pub tenant_id: TenantId,
    pub expires_at: i64,
    /// For invitations: who is invited, and as what.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
}

/// A refresh token, stored only as the SHA-256 of its value. Tokens rotate: each use issues a
/// new one in the same `family`; using one twice revokes the whole family (token theft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub digest: String,
    pub account_id: AccountId,
    pub tenant_id: TenantId,
    pub family: String,
    pub expires_at: i64,
    /// Set by the first use.
    pub used: bool,
    /// The account's session epoch when the token was issued: a token from before a password
    /// reset is refused even if it was stored after the reset revoked the others (a login that
    /// verified the old password just before the reset).
    #[serde(default)]
    pub session_epoch: u64,
}

/// An invitation to join a tenant as `role`, sent by mail. Stored apart from the mailed token's
/// value (only its SHA-256 `digest`), listed per tenant, revocable, and accepted once before
/// `expires_at`, and only while `invited_by` may still grant `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: String,
    pub tenant_id: TenantId,
    /// SHA-256 of the mailed token.
    pub digest: String,
    /// Lower-cased.
    pub email: String,
    pub role: Role,
    pub invited_by: AccountId,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A tenant's API key for server-to-server integrations. The key itself is shown once at
/// creation; only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    /// The key's first characters, to recognise it in a list.
    pub prefix: String,
    pub digest: String,
    /// What it may do, e.g. `bots:read`, `bots:write`.
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    /// The member who minted it: their key goes when they are removed or demoted below admin,
    /// so a key does not outlive its maker's rights. `None` for keys minted before this was
    /// recorded (serde default: stored records without it still read).
    #[serde(default)]
    pub created_by: Option<AccountId>,
}

/// A workspace that owns bots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
    /// The workspace's own LLM, used instead of the server's.
    #[serde(default)]
    pub llm: Option<TenantLlm>,
    /// LLM tokens (prompt + completion) the workspace may use per calendar month (UTC); past
    /// it, bots answer without the LLM. `None`: unlimited.
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    /// How conversations reach human agents.
    #[serde(default)]
    pub agents: AgentSettings,
    /// What personal data is masked, and where (see `crate::redact`).
    #[serde(default)]
    pub privacy: PrivacySettings,
    /// How long conversations and the unmatched-messages list are kept.
    #[serde(default)]
    pub retention: RetentionSettings,
}

/// How long a workspace keeps what visitors wrote, in days (`None`: for good). A sweep deletes
/// older conversations through their actors (counters stay; they hold no personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// A conversation goes this long after its last message (or its start, with none). A bot's
    /// own `config.retention_days` wins for its conversations.
    #[schema(minimum = 1, maximum = 36500)]
    pub conversation_days: Option<u32>,
    /// The analytics' unmatched-messages list forgets entries this old.
    #[schema(minimum = 1, maximum = 36500)]
    pub unmatched_days: Option<u32>,
}

/// Where a workspace masks emails, phone numbers, card numbers and IBANs in what visitors write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PrivacySettings {
    /// Masked before the message is stored: the clear text is never written (nor shown to
    /// agents, nor listed in the analytics' unmatched messages).
    pub redact_transcripts: bool,
    /// Masked in what is sent to the LLM provider only (the transcript keeps it).
    pub redact_llm: bool,
}

impl Tenant {
    pub fn new(id: TenantId, name: String, created_at: i64) -> Self {
        Self {
            id,
            name,
            created_at,
            llm: None,
            monthly_token_budget: None,
            agents: AgentSettings::default(),
            privacy: PrivacySettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

/// How escalated conversations reach agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Agents pick conversations from the inbox themselves.
    Manual,
    /// To the online agent after the last one given a conversation.
    RoundRobin,
    /// To the online agent holding the fewest conversations.
    #[default]
    LeastLoaded,
}

/// A tenant's rules for human agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AgentSettings {
    pub assignment: Assignment,
    /// Conversations the dispatcher gives one agent at most (claims by hand are not capped).
    pub max_chats_per_agent: u32,
    /// When agents work; `None`: always.
    pub business_hours: Option<BusinessHours>,
    /// Told to a visitor who asks for a person when no agent is online; `None`: a default in
    /// the bot's language.
    pub offline_message: Option<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            assignment: Assignment::default(),
            max_chats_per_agent: 5,
            business_hours: None,
            offline_message: None,
        }
    }
}

/// Opening hours in one fixed UTC offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessHours {
    /// Minutes east of UTC (Rome in winter: 60).
    pub utc_offset_minutes: i32,
    /// The open intervals; a day without one is closed.
    pub days: Vec<DayHours>,
}

/// One day's open interval, local time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DayHours {
    /// 1 = Monday … 7 = Sunday.
    pub day: u8,
    /// `HH:MM`, inclusive.
    pub open: String,
    /// `HH:MM`, exclusive; after `open`.
    pub close: String,
}

/// Minutes after midnight of `HH:MM`, if it is one (00:00 to 24:00).
pub fn minutes_of(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

impl BusinessHours {
    /// Whether `at` (Unix ms) falls in an open interval.
    pub fn open_at(&self, at: i64) -> bool {
        let local = at / 60_000 + i64::from(self.utc_offset_minutes);
        let day_number = local.div_euclid(1440);
        let minute = u32::try_from(local.rem_euclid(1440)).unwrap_or(0);
        // 1970-01-01 was a Thursday (day 4).
        let weekday = u8::try_from((day_number + 3).rem_euclid(7) + 1).unwrap_or(1);
        self.days.iter().any(|d| {
            d.day == weekday
                && matches!((minutes_of(&d.open), minutes_of(&d.close)),
                    (Some(open), Some(close)) if open <= minute && minute < close)
        })
    }
}

/// An OpenAI-compatible endpoint chosen by a tenant.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantLlm {
    pub base_url: String,
    pub model: String,
    /// Needed in clear to call the provider; never answered back by the API.
    pub api_key: String,
}

impl fmt::Debug for TenantLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLlm")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The calendar month (UTC) of a Unix-milliseconds time, as `YYYY-MM`: the budget period.
pub fn month_of(ms: i64) -> String {
    let (year, month, _) = utc_date(ms);
    format!("{year:04}-{month:02}")
}

/// The UTC (year, month, day) of a Unix-milliseconds time.
pub fn utc_date(ms: i64) -> (i64, i64, i64) {
    // Civil-from-days (Howard Hinnant), exact for the proleptic Gregorian calendar.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A Unix-milliseconds time as RFC 3339 UTC to the second (`2026-11-26T13:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    let (year, month, day) = utc_date(ms);
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BotStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BotCategory {
    CustomerSupport,
    Sales,
    Hr,
    Education,
    Healthcare,
    Custom,
}

/// A bot's behaviour settings (the brief's `config` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BotConfig {
    /// Said by the bot when a conversation starts; none = the bot waits for the visitor.
    pub welcome_message: Option<String>,
    /// Said when no intent matches with enough confidence.
    pub fallback_message: String,
    /// Free-form description of the bot's tone, used by LLM responders.
    pub personality: Option<String>,
    /// How long this bot's conversations are kept, in days, instead of the workspace's
    /// `retention.conversation_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
}

/// How the bot is embedded (the brief's `integration` JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotIntegration {
    /// Origins (`https://shop.example.com`, `http://localhost:3000`) whose pages may open the
    /// widget; a browser connecting from any other page is refused (`origin_not_allowed`).
    /// Empty: any page may.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl BotIntegration {
    /// Whether a browser page at `origin` may open a conversation. Clients that send no
    /// `Origin` (servers, apps) are not browsers embedding the widget and are not limited.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                self.allowed_origins.is_empty()
                    || self.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bot {
    pub id: BotId,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub category: BotCategory,
    pub language: String,
    pub status: BotStatus,
    pub config: BotConfig,
    #[serde(default)]
    pub appearance: Appearance,
    #[serde(default)]
    pub integration: BotIntegration,
    /// A bot installed from the marketplace: the creator's bot it follows (intents, knowledge,
    /// messages, personality) and the subscription that pays for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_from: Option<crate::marketplace::Installed>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an intent answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntentResponse {
    /// What the bot says; for a rich response, its readable fallback (shown by clients that do
    /// not draw `content`, and what the transcript and the agents see).
    pub text: String,
    #[serde(default)]
    pub quick_replies: Vec<String>,
    /// An image, file, card, carousel or form sent with the answer (the brief's response
    /// template). Checked by [`crate::rich::RichContent::validate`] when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::rich::RichContent>,
}

/// What happens, besides the answer, when an intent matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum IntentAction {
    /// POSTs an `intent.matched` event to `url`, signed with HMAC-SHA256 under `secret` (the
    /// `Parla-Signature` header; see `webhook`).
    Webhook { url: String, secret: String },
}

/// A bot intent: training phrases and the response they trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Intent {
    pub id: String,
    pub bot_id: BotId,
    pub name: String,
    pub description: Option<String>,
    pub examples: Vec<String>,
    pub response: IntentResponse,
    /// Run after the bot's answer is stored.
    #[serde(default)]
    pub actions: Vec<IntentAction>,
}

/// Where a conversation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Whatsapp,
    Sms,
    Api,
    /// Push notifications (FCM) to a widget visitor's device.
    Push,
    /// A tenant's own test chat with its bot (the console's "Try it"): opened through the
    /// admin API by someone who may edit the bot, whatever its status, and resumed by a widget
    /// from any origin. It counts in no analytics, never enters the agents' inbox and is never
    /// escalated.
    Preview,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Web,
        Channel::Whatsapp,
        Channel::Sms,
        Channel::Api,
        Channel::Push,
        Channel::Preview,
    ];

    /// Its name on the wire (`web`, `whatsapp`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Api => "api",
            Channel::Push => "push",
            Channel::Preview => "preview",
        }
    }

    /// Its index in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The channel named `name` (as [`Channel::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConversationStatus {
    /// The bot answers.
    #[default]
    Open,
    /// The visitor asked for a person, or the bot failed to understand repeatedly: waiting for
    /// an agent (the bot keeps answering meanwhile).
    Escalated,
    /// An agent has taken it over: the bot is muted.
    Assigned,
    /// Closed by an agent with a [`Resolution`]; a new visitor message opens it again.
    Resolved,
}

/// How a conversation ended (the brief's `ConversationResolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    Resolved,
    Unresolved,
    Escalated,
    Abandoned,
}

/// A human agent, as conversations and visitors know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentRef {
    #[schema(value_type = String)]
    pub id: AccountId,
    /// Shown to the visitor ("Ann joined the conversation").
    pub name: String,
}

/// Who handles a conversation and where it stands: written by its actor alone.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Handling {
    pub status: ConversationStatus,
    /// The agent holding it (status ASSIGNED).
    pub assignee: Option<AgentRef>,
    /// Set when RESOLVED.
    pub resolution: Option<Resolution>,
    /// When it was resolved (Unix ms).
    pub ended_at: Option<i64>,
    /// Since when the visitor waits for an agent (ESCALATED), Unix ms.
    pub waiting_since: Option<i64>,
    /// Highest seq an agent has read.
    pub agent_read_seq: u64,
    /// The visitor's satisfaction score, 1 to 5, when asked and answered.
    pub csat: Option<u8>,
    /// The visitor was asked for a score and has not answered yet.
    pub csat_pending: bool,
}

impl Handling {
    /// Whether an agent must see it: it waits for one (ESCALATED) or one holds it (ASSIGNED).
    /// Such conversations are indexed apart (`InboxIndex::attention_conversations`).
    pub fn needs_agent(&self) -> bool {
        matches!(self.status, ConversationStatus::Escalated | ConversationStatus::Assigned)
    }
}

/// A bot's connection to a messaging provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConnection {
    pub id: String,
    pub tenant_id: TenantId,
    pub bot_id: BotId,
    pub kind: Channel,
    /// The provider's public address of the bot: WhatsApp's phone number id, the SMS number.
    pub address: String,
    /// The credentials, sealed (AES-256-GCM under the server's master key): never stored or
    /// returned in clear.
    pub sealed_secrets: String,
    /// The credentials' last four characters each, to tell them apart in the API.
    pub secret_hints: std::collections::BTreeMap<String, String>,
    /// WhatsApp: the approved template (name, language code) sent instead of a free-form
    /// message outside the 24-hour customer-service window; its one body parameter carries
    /// the message's text.
    #[serde(default)]
    pub template: Option<(String, String)>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A reply agents reuse, typed as `/shortcut`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CannedResponse {
    pub id: String,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// Unique in the tenant: 1 to 32 of a-z, 0-9, `-`, `_`.
    pub shortcut: String,
    pub text: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whether `s` is a valid canned-response shortcut (without its `/`).
pub fn is_shortcut(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// An agent's note on a conversation: seen by agents, never by the visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Note {
    pub id: String,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    #[schema(value_type = String)]
    pub conversation_id: ConversationId,
    pub author: AgentRef,
    pub text: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub tenant_id: TenantId,
    pub bot_id: BotId,
    /// SHA-256 (hex) of the visitor's resume token; the token itself is never stored.
    pub resume_token_sha256: String,
    pub source: Channel,
    pub user_agent: Option<String>,
    pub started_at: i64,
    #[serde(flatten)]
    pub handling: Handling,
    /// Sum and count of the visitor messages' sentiment, kept by the store on append: their
    /// mean is the conversation's sentiment.
    #[serde(default)]
    pub sentiment_sum: f32,
    #[serde(default)]
    pub sentiment_count: u32,
    /// What the conversation has contributed to the tenant's analytics (kept by the store).
    #[serde(default)]
    pub stats: crate::analytics::ConversationStats,
}

impl Conversation {
    /// The mean sentiment of the visitor's messages that had one.
    pub fn sentiment(&self) -> Option<f32> {
        (self.sentiment_count > 0).then(|| self.sentiment_sum / self.sentiment_count as f32)
    }
}

impl Conversation {
    pub fn key(&self) -> ConversationKey {
        ConversationKey { tenant_id: self.tenant_id.clone(), conversation_id: self.id.clone() }
    }
}

/// One stored message. `seq` is assigned by the conversation actor: strictly increasing from 1,
/// no gaps, unique within the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub sender: Sender,
    pub kind: MessageType,
    pub text: String,
    /// The client's idempotency key, for messages a client sent.
    pub client_msg_id: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f32>,
    pub sentiment: Option<f32>,
    /// For an LLM's answer: the tokens its prompt and its completion cost.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
    /// The agent who wrote it (sender `human`).
    #[serde(default)]
    pub agent_id: Option<AccountId>,
    pub created_at: i64,
    /// On a channel (WhatsApp, SMS): how far the provider got delivering it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// What a message of a `kind` other than `text` needs to be drawn; `text` stays its
    /// readable fallback. Boxed, like `form`: most messages have neither, and a message is
    /// moved through every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Box<crate::rich::RichContent>>,
    /// A visitor's button press: the button's payload (`text` is its label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback: Option<String>,
    /// A visitor's submitted form (`text` is a readable summary); its values are merged into
    /// the conversation's user data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Box<crate::rich::FormSubmission>>,
    /// A bot's answer: the knowledge-base passages it was drawn from (the one the built-in
    /// responder answered with, or those an LLM's prompt held), each document and heading
    /// once, in the order retrieval ranked them. Agents and the REST API see it; widget frames
    /// leave it out. Empty (absent) for an intent's answer or the fallback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRef>,
}

/// A knowledge-base passage an answer used: its document and what the passage is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceRef {
    /// The document's id (`/api/bots/{id}/documents/{document_id}`).
    pub document_id: String,
    /// The heading the passage sits under (Markdown, HTML, DOCX), or its document's title when
    /// it has none (plain text, CSV, JSON, PDF), as it was when the document was processed.
    pub title: String,
}

impl Message {
    /// A plain text message of the conversation `key`, at `seq`, written now.
    pub fn text(
        key: &ConversationKey,
        seq: u64,
        sender: Sender,
        text: String,
        client_msg_id: Option<String>,
    ) -> Self {
        Message {
            id: MessageId::generate(),
            tenant_id: key.tenant_id.clone(),
            conversation_id: key.conversation_id.clone(),
            seq,
            sender,
            kind: MessageType::Text,
            text,
            client_msg_id,
            intent: None,
            confidence: None,
            sentiment: None,
            prompt_tokens: None,
            completion_tokens: None,
            agent_id: None,
            created_at: now_ms(),
            delivery: None,
            content: None,
            postback: None,
            form: None,
            sources: Vec::new(),
        }
    }
}

/// A channel message's delivery, as its provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub status: DeliveryStatus,
    /// The provider's ids of the pieces it was sent as (WhatsApp `wamid`s, Twilio `SM…`).
    pub provider_ids: Vec<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub updated_at: i64,
}

impl Delivery {
    /// `delivery` merged with what was `known`: provider ids accumulate, the status never
    /// moves back, a failure always shows. Every store records deliveries this way.
    pub fn merged(known: Option<Delivery>, delivery: &Delivery) -> Delivery {
        match known {
            Some(mut known) => {
                for id in &delivery.provider_ids {
                    if !known.provider_ids.contains(id) {
                        known.provider_ids.push(id.clone());
                    }
                }
                known.status = known.status.max(delivery.status);
                known.error = delivery.error.clone().or(known.error);
                known.updated_at = delivery.updated_at;
                known
            }
            None => delivery.clone(),
        }
    }
}

/// Delivery states, in the order they happen (a later report never moves one back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// What a knowledge-base document was made from (the brief's `DocumentType`; Markdown and HTML
/// files are told apart from plain text so their structure is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentType {
    Pdf,
    Docx,
    Txt,
    Markdown,
    Csv,
    Json,
    Html,
    WebPage,
}

/// Where a document is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

/// A document of a bot's knowledge base. Its original bytes are kept apart (for reprocessing);
/// its text lives in its chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: String,
    pub tenant_id: TenantId,
    pub bot_id: BotId,
    pub title: String,
    #[serde(rename = "type")]
    pub kind: DocumentType,
    /// The file name or URL it came from.
    pub source: Option<String>,
    pub size_bytes: u64,
    pub status: ProcessStatus,
    /// 0 to 100.
    pub progress: u8,
    /// Why processing failed, for people.
    pub error: Option<String>,
    /// Chunks made from it.
    pub chunks: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A passage of a document, the unit of retrieval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub document_id: String,
    /// Position in its document, from 0.
    pub position: u32,
    /// The heading it sits under, or the document's title.
    pub title: String,
    pub text: String,
}

#[cfg(test)]
mod hours_tests {
    use super::*;

    #[test]
    fn business_hours_follow_the_local_weekday_and_clock() {
        let hours = BusinessHours {
            utc_offset_minutes: 60,
            days: vec![DayHours { day: 1, open: "09:00".into(), close: "18:00".into() }],
        };
        // Monday 2026-11-23 08:30 UTC = 09:30 in UTC+1: open.
        let monday_0830_utc = 1_795_422_600_000;
        assert!(hours.open_at(monday_0830_utc));
        assert!(!hours.open_at(monday_0830_utc - 3_600_000), "07:30 UTC = 08:30 local: closed");
        assert!(!hours.open_at(monday_0830_utc + 86_400_000), "Tuesday: closed");
        assert_eq!(minutes_of("24:00"), Some(1440));
        assert_eq!(minutes_of("9:00"), None);
        assert_eq!(minutes_of("12:60"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_stored_before_its_maker_was_recorded_still_reads() {
        let stored = r#"{"id":"k","tenant_id":"t","name":"ci","prefix":"pk_abc","digest":"d",
            "scopes":["bots:read"],"created_at":1,"last_used_at":null,"revoked":false}"#;
        let key: ApiKey = serde_json::from_str(stored).expect("an older record");
        assert_eq!(key.created_by, None);
    }
}
