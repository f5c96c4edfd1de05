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
    /// The database and extra flags, to start the server again on them.
    url: String,
    extra: Vec<String>,
    _dir: TempDir,
}

impl Keyed {
    /// On a fresh SQLite file.
    pub fn start(extra: &[&str]) -> Keyed {
        let (dir, db) = temp_db();
        let url = format!("sqlite://{}", db.display());
        Self::start_in(dir, &url, extra)
    }

    /// On the database at `url`.
    pub fn start_url(url: &str, extra: &[&str]) -> Keyed {
        Self::start_in(tempfile::tempdir().expect("temp dir"), url, extra)
    }

    fn start_in(dir: TempDir, url: &str, extra: &[&str]) -> Keyed {
        let keys_file = dir.path().join("keys");
        let alice = add_key(&keys_file, "alice", false);
        let bob = add_key(&keys_file, "bob", false);
        let root = add_key(&keys_file, "root", true);
        let server = Self::serve(url, &keys_file, extra);
        Keyed {
            server,
            alice,
            bob,
            root,
            keys_file,
            url: url.to_owned(),
            extra: extra.iter().map(|flag| (*flag).to_owned()).collect(),
            _dir: dir,
        }
    }

    fn serve(url: &str, keys_file: &Path, extra: &[&str]) -> ServerProcess {
        let file = keys_file.to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--api-keys-file", file.as_str()];
        args.extend_from_slice(extra);
        ServerProcess::start_url(url, &args)
    }

    /// Kills the server with SIGKILL and starts it again on the same database and keys file.
    pub fn kill9_and_restart(self) -> Keyed {
        let Keyed { server, .. } = self;
        server.kill9();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        Keyed {
            server: Self::serve(&self.url, &self.keys_file, &extra),
            ..self
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

/// Starts thread `thread_id` with `prompt` as `key`; asserts a 200 and answers the body.
async fn start_as(base: &str, key: &str, thread_id: &str, prompt: &str) -> Value {
    let (status, _, body) = call(
        base,
        "POST",
        "/api/chat",
        Some(key),
        Some(json!({"prompt": prompt, "thread_id": thread_id})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
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
    start_as(base, &keyed.alice, "alice-1", "weather in Paris").await;
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
    for status in ["401", "429"] {
        assert!(
            doc["paths"]["/api/threads"]["get"]["responses"][status].is_object(),
            "{status} is documented"
        );
    }
    assert!(doc["paths"]["/api/agents"]["post"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/api/health"]["get"]["responses"]["401"].is_null());
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

/// The statuses one route gives alice (the owner), bob (another user), root (an admin) and a
/// caller without a key.
struct Row {
    method: &'static str,
    path: String,
    body: Option<Value>,
    owner: u16,
    admin: u16,
}

/// A JSON-RPC call to `/a2a` (v1.0) as `key`; the response, or for a stream its first event.
async fn a2a(base: &str, key: &str, method: &str, params: Value) -> Value {
    let response = http()
        .post(format!("{base}/a2a"))
        .bearer_auth(key)
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200, "{method}");
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(json.trim()).expect("a JSON-RPC response")
}

/// The `error` a 404 for a thread says, with the thread's id taken out: the same words for
/// another key's thread as for one that never existed.
fn not_found_words(body: &Value, thread: &str) -> String {
    body["error"]
        .as_str()
        .unwrap_or_default()
        .replace(thread, "ID")
}

async fn every_thread_route_hides_other_keys_threads(keyed: Keyed) {
    let base = keyed.server.base.clone();
    let base = base.as_str();
    let (alice, bob, root) = (
        keyed.alice.as_str(),
        keyed.bob.as_str(),
        keyed.root.as_str(),
    );
    let waiting = start_as(
        base,
        alice,
        "a-wait",
        "Help me analyze data but I need guidance",
    )
    .await;
    assert_eq!(waiting["status"], "pending_user_input");
    let done = start_as(base, alice, "a-done", "What's the weather in Paris").await;
    assert_eq!(done["status"], "completed");
    start_as(base, bob, "b-done", "What's the weather in Oslo").await;

    // Reads: the owner and an admin see the thread; to bob it does not exist; without a key, 401.
    let mut rows = Vec::new();
    for (path, ok) in [
        ("/api/chat/status/{}", 200),
        ("/api/threads/{}/checkpoint", 200),
        ("/api/threads/{}/history", 200),
        ("/api/threads/{}/checkpoints/1", 200),
        ("/api/threads/{}/turns", 200),
        ("/api/threads/{}/webhooks", 200),
    ] {
        rows.push(Row {
            method: "GET",
            path: path.replace("{}", "a-done"),
            body: None,
            owner: ok,
            admin: ok,
        });
    }
    for row in &rows {
        let what = format!("{} {}", row.method, row.path);
        let (status, _, body) =
            call(base, row.method, &row.path, Some(alice), row.body.clone()).await;
        assert_eq!(status, row.owner, "alice: {what}: {body}");
        let (status, _, body) =
            call(base, row.method, &row.path, Some(root), row.body.clone()).await;
        assert_eq!(status, row.admin, "root: {what}: {body}");
        let (status, _, hidden) =
            call(base, row.method, &row.path, Some(bob), row.body.clone()).await;
        assert_eq!(status, 404, "bob: {what}: {hidden}");
        let missing_path = row.path.replace("a-done", "never-was");
        let (status, _, missing) =
            call(base, row.method, &missing_path, Some(bob), row.body.clone()).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(
            not_found_words(&hidden, "a-done"),
            not_found_words(&missing, "never-was"),
            "bob learns nothing from {what}"
        );
        assert_401(
            &call(base, row.method, &row.path, None, row.body.clone()).await,
            &what,
        );
    }

    // The event stream, with and without waiting; a token of bob's in the query is bob.
    for query in ["", "?wait=true"] {
        let path = format!("/api/threads/a-done/events{query}");
        let (status, _, _) = call(base, "GET", &path, Some(bob), None).await;
        assert_eq!(status, 404, "bob: {path}");
        let response = http()
            .get(format!("{base}{path}"))
            .bearer_auth(alice)
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status().as_u16(), 200, "alice: {path}");
    }
    let (_, _, bobs) = call(base, "POST", "/api/auth/token", Some(bob), None).await;
    let bobs = bobs["access_token"].as_str().expect("token");
    let (status, _, _) = call(
        base,
        "GET",
        &format!("/api/threads/a-done/events?access_token={bobs}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Changes by bob: every one 404, and the thread is as it was.
    for (method, path, body) in [
        (
            "POST",
            "/api/chat/continue".to_owned(),
            Some(json!({"thread_id": "a-wait", "response": "sales data"})),
        ),
        (
            "POST",
            "/api/chat".to_owned(),
            Some(json!({"thread_id": "a-done", "prompt": "and in Rome?"})),
        ),
        ("POST", "/api/threads/a-wait/cancel".to_owned(), None),
        (
            "POST",
            "/api/threads/a-done/fork".to_owned(),
            Some(json!({"version": 1})),
        ),
        ("DELETE", "/api/threads/a-done".to_owned(), None),
        ("DELETE", "/api/chat/a-done".to_owned(), None),
    ] {
        let (status, _, body) = call(base, method, &path, Some(bob), body).await;
        assert_eq!(status, 404, "bob: {method} {path}: {body}");
    }
    let (_, _, still) = call(base, "GET", "/api/chat/status/a-wait", Some(alice), None).await;
    assert_eq!(still["status"], "pending_user_input", "{still}");
    let (_, _, still) = call(base, "GET", "/api/chat/status/a-done", Some(alice), None).await;
    assert_eq!(still["status"], "completed", "{still}");
    let (_, _, history) = call(
        base,
        "GET",
        "/api/threads/a-done/history",
        Some(alice),
        None,
    )
    .await;
    let versions = history.as_array().map_or(0, Vec::len);

    // Forks belong to whoever forked, and only the owner or an admin may fork.
    let (status, _, fork) = call(
        base,
        "POST",
        "/api/threads/a-done/fork",
        Some(alice),
        Some(json!({"version": 1, "thread_id": "a-fork"})),
    )
    .await;
    assert_eq!(status, 201, "{fork}");
    let (status, _, fork) = call(
        base,
        "POST",
        "/api/threads/a-done/fork",
        Some(root),
        Some(json!({"version": 1, "thread_id": "root-fork"})),
    )
    .await;
    assert_eq!(status, 201, "{fork}");
    for (key, thread, seen) in [
        (alice, "a-fork", 200),
        (bob, "a-fork", 404),
        (alice, "root-fork", 404),
        (root, "a-fork", 200),
    ] {
        let (status, _, _) = call(
            base,
            "GET",
            &format!("/api/chat/status/{thread}"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(status, seen, "{thread}");
    }

    // Lists: each user sees their own threads; an admin sees all.
    for (key, expected) in [
        (alice, vec!["a-done", "a-fork", "a-wait"]),
        (bob, vec!["b-done"]),
        (
            root,
            vec!["a-done", "a-fork", "a-wait", "b-done", "root-fork"],
        ),
    ] {
        let (status, _, page) = call(base, "GET", "/api/threads?limit=100", Some(key), None).await;
        assert_eq!(status, 200);
        let mut ids: Vec<&str> = page["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .filter_map(|t| t["thread_id"].as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, expected);
        let (_, _, waiting) = call(
            base,
            "GET",
            "/api/threads?status=pending_user_input",
            Some(key),
            None,
        )
        .await;
        let waiting = waiting["threads"].as_array().map_or(0, Vec::len);
        assert_eq!(waiting, usize::from(key != bob), "waiting threads listed");
    }

    // A2A: bob's GetTask, ListTasks, CancelTask, SubscribeToTask and a message in alice's
    // context all find nothing.
    let task = "a-wait:0";
    for (method, params) in [
        ("GetTask", json!({"id": task})),
        ("CancelTask", json!({"id": task})),
        ("SubscribeToTask", json!({"id": task})),
        (
            "SendMessage",
            json!({"message": {"messageId": "m-bob", "role": "ROLE_USER", "contextId": "a-done", "parts": [{"text": "weather in Rome"}]}}),
        ),
        (
            "SendMessage",
            json!({"message": {"messageId": "m-bob2", "role": "ROLE_USER", "taskId": task, "parts": [{"text": "sales data"}]}}),
        ),
    ] {
        let reply = a2a(base, bob, method, params).await;
        assert_eq!(reply["error"]["code"], -32001, "bob: {method}: {reply}");
    }
    let listed = a2a(base, bob, "ListTasks", json!({"contextId": "a-done"})).await;
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
    let listed = a2a(base, alice, "ListTasks", json!({"contextId": "a-done"})).await;
    assert_eq!(
        listed["result"]["tasks"].as_array().map_or(0, Vec::len),
        1,
        "{listed}"
    );
    let got = a2a(base, root, "GetTask", json!({"id": task})).await;
    assert_eq!(got["result"]["id"], task, "{got}");

    // WebSocket: bob's continue, cancel and watch of alice's thread are told what a missing
    // thread is told; alice's watch works.
    let ws = format!("{}/ws/chat", base.replacen("http", "ws", 1));
    let (_, _, bobs) = call(base, "POST", "/api/auth/token", Some(bob), None).await;
    let bobs = bobs["access_token"].as_str().expect("token").to_owned();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}?access_token={bobs}"))
        .await
        .expect("bob's socket");
    // A start under another key's thread id is refused as unknown (a free id would start a
    // thread: ids chosen by clients cannot hide that one is taken, as a fork's cannot).
    crate::helpers::send_frame(
        &mut socket,
        json!({"type": "start", "thread_id": "a-done", "prompt": "weather in Rome"}),
    )
    .await;
    let reply = crate::helpers::next_frame(&mut socket).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(not_found_words(&reply, "a-done"), "unknown thread ID");
    for frame in [
        json!({"type": "continue", "thread_id": "a-wait", "response": "sales data"}),
        json!({"type": "cancel", "thread_id": "a-wait"}),
        json!({"type": "watch", "thread_id": "a-wait"}),
    ] {
        crate::helpers::send_frame(&mut socket, &frame).await;
        let reply = crate::helpers::next_frame(&mut socket).await;
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        let missing = frame.to_string().replace("a-wait", "never-was");
        crate::helpers::send_frame(&mut socket, &missing).await;
        let told = crate::helpers::next_frame(&mut socket).await;
        let thread = frame["thread_id"].as_str().unwrap_or_default();
        assert_eq!(
            not_found_words(&reply, thread),
            not_found_words(&told, "never-was"),
            "{frame}"
        );
    }
    let (_, _, alices) = call(base, "POST", "/api/auth/token", Some(alice), None).await;
    let alices = alices["access_token"].as_str().expect("token").to_owned();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws}?access_token={alices}"))
        .await
        .expect("alice's socket");
    crate::helpers::send_frame(&mut socket, json!({"type": "watch", "thread_id": "a-wait"})).await;
    let reply = crate::helpers::next_frame(&mut socket).await;
    assert_eq!(reply["type"], "response", "{reply}");
    assert_eq!(reply["thread_id"], "a-wait");

    // Nothing bob did changed alice's threads.
    let (_, _, after) = call(
        base,
        "GET",
        "/api/threads/a-done/history",
        Some(alice),
        None,
    )
    .await;
    assert_eq!(after.as_array().map_or(0, Vec::len), versions);

    // The owner's own changes work: answer, cancel, delete.
    let (status, _, answered) = call(
        base,
        "POST",
        "/api/chat/continue",
        Some(alice),
        Some(json!({"thread_id": "a-wait", "response": "I want to analyze sales data"})),
    )
    .await;
    assert_eq!(status, 200, "{answered}");
    let (status, _, _) = call(
        base,
        "POST",
        "/api/threads/a-wait/cancel",
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(base, "DELETE", "/api/threads/a-fork", Some(alice), None).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(base, "DELETE", "/api/threads/b-done", Some(root), None).await;
    assert_eq!(status, 204, "an admin may delete anyone's thread");

    // The directory: everyone reads it; only an admin changes it (403 for a user, whatever
    // the body).
    for key in [alice, bob] {
        for (method, path, body) in [
            ("POST", "/api/agents", Some(json!({}))),
            (
                "POST",
                "/api/agents/discover",
                Some(json!({"url": "http://127.0.0.1:9"})),
            ),
            (
                "POST",
                "/api/agents/demo.weather/rate",
                Some(json!({"rating": 5})),
            ),
            ("DELETE", "/api/agents/demo.weather", None),
        ] {
            let (status, _, body) = call(base, method, path, Some(key), body).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
        }
        let (status, _, _) = call(base, "GET", "/api/agents/demo.weather", Some(key), None).await;
        assert_eq!(status, 200);
        let (status, _, _) =
            call(base, "GET", "/api/agents/search?q=weather", Some(key), None).await;
        assert_eq!(status, 200);
    }
    let (status, _, rated) = call(
        base,
        "POST",
        "/api/agents/demo.weather/rate",
        Some(root),
        Some(json!({"rating": 5})),
    )
    .await;
    assert_eq!(status, 200, "{rated}");
    let (status, _, _) = call(base, "DELETE", "/api/agents/demo.weather", Some(root), None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn every_thread_route_hides_other_keys_threads_on_sqlite() {
    every_thread_route_hides_other_keys_threads(Keyed::start(&[])).await;
}

#[tokio::test]
async fn every_thread_route_hides_other_keys_threads_on_postgres() {
    let db = crate::helpers::TestPostgres::create().await;
    every_thread_route_hides_other_keys_threads(Keyed::start_url(&db.url, &[])).await;
}

#[tokio::test]
async fn the_cli_sends_its_key() {
    let keyed = Keyed::start(&[]);
    let agents = |key: Option<&str>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .args(["agents", "--server", &keyed.server.base, "--json"])
            .args(args)
            .env_remove("BATON_API_KEY");
        if let Some(key) = key {
            command.args(["--api-key", key]);
        }
        command.output().expect("baton agents runs")
    };
    let refused = agents(None, &["list"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
    let listed = agents(Some(&keyed.bob), &["list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("demo.weather"));
    let forbidden = agents(Some(&keyed.bob), &["remove", "demo.weather"]);
    assert!(!forbidden.status.success());
    assert!(
        String::from_utf8_lossy(&forbidden.stderr).contains("403"),
        "{forbidden:?}"
    );
    let removed = agents(Some(&keyed.root), &["remove", "demo.weather"]);
    assert!(removed.status.success(), "{removed:?}");
}

#[tokio::test]
async fn each_key_has_its_own_request_rate() {
    let keyed = Keyed::start(&["--key-requests-per-second", "1", "--key-burst", "3"]);
    let base = keyed.server.base.as_str();
    // The burst passes; then, at one request a second, a run of quick requests meets a 429
    // with `Retry-After` (20 of them would have to be a second apart each not to).
    for _ in 0..3 {
        let (status, _, _) = call(base, "GET", "/api/threads", Some(&keyed.alice), None).await;
        assert_eq!(status, 200);
    }
    let mut refused = None;
    for _ in 0..20 {
        let (status, headers, body) =
            call(base, "GET", "/api/threads", Some(&keyed.alice), None).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
    }
    let (headers, body) = refused.expect("a 429 past the burst");
    assert_eq!(body["status"], "error", "{body}");
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(retry_after, Some(1));
    let (status, _, _) = call(base, "GET", "/api/threads", Some(&keyed.bob), None).await;
    assert_eq!(status, 200, "bob has his own bucket");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = call(base, "GET", "/api/threads", Some(&keyed.alice), None).await;
    assert_eq!(status, 200, "the bucket refills");
}

#[tokio::test]
async fn each_key_holds_a_bounded_number_of_streams_and_runs() {
    let keyed = Keyed::start(&[
        "--key-requests-per-second",
        "0",
        "--key-max-streams",
        "1",
        "--key-max-runs",
        "1",
        "--demo-latency",
        "weather=3000",
    ]);
    let base = keyed.server.base.clone();
    // Streams: one open event stream per key; once it is closed, another may open.
    start_as(
        &base,
        &keyed.root,
        "r-1",
        "Help me analyze data but I need guidance",
    )
    .await;
    let stream = |key: String| {
        let base = base.clone();
        async move {
            http()
                .get(format!("{base}/api/threads/r-1/events"))
                .bearer_auth(key)
                .send()
                .await
                .expect("stream")
        }
    };
    let first = stream(keyed.root.clone()).await;
    assert_eq!(first.status().as_u16(), 200);
    let second = stream(keyed.root.clone()).await;
    assert_eq!(second.status().as_u16(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let (_, _, token) = call(&base, "POST", "/api/auth/token", Some(&keyed.root), None).await;
    let token = token["access_token"].as_str().expect("token").to_owned();
    match tokio_tungstenite::connect_async(format!(
        "{}/ws/chat?access_token={token}",
        base.replacen("http", "ws", 1)
    ))
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(
                response.status().as_u16(),
                429,
                "a WebSocket counts as a stream"
            );
        }
        other => panic!("a second stream must be refused: {other:?}"),
    }
    drop(first);
    eventually(
        "the stream slot given back",
        Duration::from_secs(10),
        || {
            let opened = stream(keyed.root.clone());
            async move { (opened.await.status().as_u16() == 200).then_some(()) }
        },
    )
    .await;

    // Runs: one in flight per key (the weather agent takes 3 s).
    let slow = {
        let base = base.clone();
        let bob = keyed.bob.clone();
        tokio::spawn(async move {
            call(
                &base,
                "POST",
                "/api/chat",
                Some(&bob),
                Some(json!({"prompt": "What's the weather in Paris", "thread_id": "b-slow"})),
            )
            .await
            .0
        })
    };
    eventually("bob's slow run started", Duration::from_secs(10), || {
        let base = base.clone();
        let root = keyed.root.clone();
        async move {
            let (status, _, body) =
                call(&base, "GET", "/api/chat/status/b-slow", Some(&root), None).await;
            (status == 200 && body["status"] == "processing").then_some(())
        }
    })
    .await;
    let (status, headers, body) = call(
        &base,
        "POST",
        "/api/chat",
        Some(&keyed.bob),
        Some(json!({"prompt": "What's the weather in Rome"})),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = call(
        &base,
        "POST",
        "/api/chat",
        Some(&keyed.alice),
        Some(json!({"prompt": "Convert 10 USD to EUR"})),
    )
    .await;
    assert_eq!(status, 200, "alice's runs are hers");
    assert_eq!(slow.await.expect("joined"), 200);
    let (status, _, _) = call(
        &base,
        "POST",
        "/api/chat",
        Some(&keyed.bob),
        Some(json!({"prompt": "Convert 10 USD to EUR"})),
    )
    .await;
    assert_eq!(status, 200, "the run's slot is given back");
}

/// The ids of the threads `key` lists.
async fn listed(base: &str, key: &str) -> Vec<String> {
    let (status, _, page) = call(base, "GET", "/api/threads?limit=100", Some(key), None).await;
    assert_eq!(status, 200, "{page}");
    page["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["thread_id"].as_str().expect("thread id").to_owned())
        .collect()
}

#[tokio::test]
async fn repeated_kill_9_while_keys_are_in_use_keeps_every_thread_its_owners() {
    let mut keyed = Keyed::start(&["--demo-latency", "weather=300"]);
    let mut waiting = Vec::new();
    for round in 0..3 {
        let base = keyed.server.base.clone();
        // A thread of alice's that waits for her answer, written before the kill.
        let thread = format!("alice-wait-{round}");
        let asked = start_as(
            &base,
            &keyed.alice,
            &thread,
            "Help me analyze data but I need guidance",
        )
        .await;
        assert_eq!(asked["status"], "pending_user_input", "{asked}");
        waiting.push(thread);
        // Runs of both keys in flight at the kill (a slow weather agent holds them).
        let mut in_flight = Vec::new();
        for (who, key) in [("alice", keyed.alice.clone()), ("bob", keyed.bob.clone())] {
            let base = base.clone();
            let thread = format!("{who}-cut-{round}");
            in_flight.push(tokio::spawn(async move {
                let _ = http()
                    .post(format!("{base}/api/chat"))
                    .bearer_auth(key)
                    .json(&json!({"prompt": "What's the weather in Paris", "thread_id": thread}))
                    .send()
                    .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        keyed = keyed.kill9_and_restart();
        for request in in_flight {
            let _ = request.await;
        }
        let base = keyed.server.base.clone();
        // Every thread is still its owner's alone, whether its run was cut short or not.
        let alices = listed(&base, &keyed.alice).await;
        let bobs = listed(&base, &keyed.bob).await;
        assert!(
            alices.iter().all(|t| t.starts_with("alice-")),
            "alice lists only hers: {alices:?}"
        );
        assert!(
            bobs.iter().all(|t| t.starts_with("bob-")),
            "bob lists only his: {bobs:?}"
        );
        for thread in &waiting {
            assert!(alices.contains(thread), "{thread} survived: {alices:?}");
        }
        // Every thread of alice's, the waiting ones among them, is missing to bob.
        for thread in &alices {
            let (status, _, _) = call(
                &base,
                "GET",
                &format!("/api/chat/status/{thread}"),
                Some(&keyed.bob),
                None,
            )
            .await;
            assert_eq!(status, 404, "bob does not see {thread}");
        }
        let (status, _, _) =
            call(&base, "GET", "/api/threads", Some("baton_not-a-key"), None).await;
        assert_eq!(status, 401, "an unknown key is still refused");
        let everyone = listed(&base, &keyed.root).await;
        assert!(
            waiting.iter().all(|t| everyone.contains(t)),
            "the admin sees every thread: {everyone:?}"
        );
    }
    // The waiting threads are answerable by their owner after all the kills, and only by her.
    let base = keyed.server.base.clone();
    for thread in &waiting {
        let answer = json!({"thread_id": thread, "response": "I want to analyze sales data"});
        let (status, _, _) = call(
            &base,
            "POST",
            "/api/chat/continue",
            Some(&keyed.bob),
            Some(answer.clone()),
        )
        .await;
        assert_eq!(status, 404, "bob cannot answer {thread}");
        let (status, _, done) = call(
            &base,
            "POST",
            "/api/chat/continue",
            Some(&keyed.alice),
            Some(answer),
        )
        .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["status"], "completed", "{done}");
    }
}
