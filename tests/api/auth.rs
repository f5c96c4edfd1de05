//! Authentication and ownership through the real binary with a keys file made by `baton keys
//! add`: which routes need a key, 401s, tokens for streams, the keys file re-read on SIGHUP, the
//! loopback rule without keys, the metrics token, Baton's card and OpenAPI document declaring the
//! scheme.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{ServerProcess, eventually, http, temp_db};

/// Runs `baton keys add NAME [--admin] --api-keys-file PATH`; returns the printed key.
fn add_key(path: &Path, name: &str, admin: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .args(["keys", "add", name, "--api-keys-file"])
        .arg(path);
    if admin {
        command.arg("--admin");
    }
    let output = command.output().expect("baton keys add runs");
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(key.starts_with("baton_"), "{key}");
    key
}

/// A server with a keys file holding alice and bob (users) and root (admin).
pub struct Keyed {
    pub server: ServerProcess,
    pub alice: String,
    pub bob: String,
    pub root: String,
    pub keys_file: PathBuf,
    _dir: TempDir,
}

impl Keyed {
    pub fn start(extra: &[&str]) -> Keyed {
        let (dir, db) = temp_db();
        let keys_file = dir.path().join("keys");
        let alice = add_key(&keys_file, "alice", false);
        let bob = add_key(&keys_file, "bob", false);
        let root = add_key(&keys_file, "root", true);
        let file = keys_file.to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--api-keys-file", file.as_str()];
        args.extend_from_slice(extra);
        let server = ServerProcess::start(&db, &args);
        Keyed {
            server,
            alice,
            bob,
            root,
            keys_file,
            _dir: dir,
        }
    }
}

/// Sends `method path` with `key` as the bearer (none: no header); returns status, headers and
/// the JSON body (`Null` when the body is not JSON).
pub async fn call(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http().request(method, format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Asserts a 401 as the brief wants it: JSON `ErrorBody` with a request id and
/// `WWW-Authenticate: Bearer`.
fn assert_401(reply: &(u16, reqwest::header::HeaderMap, Value), what: &str) {
    let (status, headers, body) = reply;
    assert_eq!(*status, 401, "{what}: {body}");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{what}"
    );
    assert_eq!(body["status"], "error", "{what}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    assert!(body["request_id"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn keys_guard_every_route_but_the_open_ones() {
    let keyed = Keyed::start(&[]);
    let base = &keyed.server.base;
    for path in [
        "/api/health",
        "/health",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/",
        "/console/api.js",
        "/.well-known/agent-card.json",
    ] {
        let (status, _, body) = call(base, "GET", path, None, None).await;
        assert_eq!(status, 200, "{path} is open: {body}");
    }
    for (method, path) in [
        ("GET", "/api/threads"),
        ("POST", "/api/chat"),
        ("POST", "/api/chat/continue"),
        ("GET", "/api/chat/status/t-1"),
        ("GET", "/api/threads/t-1/events"),
        ("GET", "/api/agents"),
        ("GET", "/api/agents/search?q=weather"),
        ("POST", "/api/agents"),
        ("POST", "/api/auth/token"),
        ("POST", "/a2a"),
        ("GET", "/ws/chat"),
        ("GET", "/no/such/route"),
    ] {
        assert_401(
            &call(base, method, path, None, Some(json!({}))).await,
            &format!("{method} {path} without a key"),
        );
        assert_401(
            &call(base, method, path, Some("baton_0000"), Some(json!({}))).await,
            &format!("{method} {path} with a wrong key"),
        );
    }
    for key in [&keyed.alice, &keyed.bob, &keyed.root] {
        let (status, _, body) = call(base, "GET", "/api/threads", Some(key), None).await;
        assert_eq!(status, 200, "{body}");
    }

    // A token, minted with a key, names its owner and opens the streams from the query only.
    let (status, _, token) = call(base, "POST", "/api/auth/token", Some(&keyed.alice), None).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["owner"], "alice");
    assert_eq!(token["role"], "user");
    let token = token["access_token"].as_str().expect("token").to_owned();
    let (status, _, body) = call(
        base,
        "POST",
        "/api/chat",
        Some(&keyed.alice),
        Some(json!({"prompt": "weather in Paris", "thread_id": "alice-1"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let response = http()
        .get(format!(
            "{base}/api/threads/alice-1/events?access_token={token}"
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    drop(response);
    assert_401(
        &call(
            base,
            "GET",
            &format!("/api/threads?access_token={token}"),
            None,
            None,
        )
        .await,
        "a token in the query of a route that is not a stream",
    );
    let (status, _, _) = call(base, "GET", "/api/threads", Some(&token), None).await;
    assert_eq!(status, 200, "a token works as a bearer header too");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws/chat?access_token={token}",
        base.replacen("http", "ws", 1)
    ))
    .await
    .expect("a WebSocket with a token in its query connects");
    socket.close(None).await.expect("closed");
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/ws/chat?access_token={}x",
        base.replacen("http", "ws", 1),
        &token[..token.len() - 1]
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        other => panic!("a WebSocket with a bad token must be refused with 401: {other:?}"),
    }

    // Baton's card and the OpenAPI document say what to send.
    let (_, _, card) = call(base, "GET", "/.well-known/agent-card.json", None, None).await;
    assert_eq!(
        card["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{card}"
    );
    assert_eq!(
        card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
        "Bearer"
    );
    assert_eq!(card["security"], json!([{"bearer": []}]));
    assert_eq!(
        card["securityRequirements"],
        json!([{"schemes": {"bearer": {"list": []}}}])
    );
    let (_, _, doc) = call(base, "GET", "/openapi.json", None, None).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/api/health"]["get"]["security"], json!([{}]));
}

#[tokio::test]
async fn sighup_rereads_the_keys_and_a_bad_file_keeps_the_previous_ones() {
    let keyed = Keyed::start(&[]);
    let base = keyed.server.base.clone();
    let carol = add_key(&keyed.keys_file, "carol", false);
    let (status, _, _) = call(&base, "GET", "/api/threads", Some(&carol), None).await;
    assert_eq!(status, 401, "a key added after start-up waits for SIGHUP");
    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &keyed.server.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    hangup();
    eventually("carol's key accepted", Duration::from_secs(10), || {
        let base = base.clone();
        let carol = carol.clone();
        async move {
            let (status, _, _) = call(&base, "GET", "/api/threads", Some(&carol), None).await;
            (status == 200).then_some(())
        }
    })
    .await;
    // A broken file is not taken: every previous key still works, carol's too.
    std::fs::write(&keyed.keys_file, "this is not a keys file\n").expect("written");
    hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for key in [&keyed.alice, &keyed.root, &carol] {
        let (status, _, _) = call(&base, "GET", "/api/threads", Some(key), None).await;
        assert_eq!(status, 200);
    }
    // A file without alice's line, once read, drops her key.
    let remaining: String = std::fs::read_to_string(&keyed.keys_file).unwrap_or_default();
    assert!(remaining.starts_with("this is not"));
    let only_root = {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k");
        let root2 = add_key(&path, "root2", true);
        std::fs::copy(&path, &keyed.keys_file).expect("copied");
        root2
    };
    hangup();
    eventually("alice's key dropped", Duration::from_secs(10), || {
        let base = base.clone();
        let alice = keyed.alice.clone();
        async move {
            let (status, _, _) = call(&base, "GET", "/api/threads", Some(&alice), None).await;
            (status == 401).then_some(())
        }
    })
    .await;
    let (status, _, _) = call(&base, "GET", "/api/threads", Some(&only_root), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_keys_only_loopback_unless_insecure() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let refused = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--addr", "0.0.0.0:0", "--database-url", &url])
        .env("BATON_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("baton runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--api-keys-file") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--addr", "0.0.0.0:0", "--database-url", &url])
        .arg("--insecure-no-auth")
        .env("BATON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton starts");
    let line = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("line");
        line
    };
    let _ = child.kill();
    let output = child.wait_with_output().expect("reaped");
    assert!(
        line.starts_with("baton listening on http://0.0.0.0:"),
        "{line}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AUTHENTICATION IS OFF"), "{stderr}");
}

#[tokio::test]
async fn the_metrics_token_guards_metrics_alone() {
    let keyed = Keyed::start(&["--metrics-token", "scrape-me"]);
    let base = &keyed.server.base;
    assert_401(
        &call(base, "GET", "/metrics", None, None).await,
        "metrics without its token",
    );
    assert_401(
        &call(base, "GET", "/metrics", Some(&keyed.root), None).await,
        "an API key is not the metrics token",
    );
    let response = http()
        .get(format!("{base}/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .expect("scraped");
    assert_eq!(response.status().as_u16(), 200);
    let (status, _, _) = call(base, "GET", "/api/health", None, None).await;
    assert_eq!(status, 200);
}
