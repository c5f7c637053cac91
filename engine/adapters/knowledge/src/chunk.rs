//! Sections into retrieval-sized chunks: paragraphs packed up to `max_chars`, a paragraph that
//! is too long split at sentence (then word) boundaries, and consecutive chunks of a section
//! overlapping by about `overlap_chars` so an answer spanning a boundary is found whole.

use super::extract::Section;

/// A chunk before it is stored: its heading and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub title: String,
    pub text: String,
}

pub fn chunk(
    sections: &[Section],
    fallback_title: &str,
    max_chars: usize,
    overlap_chars: usize,
) -> Vec<Piece> {
    let max_chars = max_chars.max(100);
    let overlap_chars = overlap_chars.min(max_chars / 2);
    let mut out = Vec::new();
    for section in sections {
        let title = section
            .title
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| fallback_title.to_owned());
        let mut current = String::new();
        // Units leave room for the overlap carried into the next chunk.
        let units =
            section.paragraphs.iter().flat_map(|p| split_long(p, max_chars - overlap_chars));
        for unit in units {
            let unit_len = unit.chars().count();
            if !current.is_empty() && current.chars().count() + 1 + unit_len > max_chars {
                let tail = tail_words(&current, overlap_chars);
                out.push(Piece { title: title.clone(), text: std::mem::take(&mut current) });
                if tail.chars().count() + 1 + unit_len <= max_chars {
                    current = tail;
                }
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&unit);
        }
        if !current.trim().is_empty() {
            out.push(Piece { title: title.clone(), text: current });
        }
    }
    out
}

/// `text` in pieces of at most `max` characters, cut after sentences where possible.
fn split_long(text: &str, max: usize) -> Vec<String> {
    if text.chars().count() <= max {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let len = current.chars().count();
        let sentence_end = current.ends_with(['.', '!', '?']);
        if len + 1 + word.chars().count() > max || (sentence_end && len > max * 3 / 4) {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        // A single "word" longer than `max` (a URL, a hash) is cut hard.
        let mut word = word;
        while word.chars().count() > max {
            let cut = word.char_indices().nth(max).map_or(word.len(), |(i, _)| i);
            out.push(word[..cut].to_owned());
            word = &word[cut..];
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The last whole words of `text` adding up to at most `max` characters.
fn tail_words(text: &str, max: usize) -> String {
    let mut words = Vec::new();
    let mut len = 0;
    for word in text.split_whitespace().rev() {
        let n = word.chars().count() + usize::from(!words.is_empty());
        if len + n > max {
            break;
        }
        len += n;
        words.push(word);
    }
    words.reverse();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(title: &str, paragraphs: &[&str]) -> Section {
        Section {
            title: Some(title.into()),
            paragraphs: paragraphs.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn short_sections_are_one_chunk_each_with_their_heading() {
        let pieces =
            chunk(&[section("A", &["one.", "two."]), section("B", &["three."])], "Doc", 1000, 100);
        assert_eq!(
            pieces,
            vec![
                Piece { title: "A".into(), text: "one. two.".into() },
                Piece { title: "B".into(), text: "three.".into() },
            ]
        );
    }

    #[test]
    fn long_text_is_split_under_the_limit_with_overlap() {
        let sentence = "The quick brown fox jumps over the lazy dog.";
        let long: Vec<&str> = std::iter::repeat_n(sentence, 40).collect();
        let pieces = chunk(&[section("T", &[&long.join(" ")])], "Doc", 200, 50);
        assert!(pieces.len() > 5);
        for pair in pieces.windows(2) {
            assert!(pair[0].text.chars().count() <= 200, "{}", pair[0].text.len());
            let tail: String = pair[0].text.split_whitespace().last().expect("word").to_owned();
            assert!(pair[1].text.contains(&tail), "consecutive chunks overlap");
        }
        let words: usize = long.join(" ").split_whitespace().count();
        let first_words: usize = pieces[0].text.split_whitespace().count();
        assert!(first_words < words);
    }

    #[test]
    fn a_giant_word_is_cut_not_lost() {
        let url = "x".repeat(450);
        let pieces =
            chunk(&[Section { title: None, paragraphs: vec![url.clone()] }], "Doc", 200, 0);
        assert_eq!(pieces.iter().map(|p| p.text.len()).sum::<usize>(), 450);
        assert!(pieces.iter().all(|p| p.title == "Doc"));
    }
}
