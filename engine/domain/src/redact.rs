//! Personal data masked out of text: email addresses, phone numbers, payment card numbers
//! (only those that pass the Luhn check) and IBANs (only those whose ISO 13616 check digits
//! hold). A near miss — a 16-digit number that fails Luhn, an IBAN-shaped string whose check
//! digits are wrong — is left as written: an order number is not a card.
//!
//! A workspace turns it on for stored transcripts (the clear text is never stored) and/or for
//! what is sent to an LLM provider only (`PrivacySettings`).

use std::borrow::Cow;

/// `text` with every email, phone number, card number and IBAN replaced by `[email]`,
/// `[phone]`, `[card]`, `[iban]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let masked = mask_ibans(text);
    let masked = mask_digit_runs(&masked);
    let masked = mask_emails(&masked);
    if masked == text { Cow::Borrowed(text) } else { Cow::Owned(masked) }
}

/// IBANs: two letters, two check digits, 11 to 30 letters and digits, spaces allowed every four.
fn mask_ibans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_uppercase()
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric())
            && chars.get(i + 1).is_some_and(char::is_ascii_uppercase)
            && chars.get(i + 2).is_some_and(char::is_ascii_digit)
            && chars.get(i + 3).is_some_and(char::is_ascii_digit);
        if starts {
            // Capital letters and digits, single spaces between groups; the longest prefix
            // ending at a group's end that is a valid IBAN.
            let upper = |c: &char| c.is_ascii_digit() || c.is_ascii_uppercase();
            let (mut j, mut compact, mut ends) = (i, String::new(), Vec::new());
            while j < chars.len() && compact.len() < 34 {
                let c = chars[j];
                if upper(&c) {
                    compact.push(c);
                    if !chars.get(j + 1).is_some_and(upper) {
                        ends.push((j + 1, compact.len()));
                    }
                } else if !(c == ' ' && chars.get(j + 1).is_some_and(upper)) {
                    break;
                }
                j += 1;
            }
            let found = ends.iter().rev().find(|(end, len)| {
                (15..=34).contains(len)
                    && chars.get(*end).is_none_or(|c| !c.is_ascii_alphanumeric())
                    && iban_valid(&compact[..*len])
            });
            if let Some((end, _)) = found {
                out.push_str("[iban]");
                i = *end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ISO 13616: the first four characters moved to the end, letters as 10..35, mod 97 is 1.
fn iban_valid(iban: &str) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        for digit in value.to_string().chars() {
            rem = (rem * 10 + (digit as u32 - '0' as u32)) % 97;
        }
    }
    rem == 1
}

/// Runs of digits with single spaces, dashes, dots or parentheses between them (and an
/// optional leading `+`): a card number if it has 13 to 19 digits and passes Luhn, else a
/// phone number if it has 8 to 15 digits, else left alone.
fn mask_digit_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let plus = chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        let starts = (chars[i].is_ascii_digit() || plus || chars[i] == '(')
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '['));
        if starts {
            let (mut j, mut end, mut digits) = (i + usize::from(plus), i, String::new());
            while j < chars.len() {
                let c = chars[j];
                if c.is_ascii_digit() {
                    digits.push(c);
                    end = j + 1;
                } else if !(" -.()".contains(c) && continues(&chars, j + 1)) {
                    break;
                }
                j += 1;
            }
            let after_ok = chars.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
            if after_ok && !digits.is_empty() {
                let mask = if (13..=19).contains(&digits.len()) && luhn(&digits) {
                    Some("[card]")
                } else if (8..=15).contains(&digits.len())
                    && (plus || digits.len() >= 9 || has_separators(&chars[i..end]))
                {
                    Some("[phone]")
                } else {
                    None
                };
                if let Some(mask) = mask {
                    out.push_str(mask);
                    i = end;
                    continue;
                }
                // Not personal: copied as written.
                out.extend(&chars[i..end.max(i + 1)]);
                i = end.max(i + 1);
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Whether a run of digits goes on at `at`: a digit or `(` there, or one more separator and
/// then one (`) 1234`, `- 55`).
fn continues(chars: &[char], at: usize) -> bool {
    let digitish = |c: &char| c.is_ascii_digit() || *c == '(';
    match chars.get(at) {
        Some(c) if digitish(c) => true,
        Some(c) if " -.)".contains(*c) => chars.get(at + 1).is_some_and(digitish),
        _ => false,
    }
}

fn has_separators(run: &[char]) -> bool {
    run.iter().any(|c| !c.is_ascii_digit())
}

/// The Luhn check.
fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c as u32 - '0' as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Email addresses: `local@domain.tld`, the local part of letters, digits and `._%+-`.
fn mask_emails(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > copied && local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && domain(chars[end]) {
                end += 1;
            }
            // A trailing dot ends the sentence, not the domain.
            while end > i + 1 && chars[end - 1] == '.' {
                end -= 1;
            }
            let host: String = chars[i + 1..end].iter().collect();
            let shaped = start < i
                && host.contains('.')
                && !host.starts_with('.')
                && host.rsplit('.').next().is_some_and(|tld| tld.len() >= 2);
            if shaped {
                out.extend(&chars[copied..start]);
                out.push_str("[email]");
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&chars[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_masked() {
        assert_eq!(redact("write to Mario.Rossi+x@example.co.uk."), "write to [email].");
        assert_eq!(redact("call me on +39 333 123 4567 tomorrow"), "call me on [phone] tomorrow");
        assert_eq!(redact("or (06) 1234-5678"), "or [phone]");
        assert_eq!(redact("card 4111 1111 1111 1111, exp 12/29"), "card [card], exp 12/29");
        assert_eq!(redact("card 5500-0000-0000-0004"), "card [card]");
        assert_eq!(redact("IBAN IT60 X054 2811 1010 0000 0123 456 please"), "IBAN [iban] please");
        assert_eq!(redact("iban: GB82WEST12345698765432"), "iban: [iban]");
    }

    #[test]
    fn near_misses_are_left_as_written() {
        for text in [
            "order 4111 1111 1111 1112 is late",      // 16 digits, Luhn fails
            "IBAN IT61 X054 2811 1010 0000 0123 456", // check digits wrong
            "we open at 9 and close at 18",
            "room 1204, year 2026, 3 nights",
            "version 1.2.3",
            "a@b is not an address, nor is @home",
            "code 12345",
        ] {
            assert_eq!(redact(text), text, "{text}");
        }
    }

    #[test]
    fn any_text_is_handled_without_a_panic() {
        for text in [
            "",
            "@",
            "+",
            "(",
            "ü@ä.de",
            "📞 +39 333 1234567 📞",
            "IT",
            "IT60",
            "a@b.c@d.ef",
            "((((((((((1",
            "4111 1111 1111 1111 1111 1111",
            "x@y.zz.",
            "+ + 12 34 56 78 90",
        ] {
            let _ = redact(text);
        }
        assert_eq!(redact("📞 +39 333 1234567 📞"), "📞 [phone] 📞");
        assert_eq!(redact("ü@ä.de"), "[email]");
    }

    #[test]
    fn text_without_personal_data_is_not_copied() {
        assert!(matches!(redact("hello, when are you open?"), Cow::Borrowed(_)));
    }
}
