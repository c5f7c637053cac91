//! The built-in responder: intent matching over training phrases, streamed word by word.
//!
//! Matching normalises text (lower case, accents folded, punctuation dropped) and scores the
//! visitor's text against every training phrase with the mean of two Dice coefficients: over
//! word sets (robust to word order) and over character trigrams (robust to typos and
//! inflections such as "orari"/"orario"). The best phrase's score is the intent's confidence.
//!
//! Below `min_confidence`, the best retrieved knowledge-base passage answers if it holds at
//! least `min_passage_coverage` of the question's words (or the embedding model finds it close
//! in meaning) — trimmed to its sentences that share
//! words with the question; else the bot's fallback message.

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{Reply, ReplyRequest, Responder, ResponderError};
use crate::model::Intent;

#[derive(Debug, Clone)]
pub struct BuiltinResponder {
    /// Pause between tokens, pacing the stream like an LLM's (zero in benchmarks).
    token_delay: Duration,
    min_confidence: f32,
    min_passage_coverage: f32,
    /// Fault injection for tests: this exact text makes the stream panic after one token.
    panic_on_text: String,
}

/// The longest answer taken from a passage, in characters.
const MAX_PASSAGE_ANSWER: usize = 500;

/// The sentences of `passage` that share words with `question`, in order, up to
/// `MAX_PASSAGE_ANSWER` (500) characters (the passage's start when none does).
pub fn trim_to_question(passage: &str, question: &str) -> String {
    let wanted = parla_domain::text::terms(question);
    let mut sentences = Vec::new();
    let mut start = 0;
    for (i, c) in passage.char_indices() {
        if matches!(c, '.' | '!' | '?' | ';') {
            let end = i + c.len_utf8();
            let next_is_space = passage[end..].chars().next().is_none_or(char::is_whitespace);
            if next_is_space {
                sentences.push(passage[start..end].trim());
                start = end;
            }
        }
    }
    sentences.push(passage[start..].trim());
    let mut answer = String::new();
    for sentence in sentences.into_iter().filter(|s| !s.is_empty()) {
        let terms = parla_domain::text::terms(sentence);
        if !terms.iter().any(|t| wanted.contains(t)) {
            continue;
        }
        if answer.chars().count() + sentence.chars().count() > MAX_PASSAGE_ANSWER
            && !answer.is_empty()
        {
            break;
        }
        if !answer.is_empty() {
            answer.push(' ');
        }
        answer.push_str(sentence);
    }
    if answer.is_empty() {
        answer = passage.chars().take(MAX_PASSAGE_ANSWER).collect();
    }
    answer
}

impl BuiltinResponder {
    pub fn new(
        token_delay: Duration,
        min_confidence: f32,
        min_passage_coverage: f32,
        panic_on_text: String,
    ) -> Self {
        Self { token_delay, min_confidence, min_passage_coverage, panic_on_text }
    }
}

/// The best intent for `text`, with its confidence. Analyses every example: to classify many
/// texts against the same intents, build an [`IntentIndex`] once.
pub fn classify<'a>(intents: &'a [Intent], text: &str) -> Option<(&'a Intent, f32)> {
    IntentIndex::new(intents).classify(text).map(|(i, score)| (&intents[i], score))
}

/// Intents' examples analysed once (per bot load, shared by its conversations) instead of on
/// every visitor message: the analysis was most of the classification's cost.
#[derive(Debug, Default)]
pub struct IntentIndex {
    /// Per intent, in the intents' order, its examples' features.
    examples: Vec<Vec<Features>>,
}

impl IntentIndex {
    pub fn new(intents: &[Intent]) -> Self {
        let examples = intents
            .iter()
            .map(|intent| intent.examples.iter().map(|e| Features::of(e)).collect())
            .collect();
        Self { examples }
    }

    /// The best intent for `text` as its position in the intents this was built from, with
    /// its confidence.
    pub fn classify(&self, text: &str) -> Option<(usize, f32)> {
        let query = Features::of(text);
        if query.words.is_empty() {
            return None;
        }
        self.examples
            .iter()
            .enumerate()
            .filter_map(|(i, examples)| {
                let best =
                    examples.iter().map(|example| query.similarity(example)).fold(0.0f32, f32::max);
                (best > 0.0).then_some((i, best))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Splits a reply into LLM-like tokens: each word with the whitespace before it.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            if in_word {
                tokens.push(std::mem::take(&mut current));
                in_word = false;
            }
        } else {
            in_word = true;
        }
        current.push(ch);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

#[derive(Debug)]
struct Features {
    words: HashSet<String>,
    trigrams: HashSet<[char; 3]>,
}

impl Features {
    fn of(text: &str) -> Self {
        let normalized: String = text
            .chars()
            .flat_map(char::to_lowercase)
            .map(fold_accent)
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        let words: HashSet<String> = normalized.split_whitespace().map(str::to_owned).collect();
        let mut trigrams = HashSet::new();
        for word in normalized.split_whitespace() {
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for w in padded.windows(3) {
                trigrams.insert([w[0], w[1], w[2]]);
            }
        }
        Self { words, trigrams }
    }

    fn similarity(&self, other: &Features) -> f32 {
        (dice(&self.words, &other.words) + dice(&self.trigrams, &other.trigrams)) / 2.0
    }
}

fn dice<T: Eq + std::hash::Hash>(a: &HashSet<T>, b: &HashSet<T>) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let common = a.intersection(b).count();
    (2 * common) as f32 / (a.len() + b.len()) as f32
}

fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ä' | 'ã' => 'a',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        'ñ' => 'n',
        other => other,
    }
}

#[async_trait]
impl Responder for BuiltinResponder {
    async fn reply(&self, request: ReplyRequest) -> Result<Reply, ResponderError> {
        let (text, intent, confidence, sources) = match request.matched_intent() {
            Some((intent, score)) if score >= self.min_confidence => {
                (intent.response.text.clone(), Some(intent.name.clone()), Some(score), Vec::new())
            }
            best => {
                let passage = request
                    .passages
                    .first()
                    .filter(|p| p.coverage >= self.min_passage_coverage || p.close_in_meaning);
                let (text, sources) = match passage {
                    Some(p) => (trim_to_question(&p.text, &request.text), vec![p.source()]),
                    None => (request.bot.config.fallback_message.clone(), Vec::new()),
                };
                (text, None, best.map(|(_, s)| s), sources)
            }
        };
        if !self.panic_on_text.is_empty() && request.text == self.panic_on_text {
            let tokens = futures_util::stream::iter([Ok("partial".to_owned())]).chain(
                futures_util::stream::once(async {
                    panic!("fault injection: responder.panic_on_text matched")
                }),
            );
            return Ok(Reply {
                intent: None,
                confidence: None,
                sources: Vec::new(),
                tokens: tokens.boxed(),
                usage: None,
            });
        }
        let delay = self.token_delay;
        let tokens = futures_util::stream::iter(tokenize(&text)).then(move |token| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(token)
        });
        Ok(Reply { intent, confidence, sources, tokens: tokens.boxed(), usage: None })
    }

    fn history_len(&self) -> usize {
        0 // Intent matching looks at the current message only.
    }

    fn min_confidence(&self) -> f32 {
        self.min_confidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BotId, IntentResponse};

    fn intent(name: &str, examples: &[&str]) -> Intent {
        Intent {
            id: name.into(),
            bot_id: BotId::from("b"),
            name: name.into(),
            description: None,
            examples: examples.iter().map(|s| (*s).to_owned()).collect(),
            response: IntentResponse {
                text: format!("answer {name}"),
                quick_replies: vec![],
                content: None,
            },
            actions: vec![],
        }
    }

    #[test]
    fn tokens_concatenate_to_the_text() {
        let text = "Hello there,  friend!\nHow are you?";
        let tokens = tokenize(text);
        assert_eq!(tokens.concat(), text);
        assert_eq!(tokens[0], "Hello");
        assert_eq!(tokens[1], " there,");
        assert!(tokenize("").is_empty());
    }

    #[test]
    fn picks_the_closest_intent_despite_case_accents_and_order() {
        let intents = vec![
            intent("hours", &["what are your opening hours", "quando siete aperti"]),
            intent("price", &["how much does it cost", "what is the price"]),
        ];
        let (best, score) = classify(&intents, "Opening HOURS, what are they?").expect("match");
        assert_eq!(best.name, "hours");
        assert!(score > 0.5, "{score}");
        let (best, _) = classify(&intents, "Quando siète aperti?").expect("match");
        assert_eq!(best.name, "hours");
        let (best, _) = classify(&intents, "the price please").expect("match");
        assert_eq!(best.name, "price");
    }

    #[test]
    fn unrelated_text_scores_low_and_empty_text_matches_nothing() {
        let intents = vec![intent("hours", &["what are your opening hours"])];
        let low = classify(&intents, "zebra xylophone").map_or(0.0, |(_, s)| s);
        assert!(low < 0.3, "{low}");
        assert!(classify(&intents, "   ?!  ").is_none());
    }
}
