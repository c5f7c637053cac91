//! Just enough Engine.IO v4 / Socket.IO v5 to speak to the Socket.IO baseline over a plain
//! WebSocket (`/socket.io/?EIO=4&transport=websocket`, no long-polling first):
//!
//! - server `0{"sid",…,"pingInterval",…}` (Engine.IO open), client `40` (Socket.IO connect to
//!   `/`), server `40{"sid","pid"}` (connected; `pid` only with connection state recovery);
//! - events `42["name",payload]`; with recovery the server appends the packet's offset as a
//!   last string argument, and a client that reconnects sends `40{"pid","offset"}` to get
//!   every packet after that offset replayed (before the `40` reply);
//! - heartbeat: the server sends `2` (ping), the client answers `3` (pong).
//!
//! The chat events carry the widget protocol's frames: the event name is the frame's `type`,
//! the payload its other fields.

use serde_json::{Value, json};

/// Where a Socket.IO server takes WebSocket connections directly.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The client's answer to a server ping.
pub const PONG: &str = "3";

/// One decoded text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Engine.IO open (`0{…}`).
    Open,
    /// Engine.IO ping (`2`): answer [`PONG`].
    Ping,
    /// Engine.IO close (`1`) or Socket.IO disconnect (`41`).
    Close,
    /// Socket.IO connected (`40{"sid","pid"}`).
    Connected { sid: String, pid: Option<String> },
    /// Socket.IO connect refused (`44{"message"}`).
    ConnectError(String),
    /// An event; `offset` is the recovery offset the server appended, if any.
    Event { name: String, payload: Value, offset: Option<String> },
    /// Anything else (noop, acks, binary): ignored.
    Other,
    /// Not Engine.IO: counted as a malformed frame.
    Malformed,
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Packet {
    let mut chars = text.chars();
    match chars.next() {
        Some('0') => Packet::Open,
        Some('1') => Packet::Close,
        Some('2') => Packet::Ping,
        Some('6') | Some('3') => Packet::Other,
        Some('4') => decode_socket(chars.as_str()),
        _ => Packet::Malformed,
    }
}

/// A Socket.IO packet (the Engine.IO message's data). Only the default namespace is used, so a
/// namespace prefix (`/chat,`) never appears.
fn decode_socket(s: &str) -> Packet {
    let mut chars = s.chars();
    let kind = chars.next();
    // An event may carry an ack id (digits) before its array; ours never do, but skip it.
    let body = chars.as_str().trim_start_matches(|c: char| c.is_ascii_digit());
    match kind {
        Some('0') => {
            let Ok(v) = serde_json::from_str::<Value>(body) else { return Packet::Malformed };
            let Some(sid) = v["sid"].as_str() else { return Packet::Malformed };
            Packet::Connected { sid: sid.to_owned(), pid: v["pid"].as_str().map(str::to_owned) }
        }
        Some('1') => Packet::Close,
        Some('4') => {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            Packet::ConnectError(v["message"].as_str().unwrap_or(body).to_owned())
        }
        Some('2') => {
            let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body) else {
                return Packet::Malformed;
            };
            let offset = match args.last() {
                Some(Value::String(_)) if args.len() >= 3 => args.pop().and_then(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                }),
                _ => None,
            };
            let mut args = args.into_iter();
            let (Some(Value::String(name)), Some(payload)) = (args.next(), args.next()) else {
                return Packet::Malformed;
            };
            Packet::Event { name, payload, offset }
        }
        _ => Packet::Other,
    }
}

/// The connect request: plain, or asking to recover session `pid` after `offset`.
pub fn connect_frame(recover: Option<(&str, &str)>) -> String {
    match recover {
        Some((pid, offset)) => format!("40{}", json!({"pid": pid, "offset": offset})),
        None => "40".to_owned(),
    }
}

/// An event frame.
pub fn event_frame(name: &str, payload: &Value) -> String {
    format!("42{}", json!([name, payload]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_handshake_and_heartbeat() {
        assert_eq!(decode(r#"0{"sid":"x","pingInterval":25000}"#), Packet::Open);
        assert_eq!(decode("2"), Packet::Ping);
        assert_eq!(
            decode(r#"40{"sid":"s1","pid":"p1"}"#),
            Packet::Connected { sid: "s1".into(), pid: Some("p1".into()) }
        );
        assert_eq!(decode(r#"40{"sid":"s1"}"#), Packet::Connected { sid: "s1".into(), pid: None });
        assert_eq!(decode(r#"44{"message":"nope"}"#), Packet::ConnectError("nope".into()));
        assert_eq!(decode("41"), Packet::Close);
        assert_eq!(decode("1"), Packet::Close);
        assert_eq!(decode("hello"), Packet::Malformed);
    }

    #[test]
    fn decodes_events_with_and_without_an_offset() {
        assert_eq!(
            decode(r#"42["token",{"delta":" a"}]"#),
            Packet::Event { name: "token".into(), payload: json!({"delta": " a"}), offset: None }
        );
        assert_eq!(
            decode(r#"42["token",{"delta":" a"},"off-1"]"#),
            Packet::Event {
                name: "token".into(),
                payload: json!({"delta": " a"}),
                offset: Some("off-1".into())
            }
        );
        assert_eq!(decode(r#"42["token"]"#), Packet::Malformed);
        assert_eq!(decode("42{}"), Packet::Malformed);
    }

    #[test]
    fn encodes_what_the_server_expects() {
        assert_eq!(connect_frame(None), "40");
        let recover = connect_frame(Some(("p", "o")));
        let body: Value = serde_json::from_str(recover.strip_prefix("40").unwrap()).unwrap();
        assert_eq!(body, json!({"pid": "p", "offset": "o"}));
        assert_eq!(
            event_frame("message", &json!({"text": "hi"})),
            r#"42["message",{"text":"hi"}]"#
        );
    }
}
