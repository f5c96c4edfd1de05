//! `GET /metrics` scraped around real runs (a completed chat, questions from the planner and
//! from an agent, calls to a real loopback A2A agent that fails), on SQLite and PostgreSQL; the
//! request id echoed in `x-request-id`; and `--log-json` of the real binary, every stderr line
//! parsed as JSON, the run's lines carrying the thread id.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{
    LoggingServer, QueryPlans, TestApp, TestPostgres, http, serve_on_loopback, spawn_app,
    spawn_app_with, temp_db, thread_of,
};

/// One sample of the exposition: its metric name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape of `/metrics`, parsed; every line must be a comment or a well-formed sample.
#[derive(Debug)]
pub(crate) struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the Prometheus text format: `name{k="v",…} value`, `# HELP`/`# TYPE` comments.
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type of {family}: {kind}"
                );
                typed.push(family.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") || line.is_empty() {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("labels end with }");
                    (name.to_owned(), parse_labels(labels))
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            // Every sample belongs to a family typed before it (counters by their `_total`).
            assert!(
                typed.iter().any(|family| name == *family
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}"))),
                "{name} has no TYPE line before it"
            );
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Scrape { text, samples }
    }

    /// The sum of the samples named `name` whose labels include all of `labels` (0 when none).
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether any sample named `name` has all of `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// `k="v",k2="v2"` (values without escapes: none of Baton's labels need them here).
fn parse_labels(labels: &str) -> BTreeMap<String, String> {
    let mut parsed = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("key=\"");
        let (value, after) = after.split_once('"').expect("closing quote");
        parsed.insert(key.to_owned(), value.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    parsed
}

/// Scrapes `/metrics` as curl would (no `Accept`): the classic text format.
pub(crate) async fn scrape(app: &TestApp) -> Scrape {
    let response = http()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(response.text().await.expect("body"))
}

/// An A2A agent on loopback that always fails (500), carded to rank above the demo weather
/// agent for the weather in Paris.
async fn broken_weather_agent(app: &TestApp) {
    let base = serve_on_loopback(|_| {
        Router::new().route(
            "/",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "station down") }),
        )
    })
    .await;
    let card = json!({
        "id": "broken", "name": "Broken station", "url": base, "protocolVersion": "1.0",
        "rating": 5.0, "description": "Weather forecasts for Paris",
        "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                    "tags": ["weather", "forecast", "paris"]}]
    });
    let (code, stored) = app.register(&card).await;
    assert_eq!(code, 201, "{stored}");
}

#[tokio::test]
async fn metrics_move_with_requests_runs_agent_calls_and_questions() {
    let app = spawn_app_with(|s| s.agent_timeout_ms = 5_000).await;
    broken_weather_agent(&app).await;
    let before = scrape(&app).await;

    // A completed chat whose first agent fails (and is retried), then the demo agent answers.
    let weather = app.chat("What's the weather in Paris").await;
    assert_eq!(weather["status"], "completed", "{weather}");
    assert_eq!(weather["task_agent_pairs"][0]["primary"]["id"], "broken");
    let result = app.state_of(&thread_of(&weather)).await["results"]["t1"].clone();
    assert_eq!(result["agent_id"], "demo.weather", "{result}");
    let failed_calls = result["attempts"].as_f64().expect("attempts") - 1.0;
    assert!(failed_calls >= 1.0, "{result}");
    // The planner asks; an agent asks.
    let guidance = app.chat("Help me analyze data but I need guidance").await;
    assert_eq!(guidance["status"], "pending_user_input", "{guidance}");
    let translate = app.chat("Translate my notes into French").await;
    assert_eq!(translate["status"], "pending_user_input", "{translate}");
    let (code, _) = app
        .get(&format!("/api/chat/status/{}", thread_of(&guidance)))
        .await;
    assert_eq!(code, 200);

    let after = scrape(&app).await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    // HTTP: by route template and status, never by the raw path.
    let chat = [
        ("method", "POST"),
        ("route", "/api/chat"),
        ("status", "200"),
    ];
    assert_eq!(moved("baton_http_requests_total", &chat), 3.0);
    let status_route = [("route", "/api/chat/status/{thread_id}"), ("status", "200")];
    assert_eq!(moved("baton_http_requests_total", &status_route), 1.0);
    assert_eq!(
        moved(
            "baton_http_request_duration_seconds_count",
            &[("route", "/api/chat")]
        ),
        3.0
    );
    for thread in [&weather, &guidance, &translate] {
        let id = thread_of(thread);
        assert!(
            !after.text.contains(&id),
            "a thread id leaked into a label: {id}"
        );
    }

    // Turns: started by a prompt, finished by outcome, with their latency.
    assert_eq!(
        moved("baton_turns_started_total", &[("trigger", "prompt")]),
        3.0
    );
    let finished = |outcome| moved("baton_turns_finished_total", &[("outcome", outcome)]);
    assert_eq!(finished("completed"), 1.0);
    assert_eq!(finished("pending_user_input"), 2.0);
    assert_eq!(finished("error"), 0.0);
    assert_eq!(
        moved(
            "baton_turn_duration_seconds_count",
            &[("outcome", "pending_user_input")]
        ),
        2.0
    );
    for node in [
        "parse_prompt",
        "rank_agents",
        "execute_batch",
        "aggregate_responses",
    ] {
        assert!(
            moved("baton_node_duration_seconds_count", &[("node", node)]) >= 1.0,
            "{node}"
        );
    }

    // Agent calls by agent and outcome, with their latency.
    let calls = |agent, outcome| {
        moved(
            "baton_agent_calls_total",
            &[("agent_id", agent), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("broken", "failed"), failed_calls);
    assert_eq!(calls("demo.weather", "answered"), 1.0);
    assert_eq!(calls("demo.translation", "asked"), 1.0);
    assert_eq!(
        moved(
            "baton_agent_call_duration_seconds_count",
            &[("agent_id", "broken")]
        ),
        failed_calls
    );

    // Questions by who asked.
    let asked = |by| moved("baton_questions_asked_total", &[("asked_by", by)]);
    assert_eq!(asked("planner"), 1.0);
    assert_eq!(asked("agent"), 1.0);

    // Threads by status, counted in the store (this test's own database).
    let threads = |status| after.sum("baton_threads", &[("status", status)]);
    assert_eq!(threads("completed"), 1.0);
    assert_eq!(threads("pending_user_input"), 2.0);
    assert_eq!(threads("processing"), 0.0);
    assert!(after.has("baton_threads", &[("status", "cancelled")]));

    // The store: checkpoint writes and the SQLite writer's groups.
    assert!(moved("baton_checkpoint_write_duration_seconds_count", &[]) >= 10.0);
    let groups = moved("baton_sqlite_group_commit_size_count", &[]);
    let grouped = moved("baton_sqlite_group_commit_size_sum", &[]);
    assert!(
        groups >= 1.0 && grouped >= groups,
        "{groups} groups of {grouped} writes"
    );
}

#[tokio::test]
async fn threads_are_counted_in_the_postgres_database() {
    let pg = TestPostgres::create().await;
    let app = spawn_app_with(|s| s.database_url = pg.url.clone()).await;
    let done = app.chat("Find me a weather agent").await;
    assert_eq!(done["status"], "completed", "{done}");
    let asking = app.chat("Help me analyze data but I need guidance").await;
    assert_eq!(asking["status"], "pending_user_input", "{asking}");
    let (code, _) = app
        .post(
            &format!("/api/threads/{}/cancel", thread_of(&asking)),
            &json!({}),
        )
        .await;
    assert_eq!(code, 200);

    let scrape = scrape(&app).await;
    let threads = |status| scrape.sum("baton_threads", &[("status", status)]);
    assert_eq!(threads("completed"), 1.0);
    assert_eq!(threads("cancelled"), 1.0);
    assert_eq!(threads("pending_user_input"), 0.0);
    assert_eq!(
        scrape.sum("baton_turns_finished_total", &[("outcome", "completed")]),
        1.0
    );
    assert!(scrape.sum("baton_checkpoint_write_duration_seconds_count", &[]) >= 3.0);
    // PostgreSQL's writer reports its groups under its own name, SQLite's nothing here.
    assert_eq!(scrape.sum("baton_sqlite_group_commit_size_count", &[]), 0.0);
    let groups = scrape.sum("baton_pg_group_commit_size_count", &[]);
    let grouped = scrape.sum("baton_pg_group_commit_size_sum", &[]);
    assert!(
        groups >= 1.0 && grouped >= 3.0 && grouped >= groups,
        "{groups} groups of {grouped} writes"
    );
    assert_eq!(
        scrape.sum("baton_pg_group_commit_duration_seconds_count", &[]),
        groups
    );
}

#[tokio::test]
async fn openmetrics_is_served_to_a_scraper_that_asks_for_it() {
    let app = spawn_app().await;
    app.chat("Find me a weather agent").await;
    let response = http()
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    // OpenMetrics names a counter's family without `_total`; its samples keep it.
    assert!(
        text.contains("# TYPE baton_turns_started counter\n"),
        "{text}"
    );
    assert!(
        text.contains("baton_turns_started_total{trigger=\"prompt\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    // The caller's own id comes back, on success and on errors alike.
    for path in ["/api/health", "/api/chat/status/nope", "/no/such/path"] {
        let response = http()
            .get(app.url(path))
            .header("x-request-id", "caller-42")
            .send()
            .await
            .expect("request");
        assert_eq!(id_of(&response), "caller-42", "{path}");
    }
    // Without one, or with one unfit for logs and headers, the server makes one (a UUID).
    let made = http()
        .get(app.url("/api/health"))
        .send()
        .await
        .expect("request");
    let made = id_of(&made);
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let too_long = "x".repeat(200);
    let replaced = http()
        .get(app.url("/api/health"))
        .header("x-request-id", &too_long)
        .send()
        .await
        .expect("request");
    let replaced = id_of(&replaced);
    assert_ne!(replaced, too_long);
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    // A method of the caller's invention is counted as `other`, not as a label of its own.
    let brewed = http()
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("method"),
            app.url("/api/health"),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(brewed.status(), 405);
    // A path no route matches is counted under one label, not its own.
    let scrape = scrape(&app).await;
    assert_eq!(
        scrape.sum(
            "baton_http_requests_total",
            &[
                ("method", "other"),
                ("route", "/api/health"),
                ("status", "405")
            ]
        ),
        1.0
    );
    assert!(!scrape.text.contains("BREW"));
    assert_eq!(
        scrape.sum(
            "baton_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(!scrape.text.contains("/no/such/path"));
}

#[tokio::test]
async fn log_json_writes_one_object_per_line_with_the_runs_thread_id() {
    let (_dir, db) = temp_db();
    let server = LoggingServer::start(&db);
    let base = server.server.base.clone();

    let response = http()
        .post(format!("{base}/api/chat"))
        .header("x-request-id", "log-test-1")
        .json(&json!({"prompt": "Help me analyze data but I need guidance"}))
        .send()
        .await
        .expect("chat");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "pending_user_input", "{body}");
    let thread = thread_of(&body);
    let lines = server.kill_and_read_log();

    assert!(!lines.is_empty());
    let objects: Vec<Value> = lines
        .iter()
        .map(|line| {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"));
            assert!(object.is_object(), "{line}");
            object
        })
        .collect();
    let in_run: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == "run" && s["thread_id"] == thread.as_str())
            })
        })
        .collect();
    assert!(
        in_run
            .iter()
            .any(|o| o["fields"]["message"] == "run stopped"),
        "no line of the run carries thread {thread}: {lines:#?}"
    );
    // The run was started by the request: its lines carry the request's span too.
    for line in &in_run {
        let spans = line["spans"].as_array().expect("spans");
        assert!(
            spans.iter().any(|s| s["name"] == "request"
                && s["request_id"] == "log-test-1"
                && s["route"] == "/api/chat"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn threads_are_counted_from_an_index_on_both_databases() {
    use baton::store::THREADS_BY_STATUS;
    let mut plans = QueryPlans::new().await;
    let plan = plans.sqlite(THREADS_BY_STATUS).await;
    assert!(plan.contains("USING COVERING INDEX"), "sqlite:\n{plan}");
    assert!(
        !plan.contains("TEMP B-TREE"),
        "sqlite sorts to group:\n{plan}"
    );
    let explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {THREADS_BY_STATUS}")));
    let plan = plans.postgres(explain).await;
    assert!(plan.contains("Index Only Scan"), "postgres:\n{plan}");
}
