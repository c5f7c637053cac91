//! The knowledge base through the public door: documents uploaded as real multipart requests in
//! every supported text format, processed in the background to COMPLETED (or FAILED with the
//! reason), answered from by the bot over the widget socket, and forgotten when deleted.

use crate::common::*;
use serde_json::json;

/// An owner and an active bot with no intents: every answer comes from documents or fallback.
async fn bot(server: &TestServer) -> (String, String) {
    let jwt = register_owner(server, "kb@example.com").await;
    let body = json!({"name": "kb", "config": {"fallback_message": "I do not know that yet."}});
    let id = published_bot(server, &jwt, body).await;
    (jwt, id)
}

async fn ask(server: &TestServer, bot: &str, question: &str) -> String {
    let mut client = server.client().await;
    client.hello(bot).await;
    let reply = client.exchange("q1", question).await.reply;
    let stored = reply.end["text"].as_str().expect("stored reply").to_owned();
    assert_eq!(reply.tokens, stored, "the streamed tokens are the stored reply");
    stored
}

const MARKDOWN: &str = "# Shipping\n\nWe ship to 40 countries. Delivery takes **3 to 5 working days** in Europe.\n\n\
# Returns\n\nReturns are free within 30 days. Send the parcel back with the prepaid label.\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_format_is_processed_and_answered_from() {
    let server = start().await;
    let (jwt, bot) = bot(&server).await;
    let html = "<html><head><title>Hours</title><script>var x = 'opening hours';</script></head><body>\
                <h2>Opening hours</h2><p>The Rome store opens at 9 and closes at 18.</p></body></html>";
    let csv = "product,warranty\nkettle,2 years\ntoaster,\"3 years, parts only\"\n";
    let json_doc = r#"[{"question": "Do you sell gift cards?", "answer": "Gift cards come in 25, 50 and 100 euro."}]"#;
    let files: [(&str, &str, &[u8]); 5] = [
        ("faq.md", "text/markdown", MARKDOWN.as_bytes()),
        ("hours.html", "text/html", html.as_bytes()),
        ("warranty.csv", "text/csv", csv.as_bytes()),
        ("cards.json", "application/json", json_doc.as_bytes()),
        (
            "notes.txt",
            "text/plain",
            b"Our support line answers in Italian and English.\n\nCall 06 1234 5678.",
        ),
    ];
    let mut ids = Vec::new();
    for (name, media, bytes) in files {
        let (status, document) = upload(&server, &jwt, &bot, name, media, bytes).await;
        assert_eq!(status, 202, "{name}: {document}");
        assert_eq!(document["status"], "PENDING");
        assert_eq!(document["title"], format!("FAQ {name}"));
        let id = document["id"].as_str().expect("id").to_owned();
        let done = settled(&server, &jwt, &bot, &id).await;
        assert_eq!(done["status"], "COMPLETED", "{name}: {done}");
        assert!(done["chunks"].as_u64().is_some_and(|n| n >= 1), "{done}");
        ids.push(id);
    }
    let (_, list) =
        server.call("GET", &format!("/api/bots/{bot}/documents"), None, Some(&jwt)).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(5));

    for (question, expected) in [
        ("how many days does delivery take?", "3 to 5 working days"),
        ("are returns free?", "Returns are free within 30 days"),
        ("when does the rome store close?", "closes at 18"),
        ("what warranty does the toaster have?", "3 years, parts only"),
        ("do you sell gift cards", "25, 50 and 100 euro"),
    ] {
        let reply = ask(&server, &bot, question).await;
        assert!(reply.contains(expected), "{question} → {reply}");
    }
    let reply = ask(&server, &bot, "what is the airspeed of a swallow").await;
    assert_eq!(reply, "I do not know that yet.", "no passage covers it: the fallback");

    // Deleting the Markdown document removes its chunks: its answers go.
    let (status, _) = server
        .call("DELETE", &format!("/api/bots/{bot}/documents/{}", ids[0]), None, Some(&jwt))
        .await;
    assert_eq!(status, 204);
    let reply = ask(&server, &bot, "how many days does delivery take?").await;
    assert!(!reply.contains("working days"), "{reply}");
    let (status, _) = server
        .call("GET", &format!("/api/bots/{bot}/documents/{}", ids[0]), None, Some(&jwt))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_from_a_document_names_it_for_agents_but_not_for_visitors() {
    let server = start().await;
    let (jwt, bot) = bot(&server).await;
    let intent = json!({"name": "greet", "examples": ["hello there"], "response": {"text": "Hi!"}});
    let (status, body) = server.post(&format!("/api/bots/{bot}/intents"), intent, Some(&jwt)).await;
    assert_eq!(status, 201, "{body}");
    let text = b"Returns are free within 30 days. Send the parcel back with the prepaid label.";
    let (status, document) = upload(&server, &jwt, &bot, "returns.txt", "text/plain", text).await;
    assert_eq!(status, 202, "{document}");
    let document_id = document["id"].as_str().expect("id").to_owned();
    assert_eq!(settled(&server, &jwt, &bot, &document_id).await["status"], "COMPLETED");

    let mut client = server.client().await;
    let welcome = client.hello(&bot).await;
    let from_document = client.exchange("q1", "are returns free?").await.reply;
    assert!(from_document.tokens.contains("free within 30 days"), "{}", from_document.tokens);
    assert!(!from_document.end.to_string().contains("sources"), "{}", from_document.end);
    let from_intent = client.exchange("q2", "hello there").await.reply;
    assert_eq!(from_intent.tokens, "Hi!");
    let fallback = client.exchange("q3", "what is the airspeed of a swallow").await.reply;
    assert_eq!(fallback.tokens, "I do not know that yet.");

    let id = welcome["conversation_id"].as_str().expect("id");
    let (status, detail) =
        server.call("GET", &format!("/api/conversations/{id}"), None, Some(&jwt)).await;
    assert_eq!(status, 200, "{detail}");
    let messages = detail["messages"].as_array().expect("messages");
    let stored = |seq: &serde_json::Value| {
        messages.iter().find(|m| m["seq"] == *seq).expect("stored answer").clone()
    };
    assert_eq!(
        stored(&from_document.end["seq"])["sources"],
        json!([{"document_id": document_id, "title": "FAQ returns.txt"}]),
        "{detail}"
    );
    for answer in [&from_intent, &fallback] {
        let m = stored(&answer.end["seq"]);
        assert!(m.get("sources").is_none(), "no sources key: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_fail_with_a_reason_and_bad_uploads_are_refused() {
    let server = start_with(|s| s.knowledge.max_document_bytes = 4096).await;
    let (jwt, bot) = bot(&server).await;
    for (name, media, bytes, reason) in [
        ("broken.txt", "text/plain", &[0xff_u8, 0xfe, 0x00, 0x41][..], "UTF-8"),
        ("empty.md", "text/markdown", &b"\n\n   \n"[..], "no text"),
        ("bad.json", "application/json", &b"{\"a\": "[..], "invalid JSON"),
        ("scan.pdf", "application/pdf", &b"%PDF-1.4 ..."[..], "PDF"),
        ("fake.docx", "application/octet-stream", &b"PK\x03\x04 not a zip"[..], "DOCX"),
    ] {
        let (status, document) = upload(&server, &jwt, &bot, name, media, bytes).await;
        assert_eq!(status, 202, "{document}");
        let id = document["id"].as_str().expect("id").to_owned();
        let done = settled(&server, &jwt, &bot, &id).await;
        assert_eq!(done["status"], "FAILED", "{name}: {done}");
        assert!(done["error"].as_str().is_some_and(|e| e.contains(reason)), "{name}: {done}");
        // Reprocessing goes through the queue again (and fails again, the same way).
        let path = format!("/api/bots/{bot}/documents/{id}/reprocess");
        let (status, again) = server.call("POST", &path, None, Some(&jwt)).await;
        assert_eq!((status, again["status"].as_str()), (202, Some("PENDING")));
        assert_eq!(settled(&server, &jwt, &bot, &id).await["status"], "FAILED");
    }
    let (status, body) =
        upload(&server, &jwt, &bot, "virus.exe", "application/octet-stream", b"MZ").await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_document_type"), "{body}");
    let (status, body) = upload(&server, &jwt, &bot, "big.txt", "text/plain", &[b'a'; 5000]).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"), "{body}");
    let (status, body) = upload(&server, &jwt, &bot, "none.txt", "text/plain", b"").await;
    assert_eq!((status, error_code(&body)), (422, "validation_failed"), "{body}");
    let (status, body) = server
        .call("POST", &format!("/api/bots/{bot}/documents/upload"), Some("{}"), Some(&jwt))
        .await;
    assert_eq!((status, error_code(&body)), (400, "malformed_body"), "not multipart: {body}");

    // Another tenant sees none of it.
    let other = register_owner(&server, "other@example.com").await;
    let (status, _) =
        server.call("GET", &format!("/api/bots/{bot}/documents"), None, Some(&other)).await;
    assert_eq!(status, 404);
    let (status, body) = upload(&server, &other, &bot, "x.txt", "text/plain", b"hello").await;
    assert_eq!(status, 404, "{body}");
}

/// A minimal DOCX (the three parts Word needs) with a heading and two paragraphs.
fn docx() -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let parts = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#,
        ),
        (
            "word/document.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Pets policy</w:t></w:r></w:p><w:p><w:r><w:t xml:space="preserve">Dogs are welcome in all rooms </w:t></w:r><w:r><w:t>for 15 euro a night &amp; a deposit.</w:t></w:r></w:p><w:p><w:r><w:t>Cats stay free.</w:t></w:r></w:p></w:body></w:document>"#,
        ),
    ];
    for (name, content) in parts {
        zip.start_file(name, options).expect("entry");
        zip.write_all(content.as_bytes()).expect("write");
    }
    zip.finish().expect("zip").into_inner()
}

/// A minimal one-page PDF 1.4 (Helvetica, an uncompressed content stream, a correct xref).
fn pdf() -> Vec<u8> {
    let content = "BT /F1 12 Tf 72 720 Td (The spa opens at 8 and closes at 21.) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    pdf_file(&objects.map(String::into_bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docx_and_pdf_documents_are_read() {
    let server = start().await;
    let (jwt, bot) = bot(&server).await;
    let docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    for (name, media, bytes) in
        [("pets.docx", docx_type, docx()), ("spa.pdf", "application/pdf", pdf())]
    {
        let (status, document) = upload(&server, &jwt, &bot, name, media, &bytes).await;
        assert_eq!(status, 202, "{document}");
        let done = settled(&server, &jwt, &bot, document["id"].as_str().expect("id")).await;
        assert_eq!(done["status"], "COMPLETED", "{name}: {done}");
        assert_eq!(done["type"], if name.ends_with("pdf") { "PDF" } else { "DOCX" });
    }
    let reply = ask(&server, &bot, "are dogs welcome in the rooms?").await;
    assert!(reply.contains("15 euro a night & a deposit"), "{reply}");
    let reply = ask(&server, &bot, "when does the spa close?").await;
    assert!(reply.contains("closes at 21"), "{reply}");
}

// --- the adapter itself: work a previous run left is resumed (no server) ---

use parla_domain::{
    model::{BotId, DocumentType, ProcessStatus, TenantId},
    store::Store,
};
use parla_knowledge::{Knowledge, KnowledgeSettings, embed, vectors};
use parla_store_redb::RedbStore;
use std::sync::Arc;

fn knowledge_settings() -> KnowledgeSettings {
    KnowledgeSettings {
        max_document_bytes: 1 << 20,
        chunk_chars: 300,
        chunk_overlap_chars: 50,
        queue: 8,
        top_k: 3,
        scrape_allow_private_targets: true,
        workers: 2,
        scrape_deadline_ms: 10_000,
        extract_memory_bytes: 256 << 20,
        extract_timeout_ms: 10_000,
        extractor_program: String::new(),
        // In this test process: it is not the parla executable.
        extract_in_process: true,
    }
}

/// Unit-level: the knowledge adapter on the embedded store, as a crash leaves a document.
#[tokio::test]
async fn work_left_pending_by_a_previous_run_is_resumed_and_searchable() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path(), 16, 16).expect("open"));
    // As a crash would leave it: stored and PENDING, never processed.
    let mut document = parla_domain::conformance::document("t", "b", "d1", ProcessStatus::Pending);
    document.kind = DocumentType::Markdown;
    let text = b"# Parking\n\nGuests park for free in the garage under the hotel.";
    store.put_document(&document, Some(text)).await.expect("put");

    let vectors =
        vectors::embedded::EmbeddedVectors::open(dir.path(), "hashing-512").expect("vectors");
    let knowledge = Knowledge::start(
        store.clone(),
        knowledge_settings(),
        Arc::new(embed::HashingEmbedder::default()),
        Arc::new(vectors),
        // No page is scraped here.
        Arc::new(parla_egress::http::TenantHttpClient::new(
            false,
            std::time::Duration::from_secs(1),
            "test",
        )),
    );
    assert_eq!(knowledge.resume().await.expect("resume"), 1);
    let (t, b) = (TenantId::from("t"), BotId::from("b"));
    for _ in 0..200 {
        let d = store.get_document(&t, "d1").await.expect("get").expect("exists");
        if d.status == ProcessStatus::Completed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.unfinished_documents().await.expect("queue").is_empty());
    let found = knowledge.search(&t, &b, "is parking free?", 3).await.expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].title, "Parking");
    assert!(found[0].coverage >= 0.5, "{found:?}");
    let elsewhere = knowledge.search(&TenantId::from("u"), &b, "parking", 3).await.expect("search");
    assert!(elsewhere.is_empty(), "another tenant's bot with the same id sees nothing");
}
