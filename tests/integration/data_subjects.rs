//! A person's data request through the public doors: a visitor leaves their email, name and
//! phone in a widget form, the same person texts the bot by SMS (Twilio's signed webhook);
//! `GET /api/data-subjects` finds both conversations by phone and the widget's by email or
//! name, the export holds every message, and the erasure deletes both through their actors —
//! the open widget is told — after which nothing finds them, the analytics totals are what they
//! were, and the data dir's files no longer hold the words (the store file is compacted).

use std::collections::BTreeMap;
use std::io::Read;

use crate::common::*;
use crate::sms::{CONTACT, incoming, setup_with};
use serde_json::{Value, json};

/// What the visitor writes: unusual enough to grep the data dir for.
const SECRET: &str = "my grandmother's recipe is zebra-marmalade-4217";
const SMS_SECRET: &str = "text me about quokka-lasagne-9981";
const EMAIL: &str = "Mario.Rossi@Example.com";

/// A zip archive's files, by name, as text.
fn unzip(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("entry");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("UTF-8");
        let name = file.name().expect("a name").to_string();
        files.insert(name, text);
    }
    files
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn find(server: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/data-subjects?query={}", urlencode(query));
    let (status, body) = server.call("GET", &path, None, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("data").clone()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("q", s)]).expect("encode")[2..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_found_everywhere_exported_whole_and_erased_to_the_last_byte() {
    found_exported_erased(&setup_with(|_| {}).await, true).await;
}

/// The same on the distributed store (Cassandra, from `scripts/services.sh`). Its deleted rows
/// are tombstones until Cassandra's own compaction after `gc_grace_seconds` (docs/deploy.md),
/// so the data dir is not searched: the API must find nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_found_exported_and_erased_in_the_distributed_store_too() {
    let Some(services) = crate::common::cluster::services("data_subjects") else { return };
    let keyspace = format!("parla_test_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let cql = move |s: &mut parla_config::Settings| {
        s.store.backend = "cql".into();
        s.store.cql_nodes = vec![services.cql.clone()];
        s.store.cql_keyspace = keyspace.clone();
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    cql(&mut settings);
    parla::migrate(&settings).await.expect("migrations");
    found_exported_erased(&setup_with(cql).await, false).await;
}

/// The whole request, on `s`'s server; `on_disk`: the data dir is searched for the words.
async fn found_exported_erased(s: &crate::sms::Setup, on_disk: bool) {
    let (server, owner) = (&s.server, s.owner.as_str());
    let intent = json!({"name": "contact", "examples": ["please call me back"],
        "response": {"text": "Leave us your details.", "content": {"type": "form", "form_id": "lead",
            "submit_label": "Send", "fields": [
                {"name": "email", "label": "Email", "input": "email", "required": true},
                {"name": "name", "label": "Name", "input": "text"},
                {"name": "phone", "label": "Phone", "input": "phone"}]}}});
    let (status, body) =
        server.post(&format!("/api/bots/{}/intents", s.bot), intent, Some(owner)).await;
    assert_eq!(status, 201, "{body}");

    // On the widget: a secret, then the form.
    let mut widget = server.client().await;
    let welcome = widget.hello(&s.bot).await;
    let web = welcome["conversation_id"].as_str().expect("id").to_owned();
    widget.exchange("w1", SECRET).await;
    assert_eq!(widget.exchange("w2", "please call me back").await.reply.end["kind"], "form");
    let values = json!({"email": EMAIL, "name": "Mario Rossi", "phone": "+39 333 123 4567"});
    widget
        .send(json!({"type": "message", "client_msg_id": "w3", "text": "my details",
                     "form": {"form_id": "lead", "values": values}}))
        .await;
    widget.expect("message").await; // the echo
    widget.expect("message").await; // the thanks
    // By SMS, from the same phone.
    assert_eq!(incoming(s, "SM-subject-1", SMS_SECRET, true).await.0, 200);
    let sms = eventually(async || {
        let found = find(server, owner, CONTACT).await;
        if found.len() == 2 { Ok(found) } else { Err(format!("{found:?}")) }
    })
    .await;

    // Found: by phone both, by email or name the widget's, another workspace nothing.
    let ids = |found: &[Value]| -> Vec<String> {
        found.iter().map(|c| c["id"].as_str().expect("id").to_owned()).collect()
    };
    let sms_id = ids(&sms).into_iter().find(|id| *id != web).expect("the SMS conversation");
    let by_phone = find(server, owner, "0039 333 1234567").await;
    assert_eq!(by_phone.len(), 2, "{by_phone:?}");
    assert!(by_phone.iter().all(|c| c["matched"] == json!(["phone"])), "{by_phone:?}");
    assert_eq!(ids(&find(server, owner, "mario.rossi@example.com").await), [web.as_str()]);
    let by_name = find(server, owner, "  MARIO ROSSI ").await;
    assert_eq!(
        (ids(&by_name), by_name[0]["matched"].clone()),
        (vec![web.clone()], json!(["name"]))
    );
    assert_eq!(ids(&find(server, owner, &web).await), [web.as_str()], "by conversation id");
    assert!(find(server, owner, "luigi.verdi@example.com").await.is_empty());
    let stranger = register_owner(server, "stranger@subjects.example.com").await;
    assert!(find(server, &stranger, CONTACT).await.is_empty(), "another workspace finds nothing");
    let (status, _) = server.call("GET", "/api/data-subjects?query=", None, Some(owner)).await;
    assert_eq!(status, 422);

    // Exported whole: both conversations, every message, the form, the contact.
    let query = json!({"query": CONTACT}).to_string();
    let (status, head, bytes) =
        server.call_bytes("POST", "/api/data-subjects/export", Some(&query), Some(owner)).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/zip"), "{head}");
    let files = unzip(&bytes);
    let subject: Value = serde_json::from_str(&files["subject.json"]).expect("JSON");
    let conversations = subject["conversations"].as_array().expect("conversations");
    assert_eq!(conversations.len(), 2);
    let text = files["subject.json"].as_str();
    for needle in [SECRET, SMS_SECRET, EMAIL, "Mario Rossi", CONTACT] {
        assert!(text.contains(needle), "the export holds {needle:?}");
    }
    let web_export = conversations.iter().find(|c| c["conversation"]["id"] == web.as_str());
    let web_export = web_export.expect("the widget's conversation");
    let (_, detail) =
        server.call("GET", &format!("/api/conversations/{web}"), None, Some(owner)).await;
    assert_eq!(
        web_export["messages"].as_array().map(Vec::len),
        detail["messages"].as_array().map(Vec::len)
    );
    assert!(files[&format!("transcripts/{web}.txt")].contains(SECRET));
    assert!(files[&format!("transcripts/{sms_id}.txt")].contains(SMS_SECRET));

    // Erased: through the actors (the widget is told), nothing found after, counters kept.
    let overview = |token: &str| {
        let token = token.to_owned();
        async move {
            let (_, o) = server.call("GET", "/api/analytics/overview", None, Some(&token)).await;
            o["totals"].clone()
        }
    };
    let before = overview(owner).await;
    let (status, erased) =
        server.call("POST", "/api/data-subjects/erase", Some(&query), Some(owner)).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["conversations"].as_array().map(Vec::len), Some(2), "{erased}");
    assert!(erased["messages"].as_u64().is_some_and(|n| n >= 7), "{erased}");
    assert_eq!(erased["failed"], json!([]));
    assert_eq!(widget.expect("error").await["code"], "conversation_deleted");
    for query in [CONTACT, EMAIL, "Mario Rossi", web.as_str()] {
        assert!(find(server, owner, query).await.is_empty(), "{query} finds nothing after");
    }
    for id in [&web, &sms_id] {
        let (status, _) =
            server.call("GET", &format!("/api/conversations/{id}"), None, Some(owner)).await;
        assert_eq!(status, 404);
    }
    assert_eq!(overview(owner).await, before, "counters hold no personal data and stay");
    // Recorded: who exported and erased, and what was found — not the query nor the words.
    let (_, log) = server
        .call("GET", "/api/audit-log?action=POST%20/api/data-subjects", None, Some(owner))
        .await;
    let entries = log["data"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{log}");
    assert_eq!(entries[0]["action"], "POST /api/data-subjects/erase");
    assert_eq!(entries[0]["details"]["conversations"].as_array().map(Vec::len), Some(2));
    assert_eq!(entries[1]["action"], "POST /api/data-subjects/export");
    let text = log.to_string();
    for needle in ["3331234567", "zebra", "quokka", "Rossi", "rossi"] {
        assert!(!text.contains(needle), "the log holds no {needle:?}: {text}");
    }
    // Not on disk: the store's file was compacted after the deletion.
    for needle in ["zebra-marmalade-4217", "quokka-lasagne-9981", "mario.rossi@example.com", EMAIL]
    {
        let holding = if on_disk { files_holding(server.dir.path(), needle) } else { Vec::new() };
        assert_eq!(holding, Vec::<String>::new(), "{needle}");
    }
    // The same phone texting again starts afresh.
    assert_eq!(incoming(s, "SM-subject-2", "hello again", true).await.0, 200);
    let again = eventually(async || {
        let found = find(server, owner, CONTACT).await;
        if found.len() == 1 { Ok(found) } else { Err(format!("{found:?}")) }
    })
    .await;
    assert_ne!(again[0]["id"], sms_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_in_admin_or_owner_handles_a_persons_data() {
    let server = start().await;
    let owner = register_owner(&server, "owner@subjects-roles.example.com").await;
    let query = json!({"query": CONTACT}).to_string();
    for role in ["viewer", "agent"] {
        let token =
            invite_and_join(&server, &owner, &format!("{role}@subjects-roles.example.com"), role)
                .await;
        for (method, path) in [
            ("GET", format!("/api/data-subjects?query={}", urlencode(CONTACT))),
            ("POST", "/api/data-subjects/export".to_owned()),
            ("POST", "/api/data-subjects/erase".to_owned()),
        ] {
            let body = (method == "POST").then_some(query.as_str());
            let (status, answer) = server.call(method, &path, body, Some(&token)).await;
            assert_eq!((status, error_code(&answer)), (403, "forbidden"), "{role} {path}");
        }
    }
    let (_, key) = server
        .post(
            "/api/api-keys",
            json!({"name": "all", "scopes": ["conversations:write"]}),
            Some(&owner),
        )
        .await;
    let key = key["key"].as_str().expect("key");
    let (status, _) =
        server.call("POST", "/api/data-subjects/erase", Some(&query), Some(key)).await;
    assert_eq!(status, 403, "an API key cannot erase a person");
    let (status, answer) = server
        .call("POST", "/api/data-subjects/erase", Some(r#"{"query": "   "}"#), Some(&owner))
        .await;
    assert_eq!((status, answer["error"]["details"]["field"].as_str()), (422, Some("query")));
}
