//! Widget protocol v1: the frames, written once. `docs/protocol.md` documents them; keep the
//! two in step (the gateway's tests exercise every frame).
//!
//! JSON text frames, each with a `type`. Unknown extra fields are ignored, so clients may send
//! more than this; servers may add fields, and clients must ignore fields they do not know.

/// The rich-message types are those the engine stores (what is stored is what is sent).
pub use crate::rich::{Card, CardButton, FormField, FormInput, FormSubmission, RichContent};
use crate::vocab::{Appearance, MessageType, Sender};
use serde::{Deserialize, Serialize};

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest `client_msg_id` accepted.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 128;

/// Longest push token accepted (FCM registration tokens are ~160 bytes).
pub const MAX_PUSH_TOKEN_LEN: usize = 4096;

/// A frame from the widget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Opens a new conversation with `bot_id`, or resumes one.
    Hello {
        bot_id: String,
        conversation_id: Option<String>,
        resume_token: Option<String>,
        /// Replay every message with a higher seq before live traffic.
        last_seq: Option<u64>,
    },
    /// A visitor message; `client_msg_id` is the client's idempotency key.
    Message {
        client_msg_id: String,
        text: String,
        /// The button's payload when the visitor pressed a CARD or CAROUSEL button (`text` is
        /// the button's label). Optional, additive to v1.
        #[serde(default)]
        postback: Option<String>,
        /// The fields of a FORM the visitor submitted (`text` is a readable summary).
        /// Optional, additive to v1.
        #[serde(default)]
        form: Option<FormSubmission>,
    },
    Typing {
        on: bool,
    },
    /// The visitor has seen everything up to `seq`.
    Read {
        seq: u64,
    },
    /// This device's push token (FCM): replies arriving while no socket of the visitor is
    /// open are notified to it.
    PushToken {
        token: String,
    },
    Ping,
}

/// A frame to the widget.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        conversation_id: String,
        resume_token: String,
        /// The conversation's highest stored seq when it was opened.
        last_seq: u64,
        protocol: u32,
        bot: BotInfo,
    },
    /// A stored message. Echoes of the visitor's own carry its `client_msg_id`.
    Message(MessageFrame),
    StreamStart {
        stream_id: String,
        sender: Sender,
    },
    Token {
        stream_id: String,
        delta: String,
    },
    /// The stream stopped before its end and will never be stored (an agent took over):
    /// remove its bubble.
    StreamCancelled {
        stream_id: String,
    },
    /// The stream is over and stored as message `id` with `seq`; `text` is its full text.
    StreamEnd {
        stream_id: String,
        seq: u64,
        id: String,
        text: String,
        created_at: i64,
        /// As in `message`: the stored message's type when not `text`. Additive to v1.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<MessageType>,
        /// As in `message`: what the stored message needs to be drawn. Additive to v1.
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<RichContent>,
    },
    Typing {
        sender: Sender,
        on: bool,
    },
    Read {
        sender: Sender,
        seq: u64,
    },
    Handoff {
        to: Sender,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct BotInfo {
    pub id: String,
    pub name: String,
    /// The bot's language (`en`, `it`, …): the widget's default UI language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The bot's widget customisation (title, colours), as the tenant set it.
    pub appearance: Appearance,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MessageFrame {
    pub seq: u64,
    pub id: String,
    pub sender: Sender,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: i64,
    /// The message's type; absent means `text`. Additive to v1: `text` always carries a
    /// readable fallback, so a client that ignores `kind` still shows something sensible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<MessageType>,
    /// What a non-text message needs to be drawn (image URL, card, form…). Additive to v1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<RichContent>,
}

/// The JSON Schema of every frame, from which the widget's TypeScript types are generated
/// (`widget/src/protocol.schema.json` → `widget/src/protocol.gen.ts`). The test
/// `protocol_schema_is_committed` fails when the committed copy is stale.
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    use utoipa::{PartialSchema, ToSchema, openapi::RefOr, openapi::schema::Schema};
    let mut defs: Vec<(String, RefOr<Schema>)> = Vec::new();
    <ClientFrame as ToSchema>::schemas(&mut defs);
    <ServerFrame as ToSchema>::schemas(&mut defs);
    let mut components = serde_json::Map::new();
    for (name, schema) in defs {
        components.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    components.insert(
        "ClientFrame".into(),
        serde_json::to_value(<ClientFrame as PartialSchema>::schema()).unwrap_or_default(),
    );
    components.insert(
        "ServerFrame".into(),
        serde_json::to_value(<ServerFrame as PartialSchema>::schema()).unwrap_or_default(),
    );
    serde_json::json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ParlaWidgetProtocolV1",
        "description": "Generated from gateway/protocol/src/widget.rs by its test protocol_schema_is_committed; do not edit.",
        "components": { "schemas": components },
    })
}

/// Error codes the gateway itself produces (the engine's come from `EngineError::code`).
pub mod codes {
    /// The frame is not JSON, has no known `type`, or lacks a required field.
    pub const MALFORMED_FRAME: &str = "malformed_frame";
    /// The frame exceeds `gateway.max_frame_bytes`.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// Binary frames are not part of the protocol.
    pub const UNSUPPORTED_FRAME: &str = "unsupported_frame";
    /// A message's text is empty or longer than `gateway.max_text_chars`.
    pub const INVALID_TEXT: &str = "invalid_text";
    /// A `client_msg_id` is empty or too long.
    pub const INVALID_CLIENT_MSG_ID: &str = "invalid_client_msg_id";
    /// Too many frames on this socket, `hello`s from this address, or new conversations for
    /// this bot; retry after `retry_after_ms`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The client's address holds `[gateway] max_sockets_per_ip` sockets already (the HTTP
    /// upgrade is answered 429 with this code).
    pub const TOO_MANY_SOCKETS: &str = "too_many_sockets";
    /// A frame other than `hello`/`ping` came before a successful `hello`.
    pub const HELLO_REQUIRED: &str = "hello_required";
    /// A second `hello` on an open socket.
    pub const ALREADY_OPEN: &str = "already_open";
    /// No `hello` within `gateway.hello_timeout_ms`; the socket closes.
    pub const HELLO_TIMEOUT: &str = "hello_timeout";
    /// `conversation_id` without `resume_token`, or the reverse.
    pub const INVALID_HELLO: &str = "invalid_hello";
    /// A `push_token` that is empty or too long.
    pub const INVALID_PUSH_TOKEN: &str = "invalid_push_token";
    /// A `postback` that is blank or too long, or a message with both a postback and a form.
    pub const INVALID_POSTBACK: &str = "invalid_postback";
    /// A `form` that is malformed (ids, sizes, counts) or does not fit the bot's form of that
    /// id (unknown fields, a required one missing, an email that is not one). The engine's
    /// refusals carry the same code.
    pub const INVALID_FORM: &str = "invalid_form";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_ignore_extra_fields() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"message","client_msg_id":"a","text":"hi","x":1}"#)
                .expect("parse");
        assert_eq!(
            f,
            ClientFrame::Message {
                client_msg_id: "a".into(),
                text: "hi".into(),
                postback: None,
                form: None
            }
        );
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"hello","bot_id":"demo"}"#).expect("parse");
        assert!(matches!(f, ClientFrame::Hello { last_seq: None, .. }));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"message"}"#).is_err());
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let v =
            serde_json::to_value(ServerFrame::Token { stream_id: "s".into(), delta: " hi".into() })
                .expect("json");
        assert_eq!(v, serde_json::json!({"type": "token", "stream_id": "s", "delta": " hi"}));
        let v = serde_json::to_value(ServerFrame::Pong).expect("json");
        assert_eq!(v, serde_json::json!({"type": "pong"}));
        let v = serde_json::to_value(ServerFrame::Handoff {
            to: Sender::Human,
            agent: Some("Ann".into()),
        })
        .expect("json");
        assert_eq!(v, serde_json::json!({"type": "handoff", "to": "human", "agent": "Ann"}));
    }

    /// The widget's TypeScript types come from this schema; a stale committed copy fails here.
    /// `PARLA_WRITE_SCHEMA=1 cargo test -p parla-protocol --features schema protocol_schema`
    /// rewrites it.
    #[cfg(feature = "schema")]
    #[test]
    fn protocol_schema_is_committed() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../widget/src/protocol.schema.json");
        let fresh = serde_json::to_string_pretty(&json_schema()).expect("json") + "\n";
        if std::env::var_os("PARLA_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &fresh).expect("write the schema");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{path} is stale: run PARLA_WRITE_SCHEMA=1 cargo test -p parla-protocol --features schema protocol_schema, \
             then npm run gen-types --prefix widget"
        );
    }
}
