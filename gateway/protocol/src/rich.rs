//! Rich messages: what a non-text message carries (image, file, card, carousel, form), what a
//! visitor sends back (a postback, a submitted form), and the limits both are checked against.
//!
//! One set of types for the whole path: an intent's response holds a [`RichContent`], the
//! stored message (the engine's `model::Message`) keeps it in its JSON, and the widget protocol
//! ([`crate::widget`]) puts the same value in its `message` frames, so the widget's TypeScript
//! types (generated from that protocol's JSON Schema) describe exactly what is stored.
//!
//! Every check returns a [`ContentError`] naming the offending field; none panics. The limits
//! per part bound what one field can hold, and [`MAX_CONTENT_BYTES`] the whole (each reply
//! stores and sends a copy); a conversation's user data stays small.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::MessageType;

/// Longest URL accepted (image, file, button, card image): what browsers reliably handle.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest title, label or file name, in characters: one line in a 360 px wide widget.
pub const MAX_LABEL_CHARS: usize = 200;
/// Longest subtitle or alt text, in characters.
pub const MAX_DETAIL_CHARS: usize = 1000;
/// Buttons per card: more do not fit a card's width.
pub const MAX_BUTTONS: usize = 5;
/// Cards per carousel.
pub const MAX_CARDS: usize = 10;
/// Fields per form, and values per submission.
pub const MAX_FORM_FIELDS: usize = 20;
/// Longest field name (the user-data key) and form id, in bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest postback payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1000;
/// Longest submitted field value, in characters.
pub const MAX_VALUE_CHARS: usize = 1000;
/// Largest content as JSON: each reply stores, publishes and sends a copy, and the widget
/// keeps recent messages in the host page's storage (well under the gateway's 32 KiB frame).
pub const MAX_CONTENT_BYTES: usize = 16 * 1024;

/// The body of a rich message, by type. Every URL is absolute `http://` or `https://`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RichContent {
    Image {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alt: Option<String>,
    },
    File {
        url: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
    },
    Card(Card),
    Carousel {
        cards: Vec<Card>,
    },
    Form {
        form_id: String,
        fields: Vec<FormField>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submit_label: Option<String>,
    },
}

/// A card: an optional image, a title, a subtitle and buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Card {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub buttons: Vec<CardButton>,
}

/// A button: opens `url` when it has one, else sends `payload` as a postback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CardButton {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FormField {
    /// The key the value is collected under (the conversation's user data).
    pub name: String,
    pub label: String,
    pub input: FormInput,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FormInput {
    Text,
    Email,
    Phone,
    Number,
    Textarea,
}

/// A submitted form: its id and the values by field name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FormSubmission {
    pub form_id: String,
    pub values: BTreeMap<String, String>,
}

/// Why a rich content, postback or form submission was refused: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentError {
    /// Where, e.g. `content.cards[2].buttons[0].url`.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for ContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ContentError {}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ContentError {
    ContentError { field: field.into(), problem: problem.into() }
}

fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ContentError> {
    if value.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(err(field, format!("at most {max_chars} characters")));
    }
    Ok(())
}

fn check_optional(field: &str, value: Option<&str>, max_chars: usize) -> Result<(), ContentError> {
    value.map_or(Ok(()), |v| check_text(field, v, max_chars))
}

/// An absolute `http://` or `https://` URL with a host (no `javascript:`, `data:`, relative…).
pub fn check_url(field: &str, url: &str) -> Result<(), ContentError> {
    if url.len() > MAX_URL_BYTES {
        return Err(err(field, format!("at most {MAX_URL_BYTES} bytes")));
    }
    let parsed = url::Url::parse(url).map_err(|_| err(field, "not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(err(field, "only http:// and https:// URLs"));
    }
    Ok(())
}

/// A user-data key or form id: 1 to 64 of ASCII letters, digits, `_`, `-`, `.`.
fn check_key(field: &str, key: &str) -> Result<(), ContentError> {
    let ok = (1..=MAX_KEY_BYTES).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok { Ok(()) } else { Err(err(field, format!("1 to {MAX_KEY_BYTES} of A-Z a-z 0-9 _ - ."))) }
}

/// A postback payload: 1 to [`MAX_PAYLOAD_BYTES`] bytes, not blank.
pub fn check_payload(field: &str, payload: &str) -> Result<(), ContentError> {
    if payload.trim().is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
        return Err(err(field, format!("1 to {MAX_PAYLOAD_BYTES} bytes, not blank")));
    }
    Ok(())
}

impl Card {
    fn validate(&self, at: &str) -> Result<(), ContentError> {
        check_text(&format!("{at}.title"), &self.title, MAX_LABEL_CHARS)?;
        check_optional(&format!("{at}.subtitle"), self.subtitle.as_deref(), MAX_DETAIL_CHARS)?;
        if let Some(url) = &self.image_url {
            check_url(&format!("{at}.image_url"), url)?;
        }
        if self.buttons.len() > MAX_BUTTONS {
            return Err(err(format!("{at}.buttons"), format!("at most {MAX_BUTTONS}")));
        }
        for (i, b) in self.buttons.iter().enumerate() {
            let at = format!("{at}.buttons[{i}]");
            check_text(&format!("{at}.label"), &b.label, MAX_LABEL_CHARS)?;
            match (&b.url, &b.payload) {
                (Some(url), None) => check_url(&format!("{at}.url"), url)?,
                (None, Some(payload)) => check_payload(&format!("{at}.payload"), payload)?,
                _ => return Err(err(at, "exactly one of url and payload")),
            }
        }
        Ok(())
    }
}

impl RichContent {
    /// The message type this content makes.
    pub fn kind(&self) -> MessageType {
        match self {
            Self::Image { .. } => MessageType::Image,
            Self::File { .. } => MessageType::File,
            Self::Card(_) => MessageType::Card,
            Self::Carousel { .. } => MessageType::Carousel,
            Self::Form { .. } => MessageType::Form,
        }
    }

    /// Whether one of its buttons sends `payload` as a postback.
    pub fn offers_payload(&self, payload: &str) -> bool {
        let cards: &[Card] = match self {
            Self::Card(card) => std::slice::from_ref(card),
            Self::Carousel { cards } => cards,
            _ => &[],
        };
        cards.iter().flat_map(|c| &c.buttons).any(|b| {
            b.url.is_none() && b.payload.as_deref().unwrap_or(&b.label).trim() == payload.trim()
        })
    }

    /// Checks sizes, counts and URLs; `at` prefixes the field names in the error.
    pub fn validate(&self, at: &str) -> Result<(), ContentError> {
        self.validate_parts(at)?;
        // Every reply stores (and sends, and the widget keeps) a copy: the whole stays small.
        let size = serde_json::to_vec(self).map_or(usize::MAX, |json| json.len());
        if size > MAX_CONTENT_BYTES {
            let problem = format!("at most {MAX_CONTENT_BYTES} bytes of JSON (got {size})");
            return Err(err(at.to_owned(), problem));
        }
        Ok(())
    }

    fn validate_parts(&self, at: &str) -> Result<(), ContentError> {
        match self {
            Self::Image { url, alt } => {
                check_url(&format!("{at}.url"), url)?;
                check_optional(&format!("{at}.alt"), alt.as_deref(), MAX_DETAIL_CHARS)
            }
            Self::File { url, name, .. } => {
                check_url(&format!("{at}.url"), url)?;
                check_text(&format!("{at}.name"), name, MAX_LABEL_CHARS)
            }
            Self::Card(card) => card.validate(at),
            Self::Carousel { cards } => {
                if cards.is_empty() || cards.len() > MAX_CARDS {
                    return Err(err(format!("{at}.cards"), format!("1 to {MAX_CARDS} cards")));
                }
                cards
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, c)| c.validate(&format!("{at}.cards[{i}]")))
            }
            Self::Form { form_id, fields, submit_label } => {
                check_key(&format!("{at}.form_id"), form_id)?;
                check_optional(&format!("{at}.submit_label"), submit_label.as_deref(), 50)?;
                if fields.is_empty() || fields.len() > MAX_FORM_FIELDS {
                    let problem = format!("1 to {MAX_FORM_FIELDS} fields");
                    return Err(err(format!("{at}.fields"), problem));
                }
                for (i, f) in fields.iter().enumerate() {
                    let at = format!("{at}.fields[{i}]");
                    check_key(&format!("{at}.name"), &f.name)?;
                    check_text(&format!("{at}.label"), &f.label, MAX_LABEL_CHARS)?;
                    if fields[..i].iter().any(|g| g.name == f.name) {
                        return Err(err(format!("{at}.name"), "names must be unique in a form"));
                    }
                }
                Ok(())
            }
        }
    }

    /// The form's id and fields, if this is a form.
    pub fn form(&self) -> Option<(&str, &[FormField])> {
        match self {
            Self::Form { form_id, fields, .. } => Some((form_id, fields)),
            _ => None,
        }
    }
}

impl FormSubmission {
    /// Checks the submission on its own: the id, the number of values, each key and value.
    pub fn validate_shape(&self) -> Result<(), ContentError> {
        check_key("form.form_id", &self.form_id)?;
        if self.values.len() > MAX_FORM_FIELDS {
            return Err(err("form.values", format!("at most {MAX_FORM_FIELDS} values")));
        }
        for (key, value) in &self.values {
            check_key("form.values", key)?;
            if value.chars().count() > MAX_VALUE_CHARS {
                let problem = format!("{key}: at most {MAX_VALUE_CHARS} characters");
                return Err(err("form.values", problem));
            }
        }
        Ok(())
    }

    /// Checks the submission against the form it answers: only its fields, every required one
    /// filled, emails and numbers that look like them.
    pub fn validate_against(&self, fields: &[FormField]) -> Result<(), ContentError> {
        self.validate_shape()?;
        if let Some(unknown) = self.values.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
            return Err(err("form.values", format!("{unknown}: not a field of this form")));
        }
        for field in fields {
            let value = self.values.get(&field.name).map(|v| v.trim()).unwrap_or_default();
            if value.is_empty() {
                if field.required {
                    return Err(err("form.values", format!("{}: required", field.name)));
                }
                continue;
            }
            let fits = match field.input {
                FormInput::Email => {
                    value.split_once('@').is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
                }
                FormInput::Number => value.replace(',', ".").parse::<f64>().is_ok(),
                FormInput::Phone => value.chars().filter(char::is_ascii_digit).count() >= 5,
                FormInput::Text | FormInput::Textarea => true,
            };
            if !fits {
                let problem = format!("{}: not a valid {:?}", field.name, field.input);
                return Err(err("form.values", problem.to_lowercase()));
            }
        }
        Ok(())
    }

    /// The values worth keeping: the non-blank ones, trimmed.
    pub fn filled(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.trim().to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(buttons: Vec<CardButton>) -> Card {
        Card { title: "Plan".into(), subtitle: None, image_url: None, buttons }
    }

    fn button(payload: Option<&str>, url: Option<&str>) -> CardButton {
        CardButton {
            label: "Go".into(),
            payload: payload.map(Into::into),
            url: url.map(Into::into),
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_https() {
        for ok in ["https://example.com/a.png", "http://cdn.example.com/x?y=1"] {
            assert!(check_url("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "data:image/png;base64,AA",
            "/relative.png",
            "ftp://x/y",
            "https://",
            "",
        ] {
            assert!(check_url("u", bad).is_err(), "{bad}");
        }
        assert!(check_url("u", &format!("https://e.com/{}", "a".repeat(MAX_URL_BYTES))).is_err());
    }

    #[test]
    fn carousels_buttons_and_forms_are_bounded() {
        let ok = RichContent::Carousel { cards: vec![card(vec![button(Some("BUY"), None)])] };
        assert!(ok.validate("content").is_ok());
        assert_eq!(ok.kind(), MessageType::Carousel);
        let empty = RichContent::Carousel { cards: vec![] };
        assert_eq!(empty.validate("content").map_err(|e| e.field), Err("content.cards".into()));
        let many = RichContent::Carousel { cards: vec![card(vec![]); MAX_CARDS + 1] };
        assert!(many.validate("content").is_err());
        let both = RichContent::Card(card(vec![button(Some("X"), Some("https://e.com"))]));
        let e = both.validate("content").expect_err("both");
        assert_eq!(e.field, "content.buttons[0]");
        let script = RichContent::Card(card(vec![button(None, Some("javascript:x"))]));
        assert_eq!(script.validate("c").expect_err("js").field, "c.buttons[0].url");
        let dup = RichContent::Form {
            form_id: "lead".into(),
            fields: vec![
                field("email", FormInput::Email, true),
                field("email", FormInput::Text, false),
            ],
            submit_label: None,
        };
        assert!(dup.validate("content").is_err());
    }

    fn field(name: &str, input: FormInput, required: bool) -> FormField {
        FormField { name: name.into(), label: name.into(), input, required }
    }

    #[test]
    fn submissions_are_checked_against_their_form() {
        let fields =
            [field("email", FormInput::Email, true), field("age", FormInput::Number, false)];
        let submit = |pairs: &[(&str, &str)]| FormSubmission {
            form_id: "lead".into(),
            values: pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        };
        assert!(
            submit(&[("email", "ada@example.com"), ("age", "36")])
                .validate_against(&fields)
                .is_ok()
        );
        assert!(submit(&[("email", "ada@example.com")]).validate_against(&fields).is_ok());
        assert!(submit(&[("age", "36")]).validate_against(&fields).is_err(), "required");
        assert!(submit(&[("email", "nope")]).validate_against(&fields).is_err(), "email");
        assert!(submit(&[("email", "a@b.it"), ("age", "old")]).validate_against(&fields).is_err());
        assert!(submit(&[("email", "a@b.it"), ("admin", "1")]).validate_against(&fields).is_err());
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        assert!(submit(&[("email", long.as_str())]).validate_shape().is_err());
        assert!(submit(&[("bad key", "1")]).validate_shape().is_err());
        assert_eq!(submit(&[("email", " a@b.it "), ("age", " ")]).filled().len(), 1);
    }
}
