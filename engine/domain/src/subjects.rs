//! Data subjects: the person a conversation is with, as the identifiers it holds of them — a
//! phone number (an SMS or WhatsApp contact, a form field), an email address, a name given in a
//! form. The store indexes these keys when it writes what carries them (a channel contact's
//! conversation, a form's user data) and drops them with the conversation, so a workspace finds
//! every conversation of one person without reading every transcript.
//!
//! A key is `kind:value` with the value normalised: `email:mario.rossi@example.com` (lower
//! case), `phone:393331234567` (digits only, no `+` or `00`: an SMS contact `+39 333 1234567`
//! and a WhatsApp id `393331234567` are one person), `name:mario rossi` (lower case, single
//! spaces).

use std::collections::BTreeMap;

/// The keys naming the person in a form's fields: every value shaped like an email address or
/// a phone number, and the value of a field called like a name.
pub fn keys_of_fields(fields: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (name, value) in fields {
        let field = name.to_lowercase();
        let named = ["name", "nome", "full_name", "fullname", "first_name", "last_name"]
            .contains(&field.as_str());
        let key = email_key(value)
            .or_else(|| phone_key(value))
            .or_else(|| if named { name_key(value) } else { None });
        if let Some(key) = key
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    keys
}

/// The key of a channel contact (a phone number or a WhatsApp id); `None` if it is neither.
pub fn contact_key(contact: &str) -> Option<String> {
    phone_key(contact)
}

/// What a search for `query` looks up: the email, phone or name it reads as (a phone number
/// also as a name is never both: digits are a phone).
pub fn query_keys(query: &str) -> Vec<String> {
    if let Some(key) = email_key(query).or_else(|| phone_key(query)) {
        return vec![key];
    }
    name_key(query).into_iter().collect()
}

fn email_key(value: &str) -> Option<String> {
    let value = value.trim();
    let (local, domain) = value.split_once('@')?;
    let shaped = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && !domain.contains('@');
    shaped.then(|| format!("email:{}", value.to_lowercase()))
}

fn phone_key(value: &str) -> Option<String> {
    let value = value.trim();
    let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
    if value.is_empty() || !value.chars().all(allowed) {
        return None;
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    // An international "00" prefix is the "+".
    let digits = match digits.strip_prefix("00") {
        Some(rest) if value.trim_start().starts_with("00") => rest.to_owned(),
        _ => digits,
    };
    (7..=15).contains(&digits.len()).then(|| format!("phone:{digits}"))
}

fn name_key(value: &str) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let joined = words.join(" ").to_lowercase();
    (!joined.is_empty() && joined.chars().count() <= 200).then(|| format!("name:{joined}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_form_names_its_person_by_email_phone_and_name() {
        let keys = keys_of_fields(&fields(&[
            ("email", " Mario.Rossi@Example.com "),
            ("name", "Mario   Rossi"),
            ("phone", "+39 333 123-4567"),
            ("message", "I would like a table for two"),
            ("company", "Rossi & Figli"),
        ]));
        assert_eq!(
            keys,
            ["email:mario.rossi@example.com", "name:mario rossi", "phone:393331234567"]
        );
    }

    #[test]
    fn an_sms_contact_and_a_whatsapp_id_are_one_phone() {
        assert_eq!(contact_key("+393331234567"), contact_key("393331234567"));
        assert_eq!(contact_key("0039 333 1234567").as_deref(), Some("phone:393331234567"));
        assert_eq!(contact_key("not a phone"), None);
        assert_eq!(contact_key("12345"), None, "too short for a phone number");
    }

    #[test]
    fn a_query_reads_as_an_email_a_phone_or_a_name() {
        assert_eq!(query_keys("MARIO.ROSSI@example.com"), ["email:mario.rossi@example.com"]);
        assert_eq!(query_keys("+39 333 1234567"), ["phone:393331234567"]);
        assert_eq!(query_keys("  Mario  Rossi "), ["name:mario rossi"]);
        assert!(query_keys("   ").is_empty());
        assert_eq!(query_keys("a@b"), ["name:a@b"], "not an address: no dot in the domain");
    }
}
