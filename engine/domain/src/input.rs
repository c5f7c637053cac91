//! A visitor's input, checked in one place whichever way it came in (the widget socket, the REST
//! API, WhatsApp, SMS), against one text limit: `gateway.max_text_chars`, which the engine
//! carries (`Engine::max_text_chars`) for every transport. Every transport hands the engine a
//! [`VisitorInput`]; the conversation's actor takes it as `Inbound::VisitorMessage`.

use parla_protocol::rich::{self, FormSubmission};
use parla_protocol::widget::{MAX_CLIENT_MSG_ID_LEN, codes};
use serde::{Deserialize, Serialize};

/// What a visitor sends: text, a button's postback (the text is its label) or a submitted form
/// (the text is a summary). `client_msg_id` makes it idempotent: sent twice, stored once.
///
/// On the wire between nodes it is the body of `Inbound::VisitorMessage`; `postback` and `form`
/// are left out when absent, so a text message reads as it always has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorInput {
    pub client_msg_id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<FormSubmission>,
}

/// Why a visitor's input was refused: the widget protocol's error code, the field, and what is
/// wrong with it, naming the field (safe to show the sender).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{problem}")]
pub struct InputError {
    pub code: &'static str,
    pub field: &'static str,
    pub problem: String,
}

impl VisitorInput {
    /// Plain text.
    pub fn text(client_msg_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { client_msg_id: client_msg_id.into(), text: text.into(), postback: None, form: None }
    }

    /// Refuses input no conversation takes: a `client_msg_id` of 0 or more than 128 bytes,
    /// text blank or over `max_text_chars` characters, a postback and a form together, a
    /// postback or form out of shape. (A form is checked against the bot's own form by the
    /// actor, which knows the bot.)
    pub fn check(&self, max_text_chars: usize) -> Result<(), InputError> {
        let refuse = |code, field, problem: String| Err(InputError { code, field, problem });
        check_client_msg_id(&self.client_msg_id)?;
        checked_text(&self.text, max_text_chars)?;
        match (&self.postback, &self.form) {
            (Some(_), Some(_)) => {
                let problem = "a message carries a postback or a form, not both".into();
                refuse(codes::INVALID_POSTBACK, "postback", problem)
            }
            (Some(payload), None) => rich::check_payload("postback", payload)
                .or_else(|e| refuse(codes::INVALID_POSTBACK, "postback", e.to_string())),
            (None, Some(form)) => form
                .validate_shape()
                .or_else(|e| refuse(codes::INVALID_FORM, "form", e.to_string())),
            (None, None) => Ok(()),
        }
    }
}

/// The longest message or note an agent writes, in characters.
pub const MAX_AGENT_TEXT_CHARS: usize = 4000;

/// Refuses an agent's message or note (its `client_msg_id` too, for a message) out of shape:
/// the same rules as a visitor's, against [`MAX_AGENT_TEXT_CHARS`]. The agent socket and the
/// REST mirror both check here.
pub fn check_agent_text(client_msg_id: Option<&str>, text: &str) -> Result<(), InputError> {
    if let Some(id) = client_msg_id {
        check_client_msg_id(id)?;
    }
    checked_text(text, MAX_AGENT_TEXT_CHARS)
}

/// An idempotency key of 1 to 128 bytes.
fn check_client_msg_id(id: &str) -> Result<(), InputError> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_LEN {
        let problem = format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_LEN} bytes");
        return Err(InputError {
            code: codes::INVALID_CLIENT_MSG_ID,
            field: "client_msg_id",
            problem,
        });
    }
    Ok(())
}

/// Refuses text that is blank or longer than `max_chars` characters, saying why.
fn checked_text(text: &str, max_chars: usize) -> Result<(), InputError> {
    if text.trim().is_empty() || text.chars().count() > max_chars {
        let problem = format!("text must be 1 to {max_chars} characters");
        return Err(InputError { code: codes::INVALID_TEXT, field: "text", problem });
    }
    Ok(())
}

/// A visitor's text cut to `max_chars` characters: for channels, whose messages cannot be
/// refused back to the sender (an SMS, a WhatsApp message), so the stored text keeps the limit.
pub fn clip_text(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(input: &VisitorInput, max: usize) -> Option<&'static str> {
        input.check(max).err().map(|e| e.code)
    }

    #[test]
    fn text_is_one_to_max_characters_counted_as_characters() {
        assert_eq!(code(&VisitorInput::text("a", "ciao"), 4), None);
        assert_eq!(code(&VisitorInput::text("a", "città"), 5), None, "characters, not bytes");
        let long = VisitorInput::text("a", "ciao!").check(4).expect_err("too long");
        assert_eq!((long.code, long.field), ("invalid_text", "text"));
        assert_eq!(long.problem, "text must be 1 to 4 characters");
        assert_eq!(code(&VisitorInput::text("a", "  \n"), 4), Some("invalid_text"), "blank");
        assert_eq!(clip_text("città di mare", 5), "città");
        assert_eq!(clip_text("ok", 5), "ok");
    }

    #[test]
    fn agents_text_follows_the_same_rules_against_its_own_limit() {
        assert!(check_agent_text(Some("r1"), &"x".repeat(MAX_AGENT_TEXT_CHARS)).is_ok());
        let long = check_agent_text(None, &"x".repeat(MAX_AGENT_TEXT_CHARS + 1));
        assert_eq!(long.map_err(|e| e.field), Err("text"));
        let id = check_agent_text(Some(""), "hello");
        assert_eq!(id.map_err(|e| e.code), Err("invalid_client_msg_id"));
    }

    #[test]
    fn ids_postbacks_and_forms_are_checked_for_shape() {
        assert_eq!(code(&VisitorInput::text("", "hi"), 9), Some("invalid_client_msg_id"));
        assert_eq!(
            code(&VisitorInput::text("x".repeat(129), "hi"), 9),
            Some("invalid_client_msg_id")
        );
        assert_eq!(code(&VisitorInput::text("x".repeat(128), "hi"), 9), None);
        let form = FormSubmission { form_id: "f".into(), values: Default::default() };
        let postback =
            VisitorInput { postback: Some("yes".into()), ..VisitorInput::text("a", "Yes") };
        assert_eq!(code(&postback, 9), None);
        let blank = VisitorInput { postback: Some(" ".into()), ..postback.clone() };
        assert_eq!(code(&blank, 9), Some("invalid_postback"));
        let both = VisitorInput { form: Some(form.clone()), ..postback };
        assert_eq!(code(&both, 9), Some("invalid_postback"));
        let bad_form = FormSubmission { form_id: String::new(), ..form };
        let submitted = VisitorInput { form: Some(bad_form), ..VisitorInput::text("a", "sent") };
        assert_eq!(code(&submitted, 9), Some("invalid_form"));
    }

    #[test]
    fn a_text_message_reads_on_the_wire_as_before_postbacks_and_forms() {
        let wire = serde_json::to_value(VisitorInput::text("c1", "hi")).expect("json");
        assert_eq!(wire, serde_json::json!({"client_msg_id": "c1", "text": "hi"}));
        let back: VisitorInput = serde_json::from_value(wire).expect("decode");
        assert_eq!(back, VisitorInput::text("c1", "hi"));
    }
}
