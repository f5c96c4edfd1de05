//! Test harness: a real server on a loopback port over a real SQLite file, one per test.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::app::Application;
use baton::config::Settings;

use serde_json::{Value, json};
use tempfile::TempDir;

/// Runs `test` against a server on a fresh SQLite file, then against one on a fresh PostgreSQL
/// database, both set up by `configure`.
pub async fn on_both_stores<F, Fut>(configure: fn(&mut Settings), test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    test(spawn_app_with(configure).await).await;
    let pg = TestPostgres::create().await;
    let url = pg.url.clone();
    test(
        spawn_app_with(move |s| {
            configure(s);
            s.database_url = url;
        })
        .await,
    )
    .await;
    drop(pg);
}

/// A server running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The store the server was started on (`sqlite://…` in a temp dir unless the test named
    /// another), for tests that look at the database itself.
    pub database_url: String,
    _dir: TempDir,
}

/// Starts a server with default settings on a fresh SQLite file.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `configure` adjusts its settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_until(configure, std::future::pending()).await.0
}

/// A server started by `spawn_stoppable_app_with`, stopped by `stop`.
pub struct StopHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl StopHandle {
    /// Shuts the server down and waits until `run_until` has returned (its background tasks
    /// dropped).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.served
            .await
            .expect("server task joined")
            .expect("server stopped cleanly");
    }
}

/// Starts a server after `configure` adjusts its settings; the test stops it.
pub async fn spawn_stoppable_app_with(
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, StopHandle) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, served) = spawn_app_until(configure, async {
        let _ = stopped.await;
    })
    .await;
    (app, StopHandle { stop, served })
}

async fn spawn_app_until(
    configure: impl FnOnce(&mut Settings),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("baton.db").display());
    let mut settings = Settings {
        addr: "127.0.0.1:0".into(),
        database_url,
        ..Settings::default()
    };
    configure(&mut settings);
    let app = Application::build(&settings).await.expect("server builds");
    let addr = app.local_addr().expect("bound address");
    let served = tokio::spawn(app.run_until(shutdown));
    let app = TestApp {
        addr,
        client: http(),
        database_url: settings.database_url,
        _dir: dir,
    };
    (app, served)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// `http://host:port` of the server, for the request functions below.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs a JSON body; returns status and parsed JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        post(&self.base(), path, body.clone()).await
    }

    /// POSTs raw bytes as JSON; returns status and parsed JSON body.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        post_raw(&self.base(), path, body).await
    }

    /// GETs; returns status and parsed JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        get(&self.base(), path).await
    }

    pub async fn chat(&self, prompt: &str) -> Value {
        let (status, body) = self.post("/api/chat", &json!({ "prompt": prompt })).await;
        assert_eq!(status, 200, "chat failed: {body}");
        body
    }

    pub async fn answer(&self, thread_id: &str, response: &str) -> (u16, Value) {
        answer_at(&self.base(), thread_id, response).await
    }
}

/// Sends a request; returns status and parsed JSON body (a body that is not JSON fails the test,
/// with the body in the message).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("body is not JSON ({status}): {text:?}"));
    (status, body)
}

/// A `baton serve` process of the real binary, for kill -9 tests.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts the binary on a free port over the SQLite file at `db`, with extra flags.
    pub fn start(db: &Path, extra: &[&str]) -> ServerProcess {
        Self::start_url(&format!("sqlite://{}", db.display()), extra)
    }

    /// Starts the binary on a free port over the database at `url`, with extra flags.
    pub fn start_url(url: &str, extra: &[&str]) -> ServerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--addr", "127.0.0.1:0", "--database-url", url])
            .args(extra)
            .env("BATON_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("baton starts");
        Self::listening(child)
    }

    /// The started `child` once it says where it listens (its first stdout line).
    fn listening(mut child: Child) -> ServerProcess {
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let base = line
            .trim()
            .strip_prefix("baton listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        ServerProcess { child, base }
    }

    /// kill -9: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `baton --log-json serve` process (`BATON_LOG=info`) whose stderr is collected line by
/// line from the start, so the pipe never fills and blocks the server.
pub struct LoggingServer {
    pub server: ServerProcess,
    log: std::thread::JoinHandle<Vec<String>>,
}

impl LoggingServer {
    /// Starts the binary on a free port over the SQLite file at `db`.
    pub fn start(db: &Path) -> LoggingServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "--log-json",
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--database-url",
            ])
            .arg(format!("sqlite://{}", db.display()))
            .env("BATON_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baton starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map(|line| line.expect("stderr line"))
                .collect::<Vec<String>>()
        });
        LoggingServer {
            server: ServerProcess::listening(child),
            log,
        }
    }

    /// kill -9, then every line the process wrote to stderr.
    pub fn kill_and_read_log(self) -> Vec<String> {
        self.server.kill9();
        self.log.join().expect("stderr reader")
    }
}

/// A temp dir holding a database file path, for process tests.
pub fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.db");
    (dir, path)
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The PostgreSQL server the tests use unless `BATON_TEST_POSTGRES_URL` names another; `.ci/run`
/// starts it, and so must whoever runs `cargo test` (see the README).
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own on the test PostgreSQL server, dropped when this is dropped.
pub struct TestPostgres {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestPostgres {
    /// A fresh database on `BATON_TEST_POSTGRES_URL` (default `DEFAULT_TEST_POSTGRES_URL`).
    /// Without a server the test fails, saying why: a PostgreSQL test that did not run must not
    /// count as passed.
    pub async fn create() -> TestPostgres {
        use sqlx::{Connection, Executor};
        let admin_url = std::env::var("BATON_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        let name = format!("baton_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "this test needs PostgreSQL, which does not answer at {admin_url}: {e}\n\
                 start it (.ci/run does), or set BATON_TEST_POSTGRES_URL to a server whose user \
                 may CREATE DATABASE"
            ),
        };
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("test database created");
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        TestPostgres {
            url: format!("{server}/{name}{query}"),
            admin_url,
            name,
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any async context we can rely on: use a runtime of its own.
        let _ = std::thread::spawn(move || {
            use sqlx::{Connection, Executor};
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A reqwest client builder with the crypto provider Baton uses installed.
pub fn http_builder() -> reqwest::ClientBuilder {
    baton::agents::http::install_crypto();
    reqwest::Client::builder()
}

/// The tests' reqwest client: a server that hangs fails the test after 30 s instead of hanging it.
pub fn http() -> reqwest::Client {
    http_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POSTs JSON to the server at `base` (`http://host:port`); returns status and JSON body.
pub async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    send(http().post(format!("{base}{path}")).json(&body)).await
}

/// POSTs raw bytes, labelled as JSON, to the server at `base`; returns status and JSON body.
pub async fn post_raw(base: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    send(
        http()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// Answers the question thread `thread_id` waits on, at the server at `base`.
pub async fn answer_at(base: &str, thread_id: &str, response: &str) -> (u16, Value) {
    post(
        base,
        "/api/chat/continue",
        json!({ "thread_id": thread_id, "response": response }),
    )
    .await
}

/// Starts a thread with `prompt` at the server at `base`.
pub async fn chat_at(base: &str, prompt: &str) -> (u16, Value) {
    post(base, "/api/chat", json!({ "prompt": prompt })).await
}

/// GETs from the server at `base`; returns status and JSON body.
pub async fn get(base: &str, path: &str) -> (u16, Value) {
    send(http().get(format!("{base}{path}"))).await
}

/// Starts "weather in Paris and convert 100 USD to EUR" as thread `thread_id` on `run_on` (whose
/// weather agent should be slow), and waits, reading through `watch_on`, until the currency
/// answer is checkpointed while the weather call is still out. Returns that checkpoint and the
/// request in flight (it fails once its process is killed).
pub async fn start_half_done_run(
    run_on: &str,
    watch_on: &str,
    thread_id: &str,
) -> (
    Value,
    tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
) {
    let base = run_on.to_owned();
    let body = json!({"prompt": "What's the weather in Paris and convert 100 USD to EUR", "thread_id": thread_id});
    let request = tokio::spawn(async move {
        http()
            .post(format!("{base}/api/chat"))
            .json(&body)
            .send()
            .await
    });
    let path = format!("/api/threads/{thread_id}/checkpoint");
    let before = eventually(
        "currency result checkpointed",
        Duration::from_secs(20),
        || async {
            let (code, cp) = get(watch_on, &path).await;
            (code == 200 && cp["state"]["results"]["t2"]["ok"] == true).then_some(cp)
        },
    )
    .await;
    assert!(
        before["state"]["results"].get("t1").is_none(),
        "weather still running: {before}"
    );
    assert_eq!(before["state"]["status"], "processing");
    (before, request)
}

/// The ids of the primary agents of a response's task/agent pairs, in task order.
pub fn primary_ids(response: &Value) -> Vec<String> {
    response["task_agent_pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| p["primary"]["id"].as_str().expect("primary id").to_owned())
        .collect()
}

/// The thread id a response names.
pub fn thread_of(response: &Value) -> String {
    response["thread_id"]
        .as_str()
        .expect("thread id")
        .to_owned()
}

impl TestApp {
    /// The thread's latest state, from `GET /api/threads/{id}/checkpoint`.
    pub async fn state_of(&self, thread: &str) -> Value {
        let (code, cp) = self.get(&format!("/api/threads/{thread}/checkpoint")).await;
        assert_eq!(code, 200, "{cp}");
        cp["state"].clone()
    }
}

/// Checks that a chat response's thread completed, with these primary agents in task order.
pub fn assert_completed_by(response: &Value, agents: &[&str]) {
    assert_eq!(response["status"], "completed", "{response}");
    assert_eq!(primary_ids(response), agents);
}

/// The final response a completed thread's response carries.
pub fn final_text(response: &Value) -> &str {
    response["final_response"].as_str().expect("final")
}

/// A base URL where nothing listens (a port bound, then let go): an endpoint that is down.
pub async fn unreachable_base_url() -> String {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/v1", closed.local_addr().expect("addr"));
    drop(closed);
    base
}

/// The question a waiting thread's response asks the user.
pub fn question_text(response: &Value) -> &str {
    response["question_for_user"]
        .as_str()
        .unwrap_or_else(|| panic!("no question for the user: {response}"))
}

/// Checks that `text` says every one of `needles`; the message names the one missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
}

/// Checks that a response's thread completed and its final response says every one of `needles`.
pub fn assert_completed_saying(response: &Value, needles: &[&str]) {
    assert_eq!(response["status"], "completed", "{response}");
    assert_contains_all(final_text(response), needles);
}

impl TestApp {
    /// Registers an agent card (`POST /api/agents`); returns status and body.
    pub async fn register(&self, card: &Value) -> (u16, Value) {
        self.post("/api/agents", card).await
    }

    /// Asks the server to fetch a card (`POST /api/agents/discover`); returns status and body.
    pub async fn discover(&self, request: &Value) -> (u16, Value) {
        self.post("/api/agents/discover", request).await
    }

    /// DELETEs; returns the status (a 204 has no body to parse).
    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("delete sent")
            .status()
            .as_u16()
    }

    /// Answers the question `question_id` of a thread waiting on several.
    pub async fn answer_question(
        &self,
        thread_id: &str,
        response: &str,
        question_id: &Value,
    ) -> (u16, Value) {
        self.post(
            "/api/chat/continue",
            &json!({"thread_id": thread_id, "response": response, "question_id": question_id}),
        )
        .await
    }

    /// Starts a thread with `prompt`, checks it waits on a question saying each of `asks`, and
    /// answers with `answer`; returns the reply to the answer.
    pub async fn ask_and_answer(&self, prompt: &str, asks: &[&str], answer: &str) -> Value {
        let r = self.chat(prompt).await;
        assert_eq!(r["status"], "pending_user_input", "{prompt}: {r}");
        assert_contains_all(question_text(&r), asks);
        let (code, done) = self.answer(&thread_of(&r), answer).await;
        assert_eq!(code, 200, "{prompt} / {answer}: {done}");
        done
    }

    /// Sends `prompt` as a new turn of the thread the client names `thread_id`.
    pub async fn chat_in(&self, thread_id: &str, prompt: &str) -> (u16, Value) {
        self.post(
            "/api/chat",
            &json!({ "prompt": prompt, "thread_id": thread_id }),
        )
        .await
    }

    /// `GET /api/chat/status/{thread}`: status and body.
    pub async fn status_of(&self, thread: &str) -> (u16, Value) {
        self.get(&format!("/api/chat/status/{thread}")).await
    }
}

/// Polls the server at `base` until thread `thread`'s checkpoint says completed; returns it.
pub async fn completed_checkpoint(
    base: &str,
    thread: &str,
    what: &str,
    timeout: Duration,
) -> Value {
    let path = format!("/api/threads/{thread}/checkpoint");
    eventually(what, timeout, || async {
        let (_, cp) = get(base, &path).await;
        (cp["state"]["status"] == "completed").then_some(cp)
    })
    .await
}

/// After `start_half_done_run` (whose checkpoint is `before`) and the kill of the process that ran
/// it: waits until the server at `base` has completed `thread`, and checks the run was resumed,
/// not redone: the currency answer kept as it was, the weather called by another process.
/// Returns the completed checkpoint.
pub async fn assert_resumed_elsewhere(
    base: &str,
    thread: &str,
    before: &Value,
    timeout: Duration,
) -> Value {
    let after = completed_checkpoint(base, thread, &format!("{thread} completed"), timeout).await;
    let results = &after["state"]["results"];
    assert_eq!(
        results["t2"], before["state"]["results"]["t2"],
        "{thread}: the currency answer was kept, not fetched again"
    );
    assert_ne!(
        results["t1"]["worker"], results["t2"]["worker"],
        "{thread}: weather was called by the process that took over"
    );
    after
}

/// Sends 16 answers to `thread` at once (`answer #0` to `answer #15`), spread over the servers
/// at `bases`; returns their replies, in order.
pub async fn race_answers(bases: &[String], thread: &str, answer: &str) -> Vec<(u16, Value)> {
    const RACERS: usize = 16;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let thread = thread.to_owned();
            let answer = format!("{answer} #{i}");
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                answer_at(&base, &thread, &answer).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for racer in racers {
        replies.push(racer.await.expect("racer"));
    }
    replies
}

/// Checks that of racing answers exactly one won (200) and every other was refused (409, with
/// an error saying why).
pub fn assert_one_won(replies: &[(u16, Value)]) {
    let codes: Vec<u16> = replies.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 409).count(),
        replies.len() - 1,
        "{codes:?}"
    );
    for (code, body) in replies {
        if *code == 409 {
            assert!(body["error"].is_string(), "{body}");
        }
    }
}

/// Checks that a run's progress events passed through every one of `nodes`.
pub fn assert_passed_through(events: &[Value], nodes: &[&str]) {
    let seen: Vec<&str> = events.iter().filter_map(|e| e["node"].as_str()).collect();
    for node in nodes {
        assert!(seen.contains(node), "{node} missing from {seen:?}");
    }
}

/// A WebSocket client connection to a test server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket URL of the server at `base` (`http://host:port`).
pub fn ws_url_of(base: &str) -> String {
    format!("{}/ws/chat", base.replacen("http", "ws", 1))
}

/// Sends a text frame: raw text, or a JSON value.
pub async fn send_frame(socket: &mut Socket, text: impl ToString) {
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            text.to_string().into(),
        ))
        .await
        .expect("sent");
}

/// Opens a WebSocket to `url` (`ws://…`).
pub async fn connect_ws(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connects")
        .0
}

/// The next text frame, parsed as JSON (other frames are skipped); fails after 20 s of silence.
pub async fn next_frame(socket: &mut Socket) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("JSON frame");
        }
    }
}

/// Frames until the next response or error, returning (the events on the way, that frame).
pub async fn until_response(socket: &mut Socket) -> (Vec<Value>, Value) {
    let mut events = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        match frame["type"].as_str() {
            Some("event") => events.push(frame),
            _ => return (events, frame),
        }
    }
}

/// Checks a refusal, given as (status, body): the status is `expected` and the error says
/// `needle`. Returns the body.
pub fn assert_refused(reply: (u16, Value), expected: u16, needle: &str) -> Value {
    let (code, body) = reply;
    assert_eq!(code, expected, "{body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"));
    assert!(error.contains(needle), "{needle:?} missing from {body}");
    body
}

/// How to get the Python a2a-sdk the SDK tests need, for their failure messages.
pub const PYTHON_SDK_INSTALL: &str = "the Python a2a-sdk (with its HTTP server) is needed: run \
    .ci/run, or `python3 -m venv target/py-a2a && target/py-a2a/bin/pip install -r \
    tests/python/requirements.txt`";

/// The Python that has the a2a-sdk: `BATON_TEST_PYTHON`, else the virtualenv `.ci/run` makes,
/// else `python3` on the PATH (with the SDK installed some other way).
pub fn python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("BATON_TEST_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-a2a/bin/python3");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Starts `body` at `path` in the background, for a request that dies with the server process.
pub fn in_background(
    base: &str,
    path: &str,
    body: Value,
) -> tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>> {
    let url = format!("{base}{path}");
    tokio::spawn(async move { http().post(url).json(&body).send().await })
}

/// Waits until the server at `base` has completed `thread`; returns its final text.
pub async fn completed_text(base: &str, thread: &str, timeout: Duration) -> String {
    completed_checkpoint(base, thread, &format!("{thread} completed"), timeout).await;
    let (code, status) = get(base, &format!("/api/chat/status/{thread}")).await;
    assert_eq!(code, 200, "{status}");
    final_text(&status).to_owned()
}

/// Serves the router `router_for` builds (it is told its own base URL) on a loopback port, for
/// the agents and fake services a test stands up; returns the base URL.
pub async fn serve_on_loopback(router_for: impl FnOnce(&str) -> axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = router_for(&base);
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// A test agent served by the Python a2a-sdk's own server: `tests/python/SCRIPT PORT LOG ARGS…`
/// on a free loopback port, logging what it executes into LOG as JSON lines; killed when dropped.
pub struct PythonAgent {
    child: std::process::Child,
    pub url: String,
    pub log: std::path::PathBuf,
}

impl PythonAgent {
    /// Starts `script` with `args`, logging into `log`; returns once it prints "ready".
    pub fn start(script: &str, log: std::path::PathBuf, args: &[&str]) -> PythonAgent {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(script);
        let python = python();
        let mut child = std::process::Command::new(&python)
            .arg(path)
            .arg(port.to_string())
            .arg(&log)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} did not start ({e}); {PYTHON_SDK_INSTALL}",
                    python.display()
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the agent's first line");
        assert_eq!(
            line.trim(),
            "ready",
            "{script} did not start (see its stderr above); {PYTHON_SDK_INSTALL}"
        );
        PythonAgent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The lines logged so far.
    pub fn logged(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

impl Drop for PythonAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Query plans from both databases, migrated and empty, to show that a query is served by an
/// index. PostgreSQL is told a table scan costs too much: a table this small would be read
/// whole, and the plan should say whether an index can serve the query at all.
pub struct QueryPlans {
    sqlite: sqlx::SqliteConnection,
    postgres: sqlx::PgConnection,
    _dir: TempDir,
    _pg: TestPostgres,
}

impl QueryPlans {
    pub async fn new() -> QueryPlans {
        use baton::store::{StoreOptions, connect};
        use sqlx::Connection;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        connect(&url, &StoreOptions::default())
            .await
            .expect("migrated");
        let sqlite = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        let pg = TestPostgres::create().await;
        connect(&pg.url, &StoreOptions::default())
            .await
            .expect("migrated");
        let mut postgres = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut postgres)
            .await
            .expect("set");
        QueryPlans {
            sqlite,
            postgres,
            _dir: dir,
            _pg: pg,
        }
    }

    /// SQLite's `EXPLAIN QUERY PLAN` of `sql` (its `$n` parameters read as `?`), a line a step.
    pub async fn sqlite(&mut self, sql: &str) -> String {
        use sqlx::Row;
        let explain = format!("EXPLAIN QUERY PLAN {}", sql.replace('$', "?"));
        sqlx::query(sqlx::AssertSqlSafe(explain))
            .fetch_all(&mut self.sqlite)
            .await
            .expect("sqlite plan")
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// PostgreSQL's plan of `explain` (an `EXPLAIN …` query with its parameters bound).
    pub async fn postgres(
        &mut self,
        explain: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> String {
        use sqlx::Row;
        explain
            .fetch_all(&mut self.postgres)
            .await
            .expect("postgres plan")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every card of the directory at `base`, following `GET /api/agents`'s `X-Next-Cursor`
/// pages of `limit`.
pub async fn all_agents(base: &str, limit: usize) -> Vec<Value> {
    let mut cards = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http().get(format!("{base}/api/agents?limit={limit}"));
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let response = request.send().await.expect("list");
        assert_eq!(response.status().as_u16(), 200);
        cursor = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().expect("ascii cursor").to_owned());
        let page: Vec<Value> = response.json().await.expect("a JSON array");
        assert!(page.len() <= limit, "a page has at most {limit} cards");
        cards.extend(page);
        if cursor.is_none() {
            return cards;
        }
    }
}
