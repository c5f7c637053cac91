//! Words as retrieval and intent matching see them: lower-cased, English and Italian stop words
//! dropped, lightly stemmed ("shipping" → "shipp", "spedizioni" → "spedizion"). The knowledge
//! base's BM25 and hashing embedder and the built-in responder's passage trimming share them, so
//! a passage found for its words is trimmed by the same words.

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "me", "my", "of", "on", "or", "our", "that", "the", "this", "to", "we",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "il", "lo",
    "la", "i", "gli", "le", "un", "uno", "una", "di", "da", "del", "della", "dei", "e", "ed",
    "che", "per", "con", "su", "come", "quando", "dove", "sono", "si", "non", "mi", "ci", "vi",
    "al", "alla", "nel", "nella", "ho", "ha", "avete", "siete", "qual", "quale",
];

/// Index terms of `text`: lower-cased words, stop words dropped, lightly stemmed.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// `word` without its commonest English or Italian inflection, when long enough to keep a stem.
pub fn stem(word: &str) -> String {
    let n = word.chars().count();
    for suffix in ["ing", "ed", "es", "s", "i", "e", "a", "o"] {
        if n > suffix.len() + 3
            && let Some(stripped) = word.strip_suffix(suffix)
        {
            return stripped.to_owned();
        }
    }
    word.to_owned()
}
