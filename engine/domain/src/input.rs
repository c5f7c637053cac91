//! A visitor's text, checked in one place whichever way it came in (the widget socket, the REST
//! API, WhatsApp, SMS), against one limit: `gateway.max_text_chars`, which the engine carries
//! (`Engine::max_text_chars`) for every transport.

/// Refuses a visitor's text that is blank or longer than `max_chars` characters, saying why.
pub fn check_text(text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() || text.chars().count() > max_chars {
        return Err(format!("text must be 1 to {max_chars} characters"));
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

    #[test]
    fn text_is_one_to_max_characters_counted_as_characters() {
        assert!(check_text("ciao", 4).is_ok());
        assert!(check_text("città", 5).is_ok(), "characters, not bytes");
        assert_eq!(check_text("ciao!", 4), Err("text must be 1 to 4 characters".into()));
        assert!(check_text("  \n", 4).is_err(), "blank");
        assert_eq!(clip_text("città di mare", 5), "città");
        assert_eq!(clip_text("ok", 5), "ok");
    }
}
