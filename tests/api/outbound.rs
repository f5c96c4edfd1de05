//! Outbound requests stay where they belong: discovery, registration, agent calls and webhooks
//! never reach link-local or cloud-metadata addresses (literal, IPv4-mapped, by name, or through
//! a redirect) unless `--outbound-allow` names the host. A name that resolves to a blocked
//! address is refused by the resolver, which `src/agents/http.rs`'s unit tests drive with an
//! injected lookup (no offline name resolves there). 0.0.0.0 is blocked and, on Linux, reaches a
//! loopback listener: a server there proves that a refused request never left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::routing::get;
use baton::agents::builtin::BuiltinAgents;
use baton::agents::serve::{self, Versions};
use baton::store::StoreOptions;
use serde_json::{Value, json};

use crate::helpers::{assert_refused, serve_on_loopback, spawn_app, spawn_app_with, thread_of};

/// A loopback server that counts every request it gets and answers each with 404.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let base = serve_on_loopback(move |_| {
        Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::NOT_FOUND }
        })
    })
    .await;
    (port_of(&base), seen)
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {base}"))
}

#[tokio::test]
async fn discovering_a_metadata_or_link_local_address_is_422_without_a_request() {
    let app = spawn_app().await;
    let (port, seen) = counting_server().await;
    for (url, says) in [
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "cloud metadata",
        ),
        (
            "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
            "cloud metadata",
        ),
        ("http://2852039166/latest/".to_owned(), "cloud metadata"),
        ("http://[fd00:ec2::254]/".to_owned(), "cloud metadata"),
        ("http://100.100.100.200/".to_owned(), "cloud metadata"),
        ("http://169.254.10.1:8080/".to_owned(), "link-local"),
        ("http://[fe80::1]/".to_owned(), "link-local"),
        (
            "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
            "metadata host name",
        ),
        (format!("http://0.0.0.0:{port}/"), "this network"),
        (format!("http://[::]:{port}/"), "unspecified"),
    ] {
        for protocol in ["a2a", "mcp"] {
            let body = assert_refused(
                app.discover(&json!({"url": url, "protocol": protocol}))
                    .await,
                422,
                says,
            );
            let error = body["error"].as_str().expect("error");
            assert!(error.contains("--outbound-allow"), "{error}");
            assert!(
                !error.contains("cannot read") && !error.contains("cannot list"),
                "refused, not tried: {error}"
            );
        }
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "a refused URL is never requested"
    );
    // A card naming such a URL is refused at registration too.
    let card = json!({"id": "imds", "name": "IMDS", "url": "http://169.254.169.254/",
                      "description": "instance metadata",
                      "skills": [{"id": "s", "name": "s", "description": "s"}]});
    assert_refused(app.register(&card).await, 422, "cloud metadata");
    let (code, _) = app.get("/api/agents/imds").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_redirect_to_the_metadata_service_is_refused_not_followed() {
    let app = spawn_app().await;
    let (blocked_port, seen) = counting_server().await;
    let redirector = serve_on_loopback(move |_| {
        Router::new()
            .route(
                "/meta/.well-known/agent-card.json",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(LOCATION, "http://169.254.169.254/latest/meta-data/")],
                    )
                }),
            )
            .route(
                "/zero/.well-known/agent-card.json",
                get(move || async move {
                    (
                        StatusCode::FOUND,
                        [(LOCATION, format!("http://0.0.0.0:{blocked_port}/card.json"))],
                    )
                }),
            )
    })
    .await;
    for (path, says) in [("meta", "cloud metadata"), ("zero", "this network")] {
        let body = assert_refused(
            app.discover(&json!({"url": format!("{redirector}/{path}")}))
                .await,
            422,
            "refused to follow a redirect",
        );
        let error = body["error"].as_str().expect("error");
        assert!(error.contains(says), "{error}");
        assert!(!error.contains("cannot read"), "{error}");
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

/// The demo agents served over A2A on a loopback port; returns the port.
async fn demo_agents_on_loopback() -> u16 {
    let agents = Arc::new(BuiltinAgents::new(BTreeMap::new()));
    let base = serve_on_loopback(|base| {
        serve::router(base, agents, Versions::Both).expect("demo agents router")
    })
    .await;
    port_of(&base)
}

#[tokio::test]
async fn a_host_the_operator_allows_by_name_is_reached() {
    let port = demo_agents_on_loopback().await;
    let url = format!("http://0.0.0.0:{port}/weather");
    let closed = spawn_app_with(|s| s.no_demo_agents = true).await;
    assert_refused(
        closed.discover(&json!({ "url": url })).await,
        422,
        "this network",
    );
    let open = spawn_app_with(|s| {
        s.no_demo_agents = true;
        s.outbound_allow = vec!["0.0.0.0".into()];
    })
    .await;
    let (code, card) = open.discover(&json!({ "url": url })).await;
    assert_eq!(code, 201, "{card}");
    assert_eq!(card["protocol"], "a2a");
    // Named hosts only: another blocked address is still refused.
    assert_refused(
        open.discover(&json!({"url": "http://169.254.169.254/"}))
            .await,
        422,
        "cloud metadata",
    );
}

#[tokio::test]
async fn an_agent_whose_card_points_at_a_blocked_address_fails_cleanly_without_retries() {
    // Such a card cannot be registered any more; one stored before (or under another
    // --outbound-allow) is still in the store.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("baton.db").display());
    let store = baton::store::connect(&url, &StoreOptions::default())
        .await
        .expect("store");
    let card = baton::directory::register::parse_card(json!({
        "id": "imds", "name": "Metadata weather", "url": "http://169.254.169.254/latest/",
        "protocolVersion": "1.0", "rating": 5.0, "description": "Weather forecasts for Paris",
        "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                    "tags": ["weather", "forecast", "paris"]}]
    }))
    .expect("a card");
    store.put_agent(&card).await.expect("stored");
    drop(store);

    let app = spawn_app_with(move |s| {
        s.database_url = url;
        s.no_demo_agents = true;
        s.agent_attempts = 3;
    })
    .await;
    let reply = app.chat("What's the weather in Paris").await;
    assert_eq!(reply["status"], "completed", "{reply}");
    assert_eq!(reply["task_agent_pairs"][0]["primary"]["id"], "imds");
    let result: Value = app.state_of(&thread_of(&reply)).await["results"]["t1"].clone();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["attempts"], 1, "a refusal is not retried: {result}");
    let output = result["output"].as_str().expect("output");
    assert!(output.contains("cloud metadata"), "{output}");
}

#[tokio::test]
async fn a_webhook_to_a_blocked_address_is_422_at_start() {
    let app = spawn_app().await;
    for (n, webhook) in [
        "http://169.254.169.254/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://metadata.google.internal/hook",
        "http://[fe80::1]:8080/hook",
    ]
    .into_iter()
    .enumerate()
    {
        let thread = format!("blocked-hook-{n}");
        let body = assert_refused(
            app.post(
                "/api/chat",
                &json!({"prompt": "What is the weather in Oslo", "thread_id": thread,
                        "webhook": webhook}),
            )
            .await,
            422,
            "webhook",
        );
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("--outbound-allow")),
            "{body}"
        );
        let (code, _) = app.status_of(&thread).await;
        assert_eq!(code, 404, "no thread started for {webhook}");
    }
}
