//! Text out of uploaded bytes, keeping the structure chunking needs: sections (a heading and
//! its paragraphs). Pure functions; no I/O. The server runs them in a bounded child process
//! ([`super::extractor`]), never in its own.

use parla_domain::model::DocumentType;

/// A heading and the paragraphs under it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Section {
    pub title: Option<String>,
    pub paragraphs: Vec<String>,
}

/// Extracts `bytes` of `kind`; the error says why, for people.
pub fn extract(kind: DocumentType, bytes: &[u8]) -> Result<Vec<Section>, String> {
    let text = || std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned());
    let sections = match kind {
        DocumentType::Txt => plain(text()?),
        DocumentType::Markdown => markdown(text()?),
        DocumentType::Csv => csv(text()?)?,
        DocumentType::Json => json(bytes)?,
        DocumentType::Html | DocumentType::WebPage => html(text()?),
        DocumentType::Pdf => pdf(bytes)?,
        DocumentType::Docx => docx(bytes)?,
    };
    let sections: Vec<Section> =
        sections.into_iter().filter(|s| !s.paragraphs.is_empty()).collect();
    if sections.is_empty() {
        return Err("no text found in the document".into());
    }
    Ok(sections)
}

/// Largest `word/document.xml` read from a DOCX (a zip bomb stops here).
const MAX_DOCX_XML: u64 = 64 * 1024 * 1024;

/// The error of an extraction that ran out of the memory it may use (an allocation refused
/// under the extractor's limit, see [`super::extractor`]).
pub const OUT_OF_MEMORY: &str = "extracting the document needs more memory than allowed";

/// A PDF's text (pdf-extract), page breaks as paragraph breaks.
fn pdf(bytes: &[u8]) -> Result<Vec<Section>, String> {
    if !bytes.starts_with(b"%PDF-") {
        return Err("not a PDF file".into());
    }
    let text = pdf_extract::extract_text_from_mem(bytes)
        .map_err(|e| format!("the PDF could not be read: {e}"))?;
    Ok(plain(&text.replace('\u{c}', "\n\n")))
}

/// A DOCX's paragraphs from `word/document.xml`; Heading and Title styles open sections.
fn docx(bytes: &[u8]) -> Result<Vec<Section>, String> {
    use std::io::Read as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|_| "not a DOCX file (not a zip archive)".to_owned())?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|_| "not a DOCX file (no word/document.xml)".to_owned())?
        .take(MAX_DOCX_XML)
        .read_to_string(&mut xml)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::OutOfMemory => OUT_OF_MEMORY.to_owned(),
            _ => "the DOCX text is not readable UTF-8 XML".to_owned(),
        })?;
    let mut sections = vec![Section::default()];
    for paragraph in xml.split("</w:p>") {
        let Some(start) = paragraph.rfind("<w:p>").or_else(|| paragraph.rfind("<w:p ")) else {
            continue;
        };
        let paragraph = &paragraph[start..];
        let style = paragraph
            .find("<w:pStyle w:val=\"")
            .map(|i| &paragraph[i + 17..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        let text = docx_text(paragraph);
        if text.is_empty() {
            continue;
        }
        if style.starts_with("Heading") || style == "Title" {
            sections.push(Section { title: Some(text), paragraphs: Vec::new() });
        } else if let Some(last) = sections.last_mut() {
            last.paragraphs.push(text);
        }
    }
    Ok(sections)
}

/// The text runs (`<w:t>`) of one DOCX paragraph; tabs and breaks become spaces.
fn docx_text(paragraph: &str) -> String {
    let mut out = String::new();
    let mut rest = paragraph;
    while let Some(lt) = rest.find('<') {
        let Some(gt) = rest[lt..].find('>') else { break };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        if tag == "w:t" || tag.starts_with("w:t ") {
            let end = rest.find("</w:t>").unwrap_or(rest.len());
            out.push_str(&decode_entities(&rest[..end]));
            rest = &rest[end..];
        } else if tag.starts_with("w:tab") || tag.starts_with("w:br") {
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Paragraphs: runs of non-blank lines, whitespace collapsed.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            push_paragraph(&mut out, &mut current);
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line.trim());
        }
    }
    push_paragraph(&mut out, &mut current);
    out
}

fn push_paragraph(out: &mut Vec<String>, current: &mut String) {
    let collapsed = current.split_whitespace().collect::<Vec<_>>().join(" ");
    if !collapsed.is_empty() {
        out.push(collapsed);
    }
    current.clear();
}

fn plain(text: &str) -> Vec<Section> {
    vec![Section { title: None, paragraphs: paragraphs(text) }]
}

/// Headings (`#` to `######`) open sections; inline markup is dropped.
fn markdown(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let mut body = String::new();
    let mut in_code = false;
    let flush = |sections: &mut Vec<Section>, body: &mut String| {
        if let Some(last) = sections.last_mut() {
            last.paragraphs.extend(paragraphs(body).into_iter().map(|p| strip_inline(&p)));
        }
        body.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let heading = line.trim_start().strip_prefix('#').filter(|_| !in_code);
        if let Some(rest) = heading {
            flush(&mut sections, &mut body);
            let title = strip_inline(rest.trim_start_matches('#').trim());
            sections.push(Section { title: Some(title), paragraphs: Vec::new() });
            continue;
        }
        let line = line.trim_start();
        let line = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .or_else(|| line.strip_prefix("> "))
            .unwrap_or(line);
        body.push_str(line);
        body.push('\n');
    }
    flush(&mut sections, &mut body);
    sections
}

/// `**b**`, `_i_`, `` `c` `` and `[text](url)` become their text.
fn strip_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|mid| after[mid..].find(')').map(|end| (mid, mid + end))) {
            Some((mid, end)) => {
                out.push_str(&after[..mid]);
                rest = &after[end + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("**", "").replace("__", "").replace('`', "")
}

/// One paragraph per row, `header: value` pairs; RFC 4180 quoting.
fn csv(text: &str) -> Result<Vec<Section>, String> {
    let rows = parse_csv(text);
    let mut rows = rows.into_iter().filter(|r| r.iter().any(|c| !c.trim().is_empty()));
    let Some(header) = rows.next() else { return Ok(Vec::new()) };
    let paragraphs = rows
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(i, v)| match header.get(i).map(|h| h.trim()).filter(|h| !h.is_empty()) {
                    Some(h) => format!("{h}: {}", v.trim()),
                    None => v.trim().to_owned(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|p| !p.is_empty())
        .collect();
    Ok(vec![Section { title: None, paragraphs }])
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Each top-level entry (an array's element, an object's member) is a paragraph of
/// `path: value` lines.
fn json(bytes: &[u8]) -> Result<Vec<Section>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let entries: Vec<(String, &serde_json::Value)> = match &value {
        serde_json::Value::Array(items) => items.iter().map(|v| (String::new(), v)).collect(),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        other => vec![(String::new(), other)],
    };
    let paragraphs = entries
        .into_iter()
        .map(|(path, v)| {
            let mut lines = Vec::new();
            leaves(&path, v, &mut lines);
            lines.join("; ")
        })
        .filter(|p| !p.is_empty())
        .collect();
    Ok(vec![Section { title: None, paragraphs }])
}

fn leaves(path: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| leaves(&join(k), v, out)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| leaves(path, v, out)),
        serde_json::Value::Null => {}
        serde_json::Value::String(s) if path.is_empty() => out.push(s.clone()),
        serde_json::Value::String(s) => out.push(format!("{path}: {s}")),
        other if path.is_empty() => out.push(other.to_string()),
        other => out.push(format!("{path}: {other}")),
    }
}

/// Visible text: `<h1>`–`<h6>` open sections, block elements end paragraphs, `<script>`,
/// `<style>`, `<nav>`, `<header>`, `<footer>` and comments are dropped, entities decoded.
fn html(text: &str) -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let mut buf = String::new();
    let mut heading: Option<String> = None;
    let mut skip_until: Option<&'static str> = None;
    let mut rest = text;
    let flush = |sections: &mut Vec<Section>, buf: &mut String| {
        let p = decode_entities(&buf.split_whitespace().collect::<Vec<_>>().join(" "));
        if !p.is_empty()
            && let Some(last) = sections.last_mut()
        {
            last.paragraphs.push(p);
        }
        buf.clear();
    };
    while let Some(lt) = rest.find('<') {
        let chunk = &rest[..lt];
        if skip_until.is_none() {
            match heading.as_mut() {
                Some(h) => h.push_str(chunk),
                None => buf.push_str(chunk),
            }
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = rest[1..gt].trim().to_ascii_lowercase();
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String =
            tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        match (closing, name.as_str()) {
            (false, "script") => skip_until = Some("script"),
            (false, "style") => skip_until = Some("style"),
            (false, "nav") => skip_until = Some("nav"),
            (false, "footer") => skip_until = Some("footer"),
            (false, "header") => skip_until = Some("header"),
            (false, "h1" | "h2" | "h3" | "h4" | "h5" | "h6") => {
                flush(&mut sections, &mut buf);
                heading = Some(String::new());
            }
            (true, "h1" | "h2" | "h3" | "h4" | "h5" | "h6") => {
                let title = heading.take().unwrap_or_default();
                let title =
                    decode_entities(&title.split_whitespace().collect::<Vec<_>>().join(" "));
                sections.push(Section { title: Some(title), paragraphs: Vec::new() });
            }
            (
                _,
                "p" | "div" | "li" | "br" | "tr" | "section" | "article" | "table" | "ul" | "ol"
                | "title" | "blockquote" | "pre",
            ) => flush(&mut sections, &mut buf),
            (
                _,
                "b" | "i" | "em" | "strong" | "a" | "span" | "code" | "small" | "sup" | "sub" | "u"
                | "mark" | "abbr",
            ) => {}
            _ => {
                if heading.is_none() {
                    buf.push(' ');
                }
            }
        }
    }
    if skip_until.is_none() {
        buf.push_str(rest);
    }
    flush(&mut sections, &mut buf);
    sections
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let entity = &after[..e];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `<title>` of an HTML page, if any.
pub fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let end = lower[open_end..].find("</title>")? + open_end;
    let title =
        decode_entities(&text[open_end..end].split_whitespace().collect::<Vec<_>>().join(" "));
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_headings_as_sections() {
        let md = "# Shipping\n\nWe ship **worldwide** in [3 days](https://x).\n\n## Returns\n- 30 days\n- free\n";
        let s = extract(DocumentType::Markdown, md.as_bytes()).expect("md");
        assert_eq!(s[0].title.as_deref(), Some("Shipping"));
        assert_eq!(s[0].paragraphs, ["We ship worldwide in 3 days."]);
        assert_eq!(s[1].title.as_deref(), Some("Returns"));
        assert_eq!(s[1].paragraphs, ["30 days free"]);
    }

    #[test]
    fn csv_rows_become_labelled_paragraphs() {
        let csv = "city,hours\n\"Rome, IT\",\"9-18, \"\"Mon-Fri\"\"\"\nMilan,10-19\n";
        let s = extract(DocumentType::Csv, csv.as_bytes()).expect("csv");
        assert_eq!(
            s[0].paragraphs,
            ["city: Rome, IT; hours: 9-18, \"Mon-Fri\"", "city: Milan; hours: 10-19"]
        );
    }

    #[test]
    fn json_entries_become_paragraphs_of_paths() {
        let j = br#"[{"q": "Do you ship abroad?", "a": {"text": "Yes, to 40 countries."}}, {"q": "Refunds?"}]"#;
        let s = extract(DocumentType::Json, j).expect("json");
        // Object members come in key order (serde_json's map).
        assert_eq!(
            s[0].paragraphs,
            ["a.text: Yes, to 40 countries.; q: Do you ship abroad?", "q: Refunds?"]
        );
        assert!(extract(DocumentType::Json, b"{nope").is_err());
    }

    #[test]
    fn html_drops_scripts_and_navigation_and_keeps_headings() {
        let h = "<html><head><title>FAQ &amp; help</title><style>p{}</style></head><body><nav>Home | Shop</nav><h1>Opening hours</h1><p>We are open <b>9&nbsp;to&nbsp;5</b>.</p><script>alert(1)</script><!-- hidden --><p>Closed on Sunday.</p></body></html>";
        let s = extract(DocumentType::Html, h.as_bytes()).expect("html");
        let all: Vec<&str> =
            s.iter().flat_map(|s| s.paragraphs.iter().map(String::as_str)).collect();
        assert!(
            !all.iter().any(|p| p.contains("alert") || p.contains("Shop") || p.contains("hidden")),
            "{all:?}"
        );
        let hours =
            s.iter().find(|s| s.title.as_deref() == Some("Opening hours")).expect("section");
        assert_eq!(hours.paragraphs, ["We are open 9 to 5.", "Closed on Sunday."]);
        assert_eq!(html_title(h).as_deref(), Some("FAQ & help"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(extract(DocumentType::Txt, &[0xff, 0xfe, 0x00]).is_err());
        assert!(extract(DocumentType::Txt, b"   \n\n ").is_err());
        assert!(extract(DocumentType::Pdf, b"%PDF-1.4 truncated").is_err());
        assert!(extract(DocumentType::Pdf, b"hello").is_err());
        assert!(extract(DocumentType::Docx, b"PK not really").is_err());
    }
}
