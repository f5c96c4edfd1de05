//! The crash harness (issue 9, part 5): sixty concurrent multi-turn conversations against real
//! agents on loopback, while the real binary is killed with SIGKILL at random moments and
//! restarted on the same database, on SQLite and on PostgreSQL.
//!
//! The agents: an A2A agent on the Python a2a-sdk's own server (`tests/python/crash_agent.py`,
//! which does not deduplicate by idempotency key) that asks for the city, then works a while on
//! the answer; and a REST parcel tracker served here, which takes a few hundred ms, honours the
//! `Idempotency-Key` header and counts requests and executions per key. Each conversation is a
//! client state machine that re-reads its thread after every request (requests fail or hang when
//! the server dies) and does what the thread needs next. At the end the test checks that every
//! turn completed with what its agents produced, that every answer reached its agent, and that no
//! agent call executed twice; it prints the figures (`cargo test --test api crash --
//! --nocapture`). `BATON_CRASH_SEED=N` replays a run's kill moments and agents' pauses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    PythonAgent, ServerProcess, TestPostgres, http_builder, post, serve_on_loopback, temp_db,
};

/// Conversations driven at once, unless `BATON_CRASH_CONVERSATIONS` says more.
const CONVERSATIONS: usize = 60;
/// SIGKILLs per test, each followed by a restart on the same database, unless
/// `BATON_CRASH_KILLS` says more.
const KILLS: usize = 6;
/// The A2A agent's question, which every weather turn must ask.
const QUESTION: &str = "Which city exactly?";
/// Time for everything; past it the test fails naming the threads still unfinished.
const DEADLINE: Duration = Duration::from_secs(150);
/// A client request's longest wait: a request to a killed server must not hold a conversation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_conversations_survive_repeated_kill_9_on_sqlite() {
    let (dir, path) = temp_db();
    run_harness(Database::Sqlite { _dir: dir, path }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_conversations_survive_repeated_kill_9_on_postgres() {
    let pg = TestPostgres::create().await;
    run_harness(Database::Postgres(pg)).await;
}

/// The database the Baton processes of one test share.
enum Database {
    /// The file, in a directory that lives as long as the test.
    Sqlite {
        _dir: TempDir,
        path: PathBuf,
    },
    Postgres(TestPostgres),
}

impl Database {
    fn name(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            Database::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Database::Postgres(pg) => pg.url.clone(),
        }
    }
}

/// Starts a Baton process on `url` off the runtime's threads (it blocks until the process
/// listens); the short lease lets a restarted PostgreSQL process take runs over soon.
async fn start_baton(url: &str) -> ServerProcess {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        ServerProcess::start_url(&url, &["--no-demo-agents", "--lease-ms", "1000"])
    })
    .await
    .expect("baton started")
}

/// A tiny xorshift64 PRNG: the kill moments and pauses of a run come from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Milliseconds in `[low, high)`.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

/// `name` from the environment when it says more than `floor`, else `floor`: a harder run is
/// `BATON_CRASH_CONVERSATIONS=200 BATON_CRASH_KILLS=15`.
fn at_least(name: &str, floor: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(floor, |n: usize| n.max(floor))
}

/// `BATON_CRASH_SEED`, else one from the clock (printed, so a failing run can be replayed).
fn seed() -> u64 {
    std::env::var("BATON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
        })
}

/// Now, in Unix seconds (the Python agent's clock), to place kills among executions.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How many of `spans` (start, end) were under way at one of `kills`: the work the kills cut
/// across (an unfinished span counts as under way to the end).
fn in_flight(spans: &[(f64, Option<f64>)], kills: &[f64]) -> usize {
    spans
        .iter()
        .filter(|(start, end)| {
            kills
                .iter()
                .any(|k| start <= k && end.is_none_or(|end| *k <= end))
        })
        .count()
}

/// FNV-1a, to derive a per-key pause from the seed.
fn hash(seed: u64, text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The logical call an idempotency key `thread/turn/call/attempt` names: the key without its
/// attempt, so a retry under another attempt number still counts as the same call.
fn logical_call(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(call, _)| call)
}

// ---------------------------------------------------------------------------------------------
// The A2A agent (Python a2a-sdk)

/// One line of the agent's log (`crash_agent.py`).
#[derive(Debug, Clone)]
struct Execution {
    kind: String,
    message_id: String,
    idempotency_key: String,
    text: String,
    /// When it was logged, in Unix seconds.
    at: f64,
}

/// Starts `crash_agent.py`, its pauses drawn from `seed`, logging into `dir`.
fn start_agent(dir: &Path, seed: u64) -> PythonAgent {
    let seed = seed.to_string();
    let log = dir.join("a2a-executions.jsonl");
    PythonAgent::start("crash_agent.py", log, &["--seed", &seed])
}

/// What the agent executed so far.
fn executions(agent: &PythonAgent) -> Vec<Execution> {
    agent
        .logged()
        .iter()
        .map(|line| {
            let field = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
            Execution {
                kind: field("kind"),
                message_id: field("message_id"),
                idempotency_key: field("idempotency_key"),
                text: field("text"),
                at: line["at"].as_f64().unwrap_or_default(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The REST agent (served here)

/// A parcel tracker that honours `Idempotency-Key`: the first request with a key executes (on a
/// task of its own, so a caller that hangs up does not cut it short), every later one gets the
/// stored result.
#[derive(Default)]
struct Parcels {
    seed: u64,
    requests: Mutex<BTreeMap<String, u32>>,
    executions: Mutex<BTreeMap<String, u32>>,
    results: Mutex<BTreeMap<String, Arc<tokio::sync::OnceCell<Value>>>>,
    /// When each execution started and ended, in Unix seconds.
    spans: Mutex<Vec<(f64, Option<f64>)>>,
}

/// What the tracker says of parcel `number`: the content the conversation must get back.
fn parcel_status(number: &str) -> String {
    format!("Parcel {number} is out for delivery")
}

impl Parcels {
    async fn track(self: Arc<Self>, key: String, number: String) -> Value {
        *self
            .requests
            .lock()
            .expect("lock")
            .entry(key.clone())
            .or_default() += 1;
        let cell = self
            .results
            .lock()
            .expect("lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let parcels = self.clone();
        let work = tokio::spawn(async move {
            cell.get_or_init(|| async {
                *parcels
                    .executions
                    .lock()
                    .expect("lock")
                    .entry(key.clone())
                    .or_default() += 1;
                let started = unix_now();
                let pause = Rng::new(hash(parcels.seed, &key)).millis(200, 600);
                tokio::time::sleep(pause).await;
                let span = (started, Some(unix_now()));
                parcels.spans.lock().expect("lock").push(span);
                json!({ "result": parcel_status(&number) })
            })
            .await
            .clone()
        });
        work.await.expect("the tracking work")
    }

    fn requests(&self) -> BTreeMap<String, u32> {
        self.requests.lock().expect("lock").clone()
    }

    fn executions(&self) -> BTreeMap<String, u32> {
        self.executions.lock().expect("lock").clone()
    }
}

async fn serve_parcels(parcels: Arc<Parcels>) -> String {
    serve_on_loopback(move |_| {
        Router::new()
            .route(
                "/track",
                get(
                    |State(parcels): State<Arc<Parcels>>,
                     headers: HeaderMap,
                     Query(query): Query<BTreeMap<String, String>>| async move {
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("(no key)")
                            .to_owned();
                        let number = query.get("tracking_number").cloned().unwrap_or_default();
                        axum::Json(parcels.track(key, number).await)
                    },
                ),
            )
            .with_state(parcels)
    })
    .await
}

/// The tracker's card in the original system's REST format.
fn parcels_card(base: &str) -> Value {
    json!({
        "id": "parcels", "owner_id": "shiptrack", "name": "ParcelTrack",
        "description": "Tracks parcels across UPS, FedEx, DHL and USPS.",
        "capabilities": ["tracking", "package", "parcel", "shipping", "delivery"],
        "price_per_call_usd": 0.001, "status": "active", "rating": 4.0, "public_key_pem": null,
        "endpoints": [{
            "endpoint": format!("{base}/track"), "http_method": "GET",
            "description": "Track a package by its tracking number",
            "parameters": [{"name": "tracking_number", "param_type": "string", "required": true,
                            "description": "The carrier tracking number, e.g. 1Z999AA10123456784"}]
        }]
    })
}

// ---------------------------------------------------------------------------------------------
// The conversations

/// One turn of a conversation: the prompt, the answer to the agent's question (weather turns),
/// and what the final response must say.
#[derive(Debug, Clone)]
struct TurnPlan {
    prompt: String,
    answer: Option<String>,
    expect: String,
}

/// Conversation `i`: the weather (asked back, answered with a city of its own), a parcel of its
/// own, the weather again (another city).
fn plan(i: usize) -> Vec<TurnPlan> {
    let first_city = format!("Avalon{i:03}");
    let second_city = format!("Brigadoon{i:03}");
    let parcel = format!("1Z{i:03}AA10123456784");
    vec![
        TurnPlan {
            prompt: "What is the weather forecast?".into(),
            expect: format!("Sunny in {first_city}"),
            answer: Some(first_city),
        },
        TurnPlan {
            prompt: format!("Where is my package {parcel}?"),
            expect: parcel_status(&parcel),
            answer: None,
        },
        TurnPlan {
            prompt: "And the weather forecast for my next stop?".into(),
            expect: format!("Sunny in {second_city}"),
            answer: Some(second_city),
        },
    ]
}

fn thread_name(i: usize) -> String {
    format!("crash-{i:03}")
}

/// The base URL of the Baton process currently up; the killer changes it on every restart.
#[derive(Clone)]
struct Base(Arc<RwLock<String>>);

impl Base {
    fn get(&self) -> String {
        self.0.read().expect("lock").clone()
    }

    fn set(&self, base: String) {
        *self.0.write().expect("lock") = base;
    }
}

/// What a conversation did and saw, kept as it goes (the deadline report reads `last`).
#[derive(Debug, Default, Clone)]
struct Record {
    /// The last thing the client saw, for the deadline's message.
    last: String,
    /// Final responses, per turn, as first seen completed.
    finals: Vec<Option<String>>,
    /// Answers posted per turn.
    answers_sent: Vec<u32>,
    /// Rounds of answers posted per turn (more than one: the first was cut off by a kill before
    /// the thread took it).
    answer_rounds: Vec<u32>,
    /// Answers refused with 409 (already taken, or the thread no longer waiting).
    answer_conflicts: u32,
    /// Requests that failed or timed out (the server died under them, or was down).
    failed_requests: u32,
    done: bool,
}

type Records = Arc<Vec<Mutex<Record>>>;

/// One request with the short client timeout; an error is the server being down or dying.
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Drives conversation `i` to the end of its last turn: read the thread, act on what it says,
/// read again. Returns an error for a thread that ended otherwise than as planned.
async fn drive(i: usize, base: Base, records: Records) -> Result<(), String> {
    let client = http_builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let thread = thread_name(i);
    let turns = plan(i);
    let note = |f: &mut dyn FnMut(&mut Record)| f(&mut records[i].lock().expect("lock"));
    note(&mut |r| {
        r.finals = vec![None; turns.len()];
        r.answers_sent = vec![0; turns.len()];
        r.answer_rounds = vec![0; turns.len()];
    });
    let pause = || tokio::time::sleep(Duration::from_millis(100));
    loop {
        let base = base.get();
        let read = send(client.get(format!("{base}/api/threads/{thread}/checkpoint"))).await;
        let checkpoint = match read {
            Ok((200, checkpoint)) => checkpoint,
            Ok((404, _)) => {
                // Not started yet (or the start never reached the store): start it.
                let body = json!({"prompt": turns[0].prompt, "thread_id": thread});
                let sent = send(client.post(format!("{base}/api/chat")).json(&body)).await;
                note(&mut |r| {
                    r.last = format!("turn 0 starting: {}", brief(&sent));
                    r.failed_requests += u32::from(sent.is_err());
                });
                continue;
            }
            other => {
                note(&mut |r| {
                    r.last = format!("reading: {}", brief(&other));
                    r.failed_requests += 1;
                });
                pause().await;
                continue;
            }
        };
        let state = &checkpoint["state"];
        // Earlier turns: counted by the state (and, in a state an older Baton wrote, carried).
        let k = state["earlier_turns"].as_u64().unwrap_or(0) as usize
            + state["history"].as_array().map_or(0, Vec::len);
        let Some(turn) = turns.get(k) else {
            return Err(format!("{thread}: more turns than were asked: {state}"));
        };
        if state["prompt"] != turn.prompt.as_str() {
            return Err(format!(
                "{thread}: turn {k} has prompt {} instead of {:?}",
                state["prompt"], turn.prompt
            ));
        }
        let status = state["status"].as_str().unwrap_or_default().to_owned();
        note(&mut |r| r.last = format!("turn {k} {status} (version {})", checkpoint["version"]));
        match status.as_str() {
            "processing" => pause().await,
            "pending_user_input" => {
                let question = state["pending_questions"][0]["text"]
                    .as_str()
                    .unwrap_or_default();
                let Some(answer) = turn
                    .answer
                    .as_deref()
                    .filter(|_| question.contains(QUESTION))
                else {
                    return Err(format!("{thread}: turn {k} asked {question:?}: {state}"));
                };
                // Every fourth conversation answers twice at once, as an impatient client
                // retrying would: exactly one of the two may be taken.
                let copies = if i.is_multiple_of(4) { 2 } else { 1 };
                let body = json!({"thread_id": thread, "response": answer});
                let url = format!("{base}/api/chat/continue");
                let sends = (0..copies).map(|_| send(client.post(&url).json(&body)));
                for sent in futures_util::future::join_all(sends).await {
                    note(&mut |r| {
                        r.last = format!("turn {k} answered: {}", brief(&sent));
                        r.answers_sent[k] += 1;
                        r.answer_conflicts += u32::from(matches!(sent, Ok((409, _))));
                        r.failed_requests += u32::from(sent.is_err());
                    });
                }
                note(&mut |r| r.answer_rounds[k] += 1);
            }
            "completed" => {
                let text = state["final_response"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                note(&mut |r| {
                    r.finals[k].get_or_insert_with(|| text.clone());
                });
                let Some(next) = turns.get(k + 1) else {
                    note(&mut |r| r.done = true);
                    return Ok(());
                };
                let body = json!({"prompt": next.prompt, "thread_id": thread});
                let sent = send(client.post(format!("{base}/api/chat")).json(&body)).await;
                note(&mut |r| {
                    r.last = format!("turn {} starting: {}", k + 1, brief(&sent));
                    r.failed_requests += u32::from(sent.is_err());
                });
            }
            _ => {
                return Err(format!(
                    "{thread}: turn {k} ended {status}: {}",
                    state["error"]
                ));
            }
        }
    }
}

/// A request's outcome in a few words, for the record.
fn brief(outcome: &Result<(u16, Value), String>) -> String {
    match outcome {
        Ok((code, body)) => format!(
            "{code} {}",
            body.to_string().chars().take(120).collect::<String>()
        ),
        Err(e) => format!("failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

async fn run_harness(database: Database) {
    let started = Instant::now();
    let seed = seed();
    let conversations = at_least("BATON_CRASH_CONVERSATIONS", CONVERSATIONS);
    let kill_count = at_least("BATON_CRASH_KILLS", KILLS);
    let store = database.name();
    eprintln!("crash harness on {store}: seed {seed} (BATON_CRASH_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = start_agent(dir.path(), seed);
    let parcels = Arc::new(Parcels {
        seed,
        ..Parcels::default()
    });
    let parcels_base = serve_parcels(parcels.clone()).await;

    let url = database.url();
    let mut server = start_baton(&url).await;
    let (code, card) = post(
        &server.base,
        "/api/agents/discover",
        json!({"url": agent.url}),
    )
    .await;
    assert!(code == 200 || code == 201, "discover: {code} {card}");
    let (code, card) = post(&server.base, "/api/agents", parcels_card(&parcels_base)).await;
    assert_eq!(code, 201, "the REST card: {card}");

    // The conversations start spread over two seconds, so kills find them at every stage.
    let base = Base(Arc::new(RwLock::new(server.base.clone())));
    let records: Records = Arc::new((0..conversations).map(|_| Mutex::default()).collect());
    let drivers: Vec<_> = (0..conversations)
        .map(|i| {
            let (base, records) = (base.clone(), records.clone());
            let delay = rng.millis(0, 2_000);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                drive(i, base, records).await
            })
        })
        .collect();

    // SIGKILL at random moments, each time a new process on the same database at once. Some
    // intervals are short enough to kill a process while it takes runs over and reattaches.
    let mut unfinished_at_kills = Vec::new();
    let mut kills = Vec::new();
    for kill in 1..=kill_count {
        tokio::time::sleep(rng.millis(50, 1_000)).await;
        let unfinished = records
            .iter()
            .filter(|r| !r.lock().expect("lock").done)
            .count();
        assert!(
            unfinished > 0,
            "{store}, seed {seed}: every conversation finished before kill {kill}: give them more \
             work"
        );
        unfinished_at_kills.push(unfinished);
        kills.push(unix_now());
        server.kill9();
        server = start_baton(&url).await;
        base.set(server.base.clone());
    }

    let deadline = tokio::time::Instant::from_std(started + DEADLINE);
    let mut failures = Vec::new();
    for (i, driver) in drivers.into_iter().enumerate() {
        let abort = driver.abort_handle();
        match tokio::time::timeout_at(deadline, driver).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("{}: the driver panicked: {e}", thread_name(i))),
            Err(_) => abort.abort(),
        }
    }
    let stuck: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.lock().expect("lock").clone()))
        .filter(|(_, r)| !r.done)
        .map(|(i, r)| format!("{}: {}", thread_name(i), r.last))
        .collect();
    assert!(
        failures.is_empty(),
        "{store}, seed {seed}: conversations that went wrong:\n{}",
        failures.join("\n")
    );
    assert!(
        stuck.is_empty(),
        "{store}, seed {seed}: {} conversations unfinished after {DEADLINE:?} (last seen):\n{}",
        stuck.len(),
        stuck.join("\n")
    );
    let wall = started.elapsed();
    let records: Vec<Record> = records
        .iter()
        .map(|r| r.lock().expect("lock").clone())
        .collect();
    let report = Report::of(&records, &executions(&agent), &parcels, &kills);
    eprintln!(
        "crash harness on {store} (seed {seed}): {conversations} conversations, {} turns \
         completed, {kill_count} kills (conversations unfinished at each: {unfinished_at_kills:?})\n\
         \x20 A2A executions: {} first, {} answer ({} calls, {} answers; {} under way at a kill); \
         duplicate executions: {}\n\
         \x20 REST: {} requests, {} executions ({} calls; {} under way at a kill); duplicate \
         executions: {}\n\
         \x20 answers: {} posted, {} resent, {} refused with 409, {} lost\n\
         \x20 failed client requests: {}; wall time {:.1} s",
        report.turns_completed,
        report.firsts,
        report.answers,
        report.first_calls,
        report.answer_calls,
        report.a2a_cut,
        report.a2a_duplicates,
        report.rest_requests,
        report.rest_executions,
        report.rest_calls,
        report.rest_cut,
        report.rest_duplicates,
        report.answers_posted,
        report.answers_resent,
        report.answer_conflicts,
        report.lost.len(),
        report.failed_requests,
        wall.as_secs_f64(),
    );
    let problems = report.problems(&records);
    if !problems.is_empty() {
        // Keep the agent's log for the post-mortem: the temp dir goes with the test.
        let kept = std::env::temp_dir().join(format!("baton-crash-{store}-{seed}.jsonl"));
        let _ = std::fs::copy(&agent.log, &kept);
        panic!(
            "{store}, seed {seed} (the A2A agent's log: {}; kills at {kills:?}):\n{}",
            kept.display(),
            problems.join("\n")
        );
    }
    drop(server);
}

/// The figures of a run, and what they must say.
#[derive(Debug, Default)]
struct Report {
    turns_completed: usize,
    /// A2A executions of first messages and of answers, and the logical calls behind them.
    firsts: usize,
    answers: usize,
    first_calls: usize,
    answer_calls: usize,
    /// Executions beyond the first per logical call, and per `messageId`: `(call, count)`.
    a2a_duplicates: usize,
    a2a_duplicated: Vec<(String, usize)>,
    /// Executions a kill found under way (A2A, REST).
    a2a_cut: usize,
    rest_cut: usize,
    rest_requests: u32,
    rest_executions: u32,
    rest_calls: usize,
    rest_duplicates: u32,
    rest_duplicated: Vec<(String, u32)>,
    answers_posted: u32,
    answers_resent: u32,
    answer_conflicts: u32,
    /// Conversations' answers no execution of the A2A agent received: `thread/turn: answer`.
    lost: Vec<String>,
    /// Turns whose final response lacks what their agent produced: `thread/turn: response`.
    wrong: Vec<String>,
    failed_requests: u32,
}

impl Report {
    fn of(
        records: &[Record],
        executions: &[Execution],
        parcels: &Parcels,
        kills: &[f64],
    ) -> Report {
        let mut report = Report::default();
        // An execution runs from its first/answer line to the asked/done line of its message.
        let ends: BTreeMap<(&str, &str), f64> = executions
            .iter()
            .map(|e| ((e.kind.as_str(), e.message_id.as_str()), e.at))
            .collect();
        let spans: Vec<(f64, Option<f64>)> = executions
            .iter()
            .filter_map(|e| {
                let end = match e.kind.as_str() {
                    "first" => "asked",
                    "answer" => "done",
                    _ => return None,
                };
                Some((e.at, ends.get(&(end, e.message_id.as_str())).copied()))
            })
            .collect();
        report.a2a_cut = in_flight(&spans, kills);
        report.rest_cut = in_flight(&parcels.spans.lock().expect("lock"), kills);
        // Executions per logical call (the key without its attempt) and per messageId.
        let mut per_call: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
        for e in executions
            .iter()
            .filter(|e| e.kind == "first" || e.kind == "answer")
        {
            let call = logical_call(&e.idempotency_key).to_owned();
            *per_call.entry((e.kind.clone(), call)).or_default() += 1;
            *per_message.entry(e.message_id.clone()).or_default() += 1;
        }
        report.firsts = executions.iter().filter(|e| e.kind == "first").count();
        report.answers = executions.iter().filter(|e| e.kind == "answer").count();
        report.first_calls = per_call.keys().filter(|(kind, _)| kind == "first").count();
        report.answer_calls = per_call.keys().filter(|(kind, _)| kind == "answer").count();
        report.a2a_duplicated = per_call
            .iter()
            .map(|((kind, call), n)| (format!("{kind} {call}"), *n))
            .chain(
                per_message
                    .iter()
                    .map(|(id, n)| (format!("messageId {id}"), *n)),
            )
            .filter(|(_, n)| *n > 1)
            .collect();
        report.a2a_duplicates = per_call.values().map(|n| n - 1).sum();

        let requests = parcels.requests();
        let executed = parcels.executions();
        report.rest_requests = requests.values().sum();
        report.rest_executions = executed.values().sum();
        let mut rest_per_call: BTreeMap<&str, u32> = BTreeMap::new();
        for (key, n) in &executed {
            *rest_per_call.entry(logical_call(key)).or_default() += n;
        }
        report.rest_calls = rest_per_call.len();
        report.rest_duplicates = rest_per_call.values().map(|n| n - 1).sum();
        report.rest_duplicated = rest_per_call
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(call, n)| ((*call).to_owned(), *n))
            .collect();

        for (i, record) in records.iter().enumerate() {
            let thread = thread_name(i);
            report.answers_posted += record.answers_sent.iter().sum::<u32>();
            report.answers_resent += record
                .answer_rounds
                .iter()
                .map(|n| n.saturating_sub(1))
                .sum::<u32>();
            report.answer_conflicts += record.answer_conflicts;
            report.failed_requests += record.failed_requests;
            for (k, turn) in plan(i).iter().enumerate() {
                let final_text = record.finals.get(k).cloned().flatten();
                report.turns_completed += usize::from(final_text.is_some());
                if !final_text
                    .as_deref()
                    .is_some_and(|t| t.contains(&turn.expect))
                {
                    report.wrong.push(format!("{thread}/{k}: {final_text:?}"));
                }
                // Baton numbers turns from 1 in its keys: `thread/turn/…`.
                if let Some(answer) = &turn.answer {
                    let prefix = format!("{thread}/{}/", k + 1);
                    let reached = executions.iter().any(|e| {
                        e.kind == "answer"
                            && e.idempotency_key.starts_with(&prefix)
                            && e.text.trim() == answer
                    });
                    if !reached {
                        report.lost.push(format!("{thread}/{k}: {answer}"));
                    }
                }
            }
        }
        report
    }

    /// Everything that did not hold, one line each.
    fn problems(&self, records: &[Record]) -> Vec<String> {
        let weather_turns = records.len() * 2;
        let mut problems = Vec::new();
        let mut check = |held: bool, what: String| {
            if !held {
                problems.push(what);
            }
        };
        check(
            self.wrong.is_empty(),
            format!("turns without their agents' content: {:?}", self.wrong),
        );
        check(
            self.lost.is_empty(),
            format!("answers that never reached the agent: {:?}", self.lost),
        );
        check(
            self.a2a_duplicated.is_empty(),
            format!(
                "A2A messages executed more than once: {:?}",
                self.a2a_duplicated
            ),
        );
        check(
            self.rest_duplicated.is_empty(),
            format!(
                "REST calls executed more than once: {:?}",
                self.rest_duplicated
            ),
        );
        check(
            (self.first_calls, self.answer_calls) == (weather_turns, weather_turns),
            format!(
                "{} first calls and {} answers for {weather_turns} weather turns",
                self.first_calls, self.answer_calls
            ),
        );
        check(
            self.rest_calls == records.len(),
            format!(
                "{} REST calls for {} parcel turns",
                self.rest_calls,
                records.len()
            ),
        );
        problems
    }
}
