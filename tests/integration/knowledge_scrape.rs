//! Scraping through the public door: a real local web site with a robots.txt; the crawl reads
//! the allowed same-site pages, never requests a disallowed one, and the bot answers from them.

use std::sync::{Arc, Mutex};

use crate::common::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

const HOME: &str = r#"<html><head><title>Hotel Aurora</title></head><body>
<nav><a href="/">Home</a></nav>
<h1>Welcome</h1><p>Breakfast is served from 7 to 10 in the garden room.</p>
<p>See <a href="/rooms.html">our rooms</a>, <a href="/private/safe.html">staff notes</a>
and <a href="http://elsewhere.invalid/">a partner</a>.</p></body></html>"#;
const ROOMS: &str = r#"<html><head><title>Rooms</title></head><body><h1>Rooms</h1>
<p>Every room has a balcony facing the lake.</p></body></html>"#;
const SAFE: &str = "<html><body><p>The safe code is 4321.</p></body></html>";

/// A small site on port 0; returns its base URL and the paths requested so far.
async fn site() -> (String, Arc<Mutex<Vec<String>>>) {
    let requested = Arc::new(Mutex::new(Vec::new()));
    let log = requested.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let log = log.clone();
            async move {
                let path = req.path().to_owned();
                log.lock().expect("log").push(path.clone());
                let (media, body) = match path.as_str() {
                    "/robots.txt" => ("text/plain", "User-agent: *\nDisallow: /private\n"),
                    "/" => ("text/html; charset=utf-8", HOME),
                    "/rooms.html" => ("text/html", ROOMS),
                    "/private/safe.html" => ("text/html", SAFE),
                    _ => return HttpResponse::NotFound().finish(),
                };
                HttpResponse::Ok().content_type(media).body(body)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), requested)
}

async fn active_bot(server: &TestServer) -> (String, String) {
    let jwt = register_owner(server, "web@example.com").await;
    let body = json!({"name": "web", "config": {"fallback_message": "No idea."}});
    let id = published_bot(server, &jwt, body).await;
    (jwt, id)
}

async fn ask(server: &TestServer, bot: &str, question: &str) -> String {
    let mut client = server.client().await;
    client.hello(bot).await;
    client.exchange("q", question).await.reply.tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_reads_allowed_same_site_pages_and_the_bot_answers_from_them() {
    let (base, requested) = site().await;
    let server = start_with(|s| s.knowledge.scrape_allow_private_targets = true).await;
    let (jwt, bot) = active_bot(&server).await;
    let (status, document) = server
        .post(
            &format!("/api/bots/{bot}/documents/scrape"),
            json!({"url": format!("{base}/"), "max_pages": 5, "max_depth": 1}),
            Some(&jwt),
        )
        .await;
    assert_eq!((status, document["type"].as_str()), (202, Some("WEB_PAGE")), "{document}");
    let id = document["id"].as_str().expect("id");
    let done = settled(&server, &jwt, &bot, id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    let paths = requested.lock().expect("log").clone();
    assert!(paths.contains(&"/robots.txt".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/rooms.html".to_owned()), "a same-site link is followed: {paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/private")), "robots.txt is honoured: {paths:?}");

    assert!(ask(&server, &bot, "when is breakfast served?").await.contains("from 7 to 10"));
    assert!(
        ask(&server, &bot, "do rooms have a balcony?").await.contains("balcony facing the lake")
    );
    assert_eq!(ask(&server, &bot, "what is the safe code?").await, "No idea.");

    // The only page disallowed: a clear failure.
    let (_, blocked) = server
        .post(
            &format!("/api/bots/{bot}/documents/scrape"),
            json!({"url": format!("{base}/private/safe.html")}),
            Some(&jwt),
        )
        .await;
    let failed = settled(&server, &jwt, &bot, blocked["id"].as_str().expect("id")).await;
    assert_eq!(failed["status"], "FAILED");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("robots.txt")), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_and_bad_requests_are_refused() {
    let (base, requested) = site().await;
    let server = start().await; // Private targets refused by default.
    let (jwt, bot) = active_bot(&server).await;
    let path = format!("/api/bots/{bot}/documents/scrape");
    let (_, document) = server.post(&path, json!({"url": format!("{base}/")}), Some(&jwt)).await;
    let failed = settled(&server, &jwt, &bot, document["id"].as_str().expect("id")).await;
    assert_eq!(failed["status"], "FAILED");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("not a public address")),
        "{failed}"
    );
    assert!(requested.lock().expect("log").is_empty(), "nothing was fetched");
    for (body, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "https://example.com/", "max_pages": 0}), "max_pages"),
        (json!({"url": "https://example.com/", "max_depth": 9}), "max_depth"),
    ] {
        let (status, answer) = server.post(&path, body.clone(), Some(&jwt)).await;
        assert_eq!((status, error_code(&answer)), (422, "validation_failed"), "{body}");
        assert_eq!(answer["error"]["details"]["field"], field);
    }
}
