//! The web console: its page and assets as served (types, the Content-Security-Policy, caching,
//! a JSON 404), the API fields it shows (who asks each pending question, each agent's measured
//! health), and the page itself driven in headless Chromium by `tests/console/e2e.mjs` against
//! the real binary (`BATON_TEST_BINARY`, else the one cargo built) and `baton demo-agents`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::helpers::{TestApp, http, spawn_app_with, temp_db, thread_of};

/// The policy every console response carries.
const POLICY: &str = baton::api::console::CONTENT_SECURITY_POLICY;

/// GETs `path`; returns the status, the named headers and the body.
async fn fetch(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = http().get(app.url(path)).send().await.expect("sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_and_each_asset_come_with_their_type_a_strict_policy_and_revalidation() {
    let app = spawn_app_with(|_| {}).await;
    let (status, headers, page) = fetch(&app, "/").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert!(page.contains("<script type=\"module\" src=\"/console/console.js\">"));

    let expected = [
        ("console.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("dom.js", "text/javascript; charset=utf-8"),
        ("chat.js", "text/javascript; charset=utf-8"),
        ("threads.js", "text/javascript; charset=utf-8"),
        ("agents.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ];
    let mut every = vec![("/".to_owned(), headers)];
    for (name, content_type) in expected {
        let path = format!("/console/{name}");
        let (status, headers, body) = fetch(&app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), content_type, "{path}");
        assert!(!body.is_empty(), "{path}");
        every.push((path, headers));
    }
    for (path, headers) in &every {
        let policy = header(headers, "content-security-policy");
        assert_eq!(policy, POLICY, "{path}");
        assert_eq!(header(headers, "cache-control"), "no-cache", "{path}");
        assert_eq!(
            header(headers, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(header(headers, "x-frame-options"), "DENY", "{path}");
        assert!(!header(headers, "etag").is_empty(), "{path}");
    }
    // The policy: this origin only, no inline script, no eval, no framing.
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(POLICY.contains(directive), "{directive}");
    }
    assert!(!POLICY.contains("unsafe-inline") && !POLICY.contains("unsafe-eval"));

    // Revalidation: the same ETag is a 304 without a body.
    let etag = header(&every[1].1, "etag").to_owned();
    let response = http()
        .get(app.url("/console/console.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 304);
    assert_eq!(header(response.headers(), "etag"), etag);
    assert!(response.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_with_the_json_error_body() {
    let app = spawn_app_with(|_| {}).await;
    for path in [
        "/console/nope.js",
        "/console/..%2Fmod.rs",
        "/console/index.html",
    ] {
        let (status, headers, body) = fetch(&app, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            header(&headers, "content-type").starts_with("application/json"),
            "{path}"
        );
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["status"], "error", "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("asset")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn every_file_the_page_loads_or_imports_is_served_and_nothing_comes_from_elsewhere() {
    let app = spawn_app_with(|_| {}).await;
    let mut wanted = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let (_, _, page) = fetch(&app, "/").await;
    for attribute in ["src=\"", "href=\""] {
        for chunk in page.split(attribute).skip(1) {
            let target = chunk.split('"').next().unwrap_or_default();
            assert!(
                target.starts_with("/console/") || target.starts_with('#') || target == "/docs",
                "the page loads {target:?}"
            );
            if let Some(name) = target.strip_prefix("/console/") {
                wanted.insert(name.to_owned());
            }
        }
    }
    while let Some(name) = wanted.pop_first() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let (status, _, body) = fetch(&app, &format!("/console/{name}")).await;
        assert_eq!(status, 200, "{name}");
        if name.ends_with(".js") {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split(" from '")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_else(|| panic!("an import this test cannot read: {line}"));
                let module = target
                    .strip_prefix("./")
                    .unwrap_or_else(|| panic!("{name} imports from elsewhere: {target}"));
                wanted.insert(module.to_owned());
            }
        }
    }
    for module in [
        "console.js",
        "chat.js",
        "threads.js",
        "agents.js",
        "api.js",
        "dom.js",
    ] {
        assert!(
            seen.contains(module),
            "{module} is reached from the page: {seen:?}"
        );
    }
}

#[tokio::test]
async fn pending_questions_say_who_asks_the_planner_or_which_agent() {
    let app = spawn_app_with(|_| {}).await;
    let r = app.chat("Help me analyze data but I need guidance").await;
    let pending = r["pending_questions"].as_array().expect("pending");
    assert_eq!(pending.len(), 1, "{r}");
    assert_eq!(pending[0]["asked_by"], "planner", "{r}");
    assert!(pending[0].get("agent_id").is_none(), "{r}");

    let r = app
        .chat("Translate my notes into French and translate my letter into German")
        .await;
    let pending = r["pending_questions"].as_array().expect("pending");
    assert_eq!(pending.len(), 2, "{r}");
    for question in pending {
        assert_eq!(question["asked_by"], "agent", "{r}");
        assert_eq!(question["agent_id"], "demo.translation", "{r}");
    }
    // The same in the status a reloaded page reads.
    let (code, status) = app.status_of(&thread_of(&r)).await;
    assert_eq!(code, 200);
    assert_eq!(status["pending_questions"], r["pending_questions"]);
}

#[tokio::test]
async fn search_hits_carry_what_this_process_measured_of_each_agent() {
    let app = spawn_app_with(|_| {}).await;
    let health_of = |hits: &Value, id: &str| {
        hits.as_array()
            .and_then(|hits| hits.iter().find(|h| h["agent"]["id"] == id))
            .map(|h| h["health"].clone())
            .unwrap_or_else(|| panic!("{id} in {hits}"))
    };
    let (code, hits) = app.get("/api/agents/search?q=weather").await;
    assert_eq!(code, 200);
    let before = health_of(&hits, "demo.weather");
    assert_eq!(before["calls"], 0, "{before}");
    assert_eq!(before["success_rate"], 1.0, "{before}");

    let done = app.chat("What is the weather in Oslo").await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, hits) = app.get("/api/agents/search?q=weather").await;
    let after = health_of(&hits, "demo.weather");
    assert_eq!(after["calls"], 1, "{after}");
    assert_eq!(after["success_rate"], 1.0, "{after}");
    assert!(
        after["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{after}"
    );
    // An agent not called keeps the defaults.
    assert_eq!(health_of(&hits, "demo.climate")["calls"], 0);
}

// ---- the page in a real browser --------------------------------------------------------------

/// The binary under test: `BATON_TEST_BINARY` (CI points it at the release build), else the one
/// cargo built for this test run.
fn baton_binary() -> PathBuf {
    std::env::var_os("BATON_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_baton")))
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `baton ARGS` and reads the address from its first line (`… listening on ADDR`).
fn start(args: &[&str], listening: &str) -> (Running, String) {
    let binary = baton_binary();
    let mut child = Command::new(&binary)
        .args(args)
        .env("BATON_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{} did not start: {e}", binary.display()));
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the listening line");
    let address = line
        .trim()
        .strip_prefix(listening)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (running, address)
}

/// Makes a user key with `baton keys add` into `path`; returns it.
fn add_key(path: &Path) -> String {
    let output = Command::new(baton_binary())
        .args(["keys", "add", "console-user", "--api-keys-file"])
        .arg(path)
        .output()
        .expect("baton keys add runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// What the browser tests need, each missing one failing the test with how to get it.
fn browser_tools(console: &Path) -> (PathBuf, PathBuf) {
    let node = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("the console's browser tests need Node.js 20+ (`node` on PATH)"));
    assert!(
        console
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "the console's browser tests need playwright-core: run `npm ci` in {} (.ci/run does)",
        console.display()
    );
    let chromium = PathBuf::from(
        std::env::var_os("BATON_TEST_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()),
    );
    assert!(
        chromium.is_file(),
        "the console's browser tests need Debian's Chromium at {}: `apt-get install chromium` \
         (.ci/run does)",
        chromium.display()
    );
    (node, chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let console = root.join("tests/console");
    let (node, chromium) = browser_tools(&console);
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let (_server, base) = start(
        &["serve", "--addr", "127.0.0.1:0", "--database-url", &url],
        "baton listening on ",
    );
    let (_demo, demo_agents) = start(
        &["demo-agents", "--addr", "127.0.0.1:0"],
        "demo agents listening on ",
    );
    // A second server with API keys, for the sign-in scenario.
    let keys_file = _dir.path().join("keys");
    let key = add_key(&keys_file);
    let keyed_url = format!("sqlite://{}", _dir.path().join("keyed.db").display());
    let keys_arg = keys_file.to_str().expect("utf-8 path").to_owned();
    let (_keyed, keyed_base) = start(
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--database-url",
            &keyed_url,
            "--api-keys-file",
            &keys_arg,
        ],
        "baton listening on ",
    );
    let screenshots = root.join("target/console-screenshots");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&node)
            .arg(console.join("e2e.mjs"))
            .args(["--base", &base, "--demo-agents", &demo_agents])
            .args(["--keyed-base", &keyed_base, "--key", &key])
            .arg("--screenshots")
            .arg(&screenshots)
            .arg("--chromium")
            .arg(&chromium)
            .current_dir(&console)
            .output()
            .unwrap_or_else(|e| panic!("{} did not run: {e}", node.display()))
    })
    .await
    .expect("the browser tests ran");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{printed}");
    let counts = printed
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "))
        .unwrap_or_else(|| panic!("the browser tests printed no count:\n{printed}"));
    let passed: u32 = counts
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        output.status.success(),
        "browser scenarios failed: {counts}"
    );
    assert!(
        counts.ends_with(" 0 failed") && passed >= 11,
        "every browser scenario ran and passed: {counts}"
    );
    // Straight to the process's stderr, past the harness's capture: the count shows in a
    // passing run's log too.
    let _ = writeln!(
        std::io::stderr(),
        "console: {passed} browser scenarios passed in headless Chromium ({counts})"
    );
}
