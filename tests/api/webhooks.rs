//! Webhooks through the real server, with receivers on loopback: a signed paused-then-completed
//! pair verified over the raw body, retries after 500s (seen in the endpoint and the SSE stream),
//! a receiver that is down, a refused URL, a delivery that survives kill -9 of the binary, and
//! two PostgreSQL processes delivering each checkpoint once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as post_route;
use futures_util::SinkExt;
use ring::hmac;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    ServerProcess, TestApp, TestPostgres, answer_at, connect_ws, eventually, get, http_builder,
    next_frame, post, serve_on_loopback, spawn_app_with, temp_db, thread_of, unreachable_base_url,
};

const SECRET: &str = "test-secret-3f9a";
const GUIDANCE: &str = "Help me analyze data but I need guidance";
const ANSWER: &str = "I want to analyze sales data";

/// One POST a receiver got: its headers and its body, byte for byte.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// Checks `X-Baton-Signature` over the raw body, as a receiver would.
    fn assert_signed_with(&self, secret: &str) {
        let signature = self.header("x-baton-signature");
        let hex = signature
            .strip_prefix("sha256=")
            .unwrap_or_else(|| panic!("signature without sha256=: {signature}"));
        let tag = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect::<Vec<_>>();
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        hmac::verify(&key, &self.body, &tag).expect("the signature verifies over the raw body");
    }
}

/// A webhook receiver on loopback that answers each POST with the next scripted status (200
/// once the script is spent) and keeps what it got.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct Script {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receive(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    script
        .got
        .lock()
        .expect("lock")
        .push(Received { headers, body });
    let status = script.statuses.lock().expect("lock").pop_front();
    StatusCode::from_u16(status.unwrap_or(200)).expect("status")
}

impl Receiver {
    async fn start(statuses: &[u16]) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            got: got.clone(),
        };
        let base = serve_on_loopback(|_| {
            axum::Router::new()
                .route("/hook", post_route(receive))
                .with_state(script)
        })
        .await;
        Receiver {
            url: format!("{base}/hook"),
            got,
        }
    }

    /// Serves on `addr` (a port a test chose before); the URL is `http://{addr}/hook`.
    async fn start_on(addr: &str) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            statuses: Arc::new(Mutex::new(VecDeque::new())),
            got: got.clone(),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind again");
        let router = axum::Router::new()
            .route("/hook", post_route(receive))
            .with_state(script);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits until `count` POSTs arrived; returns them in the order of the checkpoints they
    /// tell of (`X-Baton-Version`): deliveries are not ordered, two of one thread may be
    /// claimed together.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let mut got = eventually(
            &format!("{count} webhook POST(s)"),
            Duration::from_secs(20),
            || async {
                let got = self.got();
                (got.len() >= count).then_some(got)
            },
        )
        .await;
        got.sort_by_key(|r| {
            r.header("x-baton-version")
                .parse::<i64>()
                .unwrap_or(i64::MAX)
        });
        got
    }
}

/// The server with a secret and quick retries, over SQLite or the database `url` names.
async fn app_with(database_url: Option<String>, attempts: u32) -> TestApp {
    spawn_app_with(|s| {
        s.webhook_secret = Some(SECRET.parse().expect("secret"));
        s.webhook_attempts = attempts;
        s.webhook_backoff_ms = 50;
        s.webhook_timeout_ms = 2_000;
        if let Some(url) = database_url {
            s.database_url = url;
        }
    })
    .await
}

/// `GET /api/threads/{id}/webhooks` at `base`, once the deliveries settle as `done` says.
async fn deliveries_when(base: &str, thread: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(
        "the deliveries to settle",
        Duration::from_secs(20),
        || async {
            let (code, body) = get(base, &format!("/api/threads/{thread}/webhooks")).await;
            assert_eq!(code, 200, "{body}");
            done(&body).then_some(body)
        },
    )
    .await
}

fn states(listing: &Value) -> Vec<&str> {
    listing["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["state"].as_str().expect("state"))
        .collect()
}

#[tokio::test]
async fn a_signed_webhook_tells_the_pause_and_then_the_end() {
    for database in [None, Some("memory://".to_owned())] {
        let app = app_with(database.clone(), 3).await;
        let receiver = Receiver::start(&[]).await;
        let (code, paused) = app
            .post(
                "/api/chat",
                &json!({"prompt": GUIDANCE, "webhook": receiver.url}),
            )
            .await;
        assert_eq!(code, 200, "{paused}");
        assert_eq!(paused["status"], "pending_user_input", "{paused}");
        let thread = thread_of(&paused);
        let got = receiver.wait_for(1).await;
        let (_, status_then) = app.status_of(&thread).await;

        let (code, completed) = app.answer(&thread, ANSWER).await;
        assert_eq!(code, 200, "{completed}");
        assert_eq!(completed["status"], "completed", "{completed}");
        let got = [got, receiver.wait_for(2).await[1..].to_vec()].concat();
        assert_eq!(got.len(), 2, "{database:?}");

        for delivery in &got {
            delivery.assert_signed_with(SECRET);
            assert!(
                delivery.header("x-baton-timestamp").parse::<i64>().is_ok(),
                "{:?}",
                delivery.headers
            );
            assert_eq!(delivery.header("x-baton-attempt"), "1");
            assert!(
                delivery
                    .header("content-type")
                    .starts_with("application/json")
            );
        }
        assert_eq!(got[0].header("x-baton-event"), "paused");
        assert_eq!(got[1].header("x-baton-event"), "completed");
        let versions: Vec<i64> = got
            .iter()
            .map(|r| r.header("x-baton-version").parse().expect("version"))
            .collect();
        assert!(versions[0] < versions[1], "{versions:?}");
        assert_ne!(
            got[0].header("x-baton-delivery"),
            got[1].header("x-baton-delivery")
        );
        // The body is the thread's ProcessResponse as it stood at that checkpoint.
        let first = got[0].json();
        assert_eq!(first, paused, "{database:?}");
        assert_eq!(first["question_for_user"], status_then["question_for_user"]);
        assert_eq!(got[1].json(), completed, "{database:?}");

        let listing = deliveries_when(&app.base(), &thread, |l| {
            states(l) == ["delivered", "delivered"]
        })
        .await;
        assert_eq!(listing["webhook"], receiver.url.as_str());
        for (delivery, received) in listing["deliveries"]
            .as_array()
            .expect("list")
            .iter()
            .zip(&got)
        {
            assert_eq!(delivery["delivery_id"], received.header("x-baton-delivery"));
            let attempts = delivery["attempts"].as_array().expect("attempts");
            assert_eq!(attempts.len(), 1, "{delivery}");
            assert_eq!(attempts[0]["status_code"], 200);
            assert_eq!(attempts[0]["outcome"], "delivered");
        }
    }
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let app = spawn_app_with(|_| {}).await;
    let receiver = Receiver::start(&[]).await;
    let (code, done) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "webhook": receiver.url}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    let got = receiver.wait_for(1).await;
    assert!(got[0].headers.get("x-baton-signature").is_none());
    assert_eq!(got[0].header("x-baton-event"), "completed");
    assert_eq!(got[0].json(), done);
}

/// Reads a thread's SSE stream at `base` until `count` `webhook` events came; returns their data.
async fn webhook_events(response: &mut reqwest::Response, count: usize) -> Vec<Value> {
    let mut buffer = String::new();
    let mut found = Vec::new();
    while found.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("an event in time")
            .expect("stream readable")
            .expect("stream open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: webhook") {
                assert!(
                    !block.lines().any(|l| l.starts_with("id:")),
                    "a webhook event has no id: {block}"
                );
                let data = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<String>();
                found.push(serde_json::from_str(&data).expect("JSON data"));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_a_third_attempt() {
    let app = app_with(None, 5).await;
    let receiver = Receiver::start(&[500, 500]).await;
    // A first turn without a webhook, so the stream is open before the deliveries start.
    let (code, first) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "thread_id": "retried"}),
        )
        .await;
    assert_eq!(code, 200, "{first}");
    let mut stream = http_builder()
        .build()
        .expect("client")
        .get(app.url("/api/threads/retried/events"))
        .send()
        .await
        .expect("stream opened");
    assert_eq!(stream.status().as_u16(), 200);

    let (code, done) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Paris", "thread_id": "retried",
                    "webhook": receiver.url}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed");

    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("x-baton-delivery")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one delivery: {ids:?}");
    let numbers: Vec<&str> = got.iter().map(|r| r.header("x-baton-attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "same bytes each time"
    );
    for r in &got {
        r.assert_signed_with(SECRET);
    }

    let listing = deliveries_when(&app.base(), "retried", |l| states(l) == ["delivered"]).await;
    let attempts = listing["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .clone();
    let seen: Vec<(i64, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["status_code"].as_i64().expect("code"),
                a["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(seen, [(500, "retry"), (500, "retry"), (200, "delivered")]);
    assert!(attempts[0]["next_attempt_at"].as_i64().is_some());
    assert!(attempts[2]["next_attempt_at"].is_null());

    let events = webhook_events(&mut stream, 3).await;
    let live: Vec<(i64, &str)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "webhook");
            assert_eq!(e["thread_id"], "retried");
            assert_eq!(e["event"], "completed");
            (
                e["attempt"].as_i64().expect("attempt"),
                e["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(live, [(1, "retry"), (2, "retry"), (3, "delivered")]);
}

#[tokio::test]
async fn a_receiver_that_is_down_fails_its_delivery_not_the_thread() {
    let app = app_with(None, 3).await;
    let down = format!("{}/hook", unreachable_base_url().await);
    let (code, done) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "webhook": down}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed", "the run did not wait: {done}");
    let thread = thread_of(&done);
    let listing = deliveries_when(&app.base(), &thread, |l| states(l) == ["failed"]).await;
    let attempts = listing["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "failed"]);
    for attempt in attempts {
        assert!(attempt["status_code"].is_null(), "{attempt}");
        assert!(
            !attempt["error"].as_str().expect("error").is_empty(),
            "{attempt}"
        );
    }
    let (_, status) = app.status_of(&thread).await;
    assert_eq!(status["status"], "completed");
}

#[tokio::test]
async fn a_4xx_is_final() {
    let app = app_with(None, 5).await;
    let receiver = Receiver::start(&[410]).await;
    let (_, done) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "webhook": receiver.url}),
        )
        .await;
    let thread = thread_of(&done);
    let listing = deliveries_when(&app.base(), &thread, |l| states(l) == ["failed"]).await;
    let attempts = listing["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 1, "{listing}");
    assert_eq!(attempts[0]["status_code"], 410);
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test]
async fn a_refused_or_malformed_webhook_is_422_and_starts_nothing() {
    let app = spawn_app_with(|s| s.agent_url_allow = vec!["127.0.0.1:9".into()]).await;
    for (n, webhook) in [
        json!("http://10.1.2.3/hook"),
        json!("not a url"),
        json!("ftp://127.0.0.1:9/hook"),
        json!(""),
        json!(42),
    ]
    .into_iter()
    .enumerate()
    {
        let thread = format!("refused-{n}");
        let (code, body) = app
            .post(
                "/api/chat",
                &json!({"prompt": "What is the weather in Oslo", "thread_id": thread,
                        "webhook": webhook}),
            )
            .await;
        assert_eq!(code, 422, "{webhook}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains("webhook"),
            "names the field: {body}"
        );
        let (code, _) = app.status_of(&thread).await;
        assert_eq!(code, 404, "no thread started for {webhook}");
        let (code, body) = app.get(&format!("/api/threads/{thread}/webhooks")).await;
        assert_eq!(code, 404, "{body}");
    }
    // An allowed one is taken.
    let (code, body) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "webhook": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // The WebSocket's start is held to the same.
    let mut socket = connect_ws(&app.ws_url()).await;
    socket
        .send(Message::Text(
            json!({"type": "start", "prompt": "What is the weather in Oslo",
                   "thread_id": "refused-ws", "webhook": "http://10.1.2.3/hook"})
            .to_string()
            .into(),
        ))
        .await
        .expect("sent");
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(
        frame["error"].as_str().expect("error").contains("webhook"),
        "{frame}"
    );
    let (code, _) = app.status_of("refused-ws").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_new_turn_keeps_the_webhook_or_replaces_it() {
    let app = app_with(None, 3).await;
    let first = Receiver::start(&[]).await;
    let second = Receiver::start(&[]).await;
    let weather = |webhook: Option<&str>| {
        let mut body = json!({"prompt": "What is the weather in Oslo", "thread_id": "turns"});
        if let Some(url) = webhook {
            body["webhook"] = json!(url);
        }
        body
    };
    for body in [
        weather(Some(&first.url)),
        weather(None),
        weather(Some(&second.url)),
    ] {
        let (code, done) = app.post("/api/chat", &body).await;
        assert_eq!(code, 200, "{done}");
    }
    first.wait_for(2).await;
    second.wait_for(1).await;
    let listing = deliveries_when(&app.base(), "turns", |l| {
        states(l) == ["delivered", "delivered", "delivered"]
    })
    .await;
    assert_eq!(listing["webhook"], second.url.as_str());
    assert_eq!(first.got().len(), 2);
}

#[tokio::test]
async fn a_cancelled_thread_is_delivered_as_cancelled() {
    let app = app_with(None, 3).await;
    let receiver = Receiver::start(&[]).await;
    let (_, paused) = app
        .post(
            "/api/chat",
            &json!({"prompt": GUIDANCE, "webhook": receiver.url}),
        )
        .await;
    let thread = thread_of(&paused);
    let (code, cancelled) = app
        .post(&format!("/api/threads/{thread}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 200, "{cancelled}");
    let got = receiver.wait_for(2).await;
    let events: Vec<&str> = got.iter().map(|r| r.header("x-baton-event")).collect();
    assert_eq!(events, ["paused", "cancelled"]);
    assert_eq!(got[1].json()["status"], "cancelled");
}

#[tokio::test]
async fn a_delivery_due_at_a_kill_9_is_made_after_the_restart() {
    let (_dir, db) = temp_db();
    // A receiver that is down now and comes up, on the same port, while Baton is dead.
    let addr = {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        held.local_addr().expect("addr").to_string()
    };
    let url = format!("http://{addr}/hook");
    let flags = [
        "--webhook-secret",
        SECRET,
        "--webhook-backoff-ms",
        "300",
        "--webhook-timeout-ms",
        "1000",
    ];
    let server = ServerProcess::start(&db, &flags);
    let (code, paused) = post(
        &server.base,
        "/api/chat",
        json!({"prompt": GUIDANCE, "webhook": url}),
    )
    .await;
    assert_eq!(code, 200, "{paused}");
    let thread = thread_of(&paused);
    // The first attempt failed (nothing listens); the next one is due.
    let before = deliveries_when(&server.base, &thread, |l| {
        l["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let delivery_id = before["deliveries"][0]["delivery_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(before["deliveries"][0]["state"], "pending", "{before}");
    server.kill9();

    let receiver = Receiver::start_on(&addr).await;
    let server = ServerProcess::start(&db, &flags);
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("x-baton-delivery"), delivery_id);
    assert_eq!(got[0].header("x-baton-event"), "paused");
    assert!(got[0].header("x-baton-attempt").parse::<i64>().expect("n") >= 2);
    got[0].assert_signed_with(SECRET);
    assert_eq!(got[0].json(), paused);

    // The restarted server goes on as usual: the answer's end is delivered too.
    let (code, done) = answer_at(&server.base, &thread, ANSWER).await;
    assert_eq!(code, 200, "{done}");
    let got = receiver.wait_for(2).await;
    assert_eq!(
        got.last().expect("second").header("x-baton-event"),
        "completed"
    );
    assert_eq!(got.last().expect("second").json(), done);
}

#[tokio::test]
async fn two_postgres_processes_deliver_each_checkpoint_once() {
    let pg = TestPostgres::create().await;
    let flags = ["--webhook-secret", SECRET, "--webhook-backoff-ms", "100"];
    let a = ServerProcess::start_url(&pg.url, &flags);
    let b = ServerProcess::start_url(&pg.url, &flags);
    let receiver = Receiver::start(&[]).await;
    let threads = 8;
    let mut answered = Vec::new();
    for n in 0..threads {
        let (start_on, answer_on) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (code, paused) = post(
            &start_on.base,
            "/api/chat",
            json!({"prompt": GUIDANCE, "webhook": receiver.url}),
        )
        .await;
        assert_eq!(code, 200, "{paused}");
        let thread = thread_of(&paused);
        let (code, done) = answer_at(&answer_on.base, &thread, ANSWER).await;
        assert_eq!(code, 200, "{done}");
        answered.push((thread, paused, done));
    }
    receiver.wait_for(2 * threads).await;
    // Long enough for a second process's duplicate, had there been one, to arrive.
    for (thread, _, _) in &answered {
        deliveries_when(&a.base, thread, |l| states(l) == ["delivered", "delivered"]).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 2 * threads, "each checkpoint once");
    let mut per_delivery: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        r.assert_signed_with(SECRET);
        *per_delivery
            .entry(r.header("x-baton-delivery"))
            .or_default() += 1;
    }
    assert!(per_delivery.values().all(|n| *n == 1), "{per_delivery:?}");
    for (thread, paused, done) in &answered {
        // Deliveries are not ordered (two of one thread may be claimed together): their
        // `X-Baton-Version` is.
        let mut bodies: Vec<(i64, Value)> = got
            .iter()
            .filter(|r| r.json()["thread_id"] == thread.as_str())
            .map(|r| {
                let version = r.header("x-baton-version").parse().expect("a version");
                (version, r.json())
            })
            .collect();
        bodies.sort_by_key(|(version, _)| *version);
        let bodies: Vec<Value> = bodies.into_iter().map(|(_, body)| body).collect();
        assert_eq!(bodies, [paused.clone(), done.clone()], "{thread}");
    }
}

#[tokio::test]
async fn a_failed_attempt_keeps_the_start_of_what_the_receiver_said_and_no_more() {
    let app = spawn_app_with(|s| {
        s.webhook_attempts = 1;
        s.webhook_max_response_bytes = 64;
    })
    .await;
    // 1 MB of answer: only its first 64 bytes are read.
    let said = format!("queue full, try later {}", "z".repeat(1 << 20));
    let url = serve_on_loopback(move |_| {
        axum::Router::new().route(
            "/hook",
            post_route(move || {
                let said = said.clone();
                async move { (StatusCode::INTERNAL_SERVER_ERROR, said) }
            }),
        )
    })
    .await;
    let (code, done) = app
        .post(
            "/api/chat",
            &json!({"prompt": "What is the weather in Oslo", "webhook": format!("{url}/hook")}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    let thread = thread_of(&done);
    let listing = deliveries_when(&app.base(), &thread, |l| states(l) == ["failed"]).await;
    let attempt = &listing["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["status_code"], 500, "{listing}");
    let error = attempt["error"].as_str().expect("the attempt says why");
    let excerpt = error
        .strip_prefix("the receiver answered 500: ")
        .unwrap_or_else(|| panic!("{error}"));
    assert!(excerpt.starts_with("queue full, try later zzz"), "{error}");
    assert_eq!(excerpt.len(), 64, "{error}");
}
