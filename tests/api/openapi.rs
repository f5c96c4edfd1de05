//! The OpenAPI document against the real server: every route of the router is in it, a normal
//! flow's every answer (route, status, content type) is documented, `/docs` needs nothing from
//! elsewhere, and schemathesis (from the Python venv) finds no response that breaks it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{ServerProcess, http, python, spawn_app_with, temp_db};

/// How to get schemathesis, for the failure message.
const SCHEMATHESIS_INSTALL: &str = "schemathesis is needed: run .ci/run, or \
    `target/py-a2a/bin/pip install -r tests/python/requirements.txt`";

/// One answer as the document is asked about it.
struct Seen {
    method: &'static str,
    template: &'static str,
    status: u16,
    content_type: String,
}

/// One request of a flow: method, route template, path, body, and the status it must get.
type Step = (&'static str, &'static str, String, Option<Vec<u8>>, u16);

/// Sends a request; returns what the document is checked against, and the body.
async fn call(
    base: &str,
    method: &'static str,
    template: &'static str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (Seen, Vec<u8>) {
    let url = format!("{base}{path}");
    let client = http();
    let request = match method {
        "get" => client.get(url),
        "post" => client.post(url),
        "delete" => client.delete(url),
        other => panic!("no method {other}"),
    };
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(body),
        None => request,
    };
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // An event stream never ends: its headers are what is checked.
    let bytes = if content_type.starts_with("text/event-stream") {
        Vec::new()
    } else {
        response.bytes().await.expect("body").to_vec()
    };
    let seen = Seen {
        method,
        template,
        status,
        content_type,
    };
    (seen, bytes)
}

/// Whether the document names this route, method and status, with this content type (the
/// media type only: `application/json`, `text/event-stream`, …).
fn documented(doc: &Value, seen: &Seen) -> Result<(), String> {
    let operation = &doc["paths"][seen.template][seen.method];
    if !operation.is_object() {
        return Err(format!(
            "{} {} is not in the document",
            seen.method, seen.template
        ));
    }
    let response = &operation["responses"][seen.status.to_string()];
    if !response.is_object() {
        return Err(format!(
            "{} {} answered {}, which the document does not name",
            seen.method, seen.template, seen.status
        ));
    }
    let media = seen
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let content = response.get("content").and_then(Value::as_object);
    let ok = match content {
        None => media.is_empty(),
        Some(content) => content.contains_key(media),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} {} answered {} as {media:?}; the document says {:?}",
            seen.method,
            seen.template,
            seen.status,
            content.map(|c| c.keys().collect::<Vec<_>>())
        ))
    }
}

#[tokio::test]
async fn a_normal_flow_sees_only_documented_routes_statuses_and_content_types() {
    let app = spawn_app_with(|s| s.max_body_bytes = 4096).await;
    let base = app.base();
    let (seen, bytes) = call(&base, "get", "/openapi.json", "/openapi.json", None).await;
    assert_eq!(seen.status, 200);
    let doc: Value = serde_json::from_slice(&bytes).expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut problems = vec![documented(&doc, &seen)];
    let json = |value: Value| Some(value.to_string().into_bytes());

    // A conversation that asks, is answered, and finishes.
    let (seen, bytes) = call(
        &base,
        "post",
        "/api/chat",
        "/api/chat",
        json(json!({"prompt": "Help me analyze data but I need guidance"})),
    )
    .await;
    assert_eq!(seen.status, 200);
    problems.push(documented(&doc, &seen));
    let started: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(started["status"], "pending_user_input", "{started}");
    let thread = started["thread_id"].as_str().expect("thread id").to_owned();
    let answer = json(json!({"thread_id": thread, "response": "I want to analyze sales data"}));

    let flow: Vec<Step> = vec![
        (
            "get",
            "/api/chat/status/{thread_id}",
            format!("/api/chat/status/{thread}"),
            None,
            200,
        ),
        (
            "post",
            "/api/chat/continue",
            "/api/chat/continue".into(),
            answer.clone(),
            200,
        ),
        // Answered already: nothing waits.
        (
            "post",
            "/api/chat/continue",
            "/api/chat/continue".into(),
            answer,
            409,
        ),
        (
            "post",
            "/api/chat",
            "/api/chat".into(),
            json(json!({"prompt": "  "})),
            422,
        ),
        (
            "post",
            "/api/chat",
            "/api/chat".into(),
            Some(b"{not json".to_vec()),
            400,
        ),
        (
            "post",
            "/api/chat",
            "/api/chat".into(),
            json(json!({"prompt": "x".repeat(8192)})),
            413,
        ),
        (
            "get",
            "/api/chat/status/{thread_id}",
            "/api/chat/status/no-such-thread".into(),
            None,
            404,
        ),
        (
            "get",
            "/api/threads/{thread_id}/checkpoint",
            format!("/api/threads/{thread}/checkpoint"),
            None,
            200,
        ),
        (
            "get",
            "/api/threads/{thread_id}/history",
            format!("/api/threads/{thread}/history"),
            None,
            200,
        ),
        (
            "get",
            "/api/threads/{thread_id}/checkpoints/{version}",
            format!("/api/threads/{thread}/checkpoints/1"),
            None,
            200,
        ),
        (
            "get",
            "/api/threads/{thread_id}/checkpoints/{version}",
            format!("/api/threads/{thread}/checkpoints/one"),
            None,
            422,
        ),
        (
            "get",
            "/api/threads/{thread_id}/checkpoints/{version}",
            format!("/api/threads/{thread}/checkpoints/9999"),
            None,
            404,
        ),
        (
            "get",
            "/api/threads/{thread_id}/events",
            format!("/api/threads/{thread}/events?last_event_id=0"),
            None,
            200,
        ),
        (
            "get",
            "/api/threads/{thread_id}/events",
            "/api/threads/no-such-thread/events".into(),
            None,
            404,
        ),
        (
            "post",
            "/api/threads/{thread_id}/cancel",
            format!("/api/threads/{thread}/cancel"),
            None,
            200,
        ),
        (
            "post",
            "/api/threads/{thread_id}/cancel",
            "/api/threads/no%20such%20thread/cancel".into(),
            None,
            422,
        ),
        (
            "get",
            "/api/threads",
            "/api/threads?limit=5".into(),
            None,
            200,
        ),
        (
            "get",
            "/api/threads",
            "/api/threads?status=sleeping".into(),
            None,
            422,
        ),
        (
            "get",
            "/api/threads/{thread_id}/webhooks",
            format!("/api/threads/{thread}/webhooks"),
            None,
            200,
        ),
        (
            "get",
            "/api/threads/{thread_id}/webhooks",
            "/api/threads/no-such-thread/webhooks".into(),
            None,
            404,
        ),
        (
            "post",
            "/api/threads/{thread_id}/fork",
            format!("/api/threads/{thread}/fork"),
            json(json!({"version": 1, "thread_id": "forked-1"})),
            201,
        ),
        (
            "post",
            "/api/threads/{thread_id}/fork",
            format!("/api/threads/{thread}/fork"),
            json(json!({"version": 1, "thread_id": "forked-1"})),
            409,
        ),
        (
            "delete",
            "/api/chat/{thread_id}",
            "/api/chat/forked-1".into(),
            None,
            200,
        ),
        (
            "delete",
            "/api/chat/{thread_id}",
            "/api/chat/forked-1".into(),
            None,
            404,
        ),
        (
            "delete",
            "/api/threads/{thread_id}",
            format!("/api/threads/{thread}"),
            None,
            204,
        ),
        // The directory.
        ("get", "/api/agents", "/api/agents".into(), None, 200),
        (
            "get",
            "/api/agents/{id}",
            "/api/agents/demo.weather".into(),
            None,
            200,
        ),
        (
            "get",
            "/api/agents/{id}",
            "/api/agents/nobody".into(),
            None,
            404,
        ),
        (
            "get",
            "/api/agents/search",
            "/api/agents/search?q=weather&limit=3".into(),
            None,
            200,
        ),
        (
            "get",
            "/api/agents/search",
            "/api/agents/search?limit=-1".into(),
            None,
            422,
        ),
        (
            "post",
            "/api/agents/{id}/rate",
            "/api/agents/demo.weather/rate".into(),
            json(json!({"rating": 4})),
            200,
        ),
        (
            "post",
            "/api/agents/{id}/rate",
            "/api/agents/demo.weather/rate".into(),
            json(json!({"rating": 7})),
            422,
        ),
        (
            "post",
            "/api/agents",
            "/api/agents".into(),
            json(
                json!({"id": "echo", "name": "Echo", "description": "Repeats",
                        "url": "http://127.0.0.1:9/", "skills": []}),
            ),
            201,
        ),
        (
            "delete",
            "/api/agents/{id}",
            "/api/agents/echo".into(),
            None,
            204,
        ),
        (
            "delete",
            "/api/agents/{id}",
            "/api/agents/echo".into(),
            None,
            404,
        ),
        (
            "post",
            "/api/agents/discover",
            "/api/agents/discover".into(),
            json(json!({"url": "ftp://example.invalid/"})),
            422,
        ),
        // Health, Baton as an agent, the docs.
        ("get", "/api/health", "/api/health".into(), None, 200),
        ("get", "/health", "/health".into(), None, 200),
        ("get", "/metrics", "/metrics".into(), None, 200),
        (
            "get",
            "/.well-known/agent-card.json",
            "/.well-known/agent-card.json".into(),
            None,
            200,
        ),
        (
            "post",
            "/a2a",
            "/a2a".into(),
            json(json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get",
                        "params": {"id": format!("{thread}:0")}})),
            200,
        ),
        ("get", "/docs", "/docs".into(), None, 200),
    ];
    let mut statuses = BTreeSet::new();
    for (method, template, path, body, expected) in flow {
        let (seen, bytes) = call(&base, method, template, &path, body).await;
        assert_eq!(
            seen.status,
            expected,
            "{method} {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        statuses.insert(seen.status);
        problems.push(documented(&doc, &seen));
    }
    let problems: Vec<String> = problems.into_iter().filter_map(Result::err).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        statuses,
        BTreeSet::from([200, 201, 204, 400, 404, 409, 413, 422]),
        "the flow covers these statuses"
    );
}

/// The routes `api::router` declares, read from its source: (path, method) pairs.
fn router_routes() -> BTreeSet<(String, String)> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"))
            .expect("src/api/mod.rs");
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        // The route's own text ends where the next builder call starts.
        let chunk = chunk.split(".fallback(").next().unwrap_or(chunk);
        let chunk = chunk.split(".layer(").next().unwrap_or(chunk);
        let trimmed = chunk.trim_start();
        let path = if let Some(rest) = trimmed.strip_prefix('"') {
            rest.split('"').next().unwrap_or_default().to_owned()
        } else if trimmed.starts_with("a2a::RPC_PATH") {
            baton::api::a2a::RPC_PATH.to_owned()
        } else {
            panic!("a route whose path this test cannot read: {trimmed:.60}");
        };
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = chunk.contains(&format!(" {method}("))
                || chunk.contains(&format!("({method}("))
                || chunk.contains(&format!(".{method}("));
            if called {
                routes.insert((path.clone(), method.to_owned()));
            }
        }
    }
    routes
}

/// Routes of the router that are not API operations, so not in the document: the WebSocket (an
/// upgrade has no OpenAPI description) and the web console's page and assets (HTML, scripts and
/// styles for a browser; `tests/api/console.rs` checks them).
const NOT_OPERATIONS: [(&str, &str); 3] = [
    ("/ws/chat", "get"),
    ("/", "get"),
    ("/console/{asset}", "get"),
];

#[test]
fn every_route_of_the_router_is_in_the_document_but_the_websocket_and_the_console() {
    let doc = baton::api::openapi::document_json().expect("serializes");
    let routes = router_routes();
    assert!(
        routes.contains(&("/api/chat".to_owned(), "post".to_owned())),
        "the router's source was not read: {routes:?}"
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((path.clone(), method.clone()));
        }
    }
    let excluded: BTreeSet<(String, String)> = NOT_OPERATIONS
        .iter()
        .map(|(path, method)| ((*path).to_owned(), (*method).to_owned()))
        .collect();
    assert!(
        excluded.is_subset(&routes),
        "an excluded route is no longer in the router: {excluded:?}"
    );
    let missing: Vec<_> = routes
        .iter()
        .filter(|r| !excluded.contains(*r) && !documented.contains(*r))
        .collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        extra.is_empty(),
        "operations the router does not have: {extra:?}"
    );
}

#[tokio::test]
async fn the_docs_page_needs_nothing_from_elsewhere_and_renders_text_as_text() {
    let app = spawn_app_with(|_| {}).await;
    let response = http().get(app.url("/docs")).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("body");
    assert!(
        page.contains("fetch(\"openapi.json\")"),
        "renders the document"
    );
    for outside in ["http://", "https://", "<link", "src="] {
        assert!(
            !page.contains(outside),
            "the page refers elsewhere: {outside}"
        );
    }
    assert!(
        !page.contains("innerHTML") && !page.contains("insertAdjacentHTML"),
        "text from the document is never parsed as HTML"
    );
}

#[tokio::test]
async fn schemathesis_finds_no_response_that_breaks_the_document() {
    let (dir, db) = temp_db();
    // Demo agents on; agent URLs limited to a closed loopback port, so that no generated URL
    // (registered or discovered) makes Baton call anything off this machine.
    let server = ServerProcess::start(&db, &["--agent-url-allow", "127.0.0.1:9"]);
    schemathesis(&server, dir.path(), None).await;
    drop(server);
}

/// The same with API keys on, as a user key (its directory changes are 403s) and without one
/// (every guarded operation a 401): each response as the document says.
#[tokio::test]
async fn schemathesis_finds_no_response_that_breaks_the_document_with_keys() {
    let (dir, db) = temp_db();
    let keys = dir.path().join("keys");
    let output = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["keys", "add", "fuzzer", "--api-keys-file"])
        .arg(&keys)
        .output()
        .expect("baton keys add runs");
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let keys = keys.to_str().expect("utf-8 path").to_owned();
    let server = ServerProcess::start(
        &db,
        &["--agent-url-allow", "127.0.0.1:9", "--api-keys-file", &keys],
    );
    schemathesis(&server, dir.path(), Some(&key)).await;
    schemathesis(&server, dir.path(), None).await;
    drop(server);
}

/// Runs schemathesis against `server`'s document, sending `key` as the bearer if given.
async fn schemathesis(server: &ServerProcess, dir: &std::path::Path, key: Option<&str>) {
    let schema = format!("{}/openapi.json", server.base);
    let python = python();
    let work = dir.to_owned();
    let header = key.map(|key| format!("Authorization: Bearer {key}"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "schemathesis.cli", "run", &schema])
            .args(header.iter().flat_map(|h| ["--header", h.as_str()]))
            .args(["--seed", "20261126", "--max-examples", "50"])
            // One worker: CPython 3.11's `ast.parse` is not thread-safe ("AST constructor
            // recursion depth mismatch"), and Hypothesis calls it while generating. A request
            // may take 30 s: a run of the demo agents on a debug build, beside the whole suite on
            // two cores, is slow, and a timeout is no response that breaks the document.
            .args(["--request-timeout", "30", "--workers", "1"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,unsupported_method",
            ])
            // The event stream never ends by itself: no request to it could finish.
            .args(["--exclude-path", "/api/threads/{thread_id}/events"])
            .env("NO_COLOR", "1")
            // Hypothesis keeps its example database in the working directory.
            .current_dir(&work)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} did not start ({e}); {SCHEMATHESIS_INSTALL}",
                    python.display()
                )
            })
    })
    .await
    .expect("schemathesis ran");
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis failed ({}); {SCHEMATHESIS_INSTALL} if it is missing:\n{printed}",
        output.status
    );
    // Its summary says "N generated, N passed": N must be a number above zero (a substring test
    // for "0 generated" also matched 1910).
    let generated: u64 = printed
        .lines()
        .find_map(|line| {
            let (count, _) = line.trim().split_once(" generated, ")?;
            count.trim().parse().ok()
        })
        .unwrap_or(0);
    assert!(
        printed.contains("passed") && generated > 0,
        "schemathesis ran no test:\n{printed}"
    );
    // The count, for the log of a passing run.
    for line in printed.lines().filter(|l| l.contains(" generated, ")) {
        eprintln!("schemathesis: {}", line.trim());
    }
}
