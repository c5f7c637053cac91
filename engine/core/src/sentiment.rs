//! Offline sentiment of a visitor's message, in [-1, 1], for English and Italian: a lexicon of
//! polar words with weights, negation ("not good", "non va bene") flipping the next two
//! words, intensifiers ("very", "molto") strengthening the next one, and exclamation marks
//! adding emphasis. Deterministic and fast (no model); a lexicon misses sarcasm and domain
//! words, which is the price of working with no network.

/// (word, weight): positive > 0, negative < 0. Lower-case, accents kept.
const LEXICON: &[(&str, f32)] = &[
    // English, positive
    ("good", 0.6),
    ("great", 0.8),
    ("excellent", 0.9),
    ("amazing", 0.9),
    ("awesome", 0.9),
    ("love", 0.8),
    ("like", 0.4),
    ("thanks", 0.5),
    ("thank", 0.5),
    ("helpful", 0.7),
    ("perfect", 0.9),
    ("happy", 0.7),
    ("nice", 0.5),
    ("fantastic", 0.9),
    ("wonderful", 0.9),
    ("fast", 0.3),
    ("easy", 0.4),
    ("works", 0.3),
    ("solved", 0.6),
    ("glad", 0.6),
    // English, negative
    ("bad", -0.6),
    ("terrible", -0.9),
    ("awful", -0.9),
    ("horrible", -0.9),
    ("hate", -0.9),
    ("worst", -1.0),
    ("useless", -0.8),
    ("broken", -0.6),
    ("angry", -0.8),
    ("annoyed", -0.6),
    ("disappointed", -0.7),
    ("slow", -0.4),
    ("problem", -0.4),
    ("issue", -0.3),
    ("wrong", -0.5),
    ("never", -0.3),
    ("refund", -0.2),
    ("late", -0.4),
    ("missing", -0.4),
    ("damaged", -0.6),
    ("scam", -1.0),
    ("ridiculous", -0.8),
    ("frustrated", -0.7),
    ("unacceptable", -0.9),
    // Italian, positive
    ("buono", 0.6),
    ("buona", 0.6),
    ("ottimo", 0.9),
    ("ottima", 0.9),
    ("grazie", 0.5),
    ("perfetto", 0.9),
    ("perfetta", 0.9),
    ("bene", 0.5),
    ("bello", 0.6),
    ("bella", 0.6),
    ("fantastico", 0.9),
    ("gentile", 0.6),
    ("utile", 0.6),
    ("felice", 0.7),
    ("contento", 0.7),
    ("contenta", 0.7),
    ("veloce", 0.3),
    ("facile", 0.4),
    ("funziona", 0.3),
    ("risolto", 0.6),
    ("eccellente", 0.9),
    ("adoro", 0.8),
    // Italian, negative
    ("male", -0.5),
    ("pessimo", -0.9),
    ("pessima", -0.9),
    ("terribile", -0.9),
    ("orribile", -0.9),
    ("odio", -0.9),
    ("inutile", -0.8),
    ("rotto", -0.6),
    ("rotta", -0.6),
    ("arrabbiato", -0.8),
    ("arrabbiata", -0.8),
    ("deluso", -0.7),
    ("delusa", -0.7),
    ("lento", -0.4),
    ("lenta", -0.4),
    ("problema", -0.4),
    ("sbagliato", -0.5),
    ("ritardo", -0.4),
    ("danneggiato", -0.6),
    ("truffa", -1.0),
    ("vergogna", -0.9),
    ("inaccettabile", -0.9),
    ("schifo", -0.9),
    ("mai", -0.3),
    ("rimborso", -0.2),
];

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "don't", "doesn't", "isn't", "wasn't", "didn't", "cannot", "can't",
    "non", "né", "nessun", "nessuna", "niente",
];
const INTENSIFIERS: &[&str] =
    &["very", "really", "so", "extremely", "too", "molto", "davvero", "troppo", "proprio", "tanto"];

/// The sentiment of `text`: `None` when no polar word occurs, else a score in [-1, 1].
pub fn score(text: &str) -> Option<f32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    let (mut total, mut hits) = (0.0f32, 0u32);
    let (mut negate_for, mut boost) = (0u8, 1.0f32);
    for word in words {
        if NEGATIONS.contains(&word) {
            negate_for = 2;
            continue;
        }
        if INTENSIFIERS.contains(&word) {
            boost = 1.5;
            continue;
        }
        if let Some((_, weight)) = LEXICON.iter().find(|(w, _)| *w == word) {
            let mut value = weight * boost;
            if negate_for > 0 {
                value = -value * 0.8; // "not good" is less bad than "bad".
            }
            total += value;
            hits += 1;
        }
        negate_for = negate_for.saturating_sub(1);
        boost = 1.0;
    }
    if hits == 0 {
        return None;
    }
    let emphasis = 1.0 + 0.1 * text.matches('!').count().min(3) as f32;
    // Squash the sum into [-1, 1]: more polar words move it further, never past the bounds.
    let raw = total * emphasis;
    Some((raw / (raw.abs() + 1.0) * 1.5).clamp(-1.0, 1.0))
}

/// Whether `text` asks for a person (an agent, an operator) rather than the bot.
pub fn asks_for_a_person(text: &str) -> bool {
    let lower = text.to_lowercase();
    const PHRASES: &[&str] = &[
        "human",
        "real person",
        "an agent",
        "a person",
        "operator",
        "talk to someone",
        "speak to someone",
        "customer service",
        "representative",
        "operatore",
        "una persona",
        "persona vera",
        "parlare con qualcuno",
        "assistenza umana",
        "un umano",
        "un operatore",
    ];
    PHRASES.iter().any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polarity_negation_and_intensity_in_english_and_italian() {
        let s = |t: &str| score(t).expect(t);
        assert!(s("This is great, thank you!") > 0.5);
        assert!(s("terrible service, I hate it") < -0.5);
        assert!(s("not good") < 0.0, "negation flips");
        assert!(s("very bad") < s("bad"), "intensifier strengthens");
        assert!(s("Grazie, servizio ottimo") > 0.5);
        assert!(s("pessimo, sono molto arrabbiato") < -0.5);
        assert!(s("non funziona") < 0.0);
        assert_eq!(score("what time do you open"), None, "no polar word");
        for t in ["worst worst worst scam scam!!!", "perfect perfect amazing love!!!"] {
            assert!((-1.0..=1.0).contains(&s(t)), "bounded");
        }
    }

    #[test]
    fn requests_for_a_person_are_recognised() {
        assert!(asks_for_a_person("Can I talk to a human please?"));
        assert!(asks_for_a_person("voglio parlare con un operatore"));
        assert!(!asks_for_a_person("what are your opening hours"));
    }
}
