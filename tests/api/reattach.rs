//! Calls in flight when Baton dies: the real binary on a SQLite file, killed with SIGKILL while
//! an A2A agent on loopback works on its call, restarted on the same file. The agent counts how
//! many times it executed each call: the restarted run finds the call's task (by the context it
//! chose, or by the agent's task id for an answer) instead of sending the work again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use baton::agents::a2a::server::{self, Handler, Versions};
use baton::agents::a2a::wire::{
    Artifact, Message, Part, Role, RpcError, RpcRequest, Task, TaskState, TaskStatus,
};
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::serve_on_loopback;
use crate::helpers::{
    ServerProcess, chat_at, eventually, get, post as post_at, question_text, temp_db, thread_of,
};
use crate::helpers::{completed_text, in_background, unreachable_base_url};

/// What the agent asks before it works, in the follow-up case.
const QUESTION: &str = "Which city exactly?";

/// A message that made the agent work: a new task, or the answer to its question.
#[derive(Debug, Clone)]
struct Execution {
    message_id: String,
    idempotency_key: Option<String>,
    context_id: Option<String>,
}

/// A weather agent that works until its gate opens, keeps its tasks, and records every message
/// it executed. `lookup` says whether it lets clients read tasks (`GetTask`, `ListTasks`).
struct Agent {
    /// v0.3-only agents have `tasks/get` but no `ListTasks`.
    versions: Versions,
    asks_first: bool,
    lookup: bool,
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Messages that started work on a new task.
    firsts: Mutex<Vec<Execution>>,
    /// Answers to the agent's question that it worked on.
    answers: Mutex<Vec<Execution>>,
    /// How many answers to lose still: such an answer hangs until the gate opens, unrecorded,
    /// like one cut off on its way.
    answers_to_lose: Mutex<u32>,
    lost: Mutex<u32>,
    /// Messages refused because their task had already ended (the `-32004` of the issue).
    refused_terminal: Mutex<u32>,
    /// How many lookups still answer as if the last message had not arrived: an agent whose
    /// lookups lag behind what it executes (the Python SDK under load stores a task, or the
    /// answer in its history, only once its executor's first event is processed).
    lagging_lookups: Mutex<u32>,
    /// The last message's task as it was before that message (`None`: it did not exist), for
    /// the lagging lookups.
    before_last: Mutex<Option<(String, Option<Task>)>>,
    gate: watch::Sender<bool>,
}

impl Agent {
    fn new(asks_first: bool, lookup: bool) -> Arc<Agent> {
        Self::speaking(Versions::Both, asks_first, lookup)
    }

    fn speaking(versions: Versions, asks_first: bool, lookup: bool) -> Arc<Agent> {
        Arc::new(Agent {
            versions,
            asks_first,
            lookup,
            tasks: Mutex::new(BTreeMap::new()),
            firsts: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            refused_terminal: Mutex::new(0),
            answers_to_lose: Mutex::new(0),
            lost: Mutex::new(0),
            lagging_lookups: Mutex::new(0),
            before_last: Mutex::new(None),
            gate: watch::channel(false).0,
        })
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Lets the agent work and waits until every task it holds has completed.
    async fn finish(&self) {
        self.open_gate();
        eventually("the agent finished", Duration::from_secs(20), || async {
            let tasks = self.tasks.lock().expect("lock");
            tasks
                .values()
                .all(|t| t.status.state == TaskState::Completed)
                .then_some(())
        })
        .await;
    }

    fn firsts(&self) -> Vec<Execution> {
        self.firsts.lock().expect("lock").clone()
    }

    fn answers(&self) -> Vec<Execution> {
        self.answers.lock().expect("lock").clone()
    }

    fn task(&self, id: &str) -> Option<Task> {
        self.tasks.lock().expect("lock").get(id).cloned()
    }

    fn store(&self, task: &Task) {
        let id = task.id.clone().unwrap_or_default();
        self.tasks.lock().expect("lock").insert(id, task.clone());
    }

    /// Remembers task `id` as it is before a message changes (or creates) it.
    fn before_message(&self, id: &str) {
        *self.before_last.lock().expect("lock") = Some((id.to_owned(), self.task(id)));
    }

    /// The tasks a lookup sees: all of them, or, while lookups lag, the last message's task as
    /// it was before that message.
    fn visible_tasks(&self) -> BTreeMap<String, Task> {
        let mut tasks = self.tasks.lock().expect("lock").clone();
        let mut lagging = self.lagging_lookups.lock().expect("lock");
        if *lagging > 0 {
            *lagging -= 1;
            if let Some((id, before)) = self.before_last.lock().expect("lock").clone() {
                match before {
                    Some(task) => tasks.insert(id, task),
                    None => tasks.remove(&id),
                };
            }
        }
        tasks
    }

    /// Works on task `id` until the gate opens, then completes it with `answer`. Runs on its own
    /// task, so the work goes on when the caller hangs up; the gate bounds it.
    async fn work(self: &Arc<Self>, id: String, answer: String) -> Task {
        let agent = self.clone();
        let work = tokio::spawn(async move {
            let mut gate = agent.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            let mut task = agent.task(&id).expect("the task is kept");
            task.status = TaskStatus {
                state: TaskState::Completed,
                message: None,
            };
            task.artifacts = vec![Artifact {
                artifact_id: "forecast".into(),
                name: None,
                parts: vec![Part::Text(answer)],
            }];
            agent.store(&task);
            task
        });
        work.await.expect("the work finishes")
    }
}

fn execution(message: &Message) -> Execution {
    Execution {
        message_id: message.message_id.clone(),
        idempotency_key: message.metadata_str("idempotencyKey").map(str::to_owned),
        context_id: message.context_id.clone(),
    }
}

/// The handler of one request, over the agent.
struct Served(Arc<Agent>);

#[async_trait]
impl Handler for Served {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        let agent = &self.0;
        if let Some(id) = message.task_id.clone() {
            let mut task = agent
                .task(&id)
                .ok_or_else(|| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))?;
            if task.status.state != TaskState::InputRequired {
                *agent.refused_terminal.lock().expect("lock") += 1;
                return Err(RpcError::new(
                    RpcError::UNSUPPORTED_OPERATION,
                    format!(
                        "Task {id} is in terminal state: {}",
                        task.status.state.v03_name()
                    ),
                ));
            }
            let lose = {
                let mut to_lose = agent.answers_to_lose.lock().expect("lock");
                let lose = *to_lose > 0;
                *to_lose = to_lose.saturating_sub(1);
                lose
            };
            if lose {
                *agent.lost.lock().expect("lock") += 1;
                let mut gate = agent.gate.subscribe();
                let _ = gate.wait_for(|open| *open).await;
                return Err(RpcError::new(-32603, "lost on the way"));
            }
            agent.before_message(&id);
            agent
                .answers
                .lock()
                .expect("lock")
                .push(execution(&message));
            let city = message.text();
            task.status = TaskStatus {
                state: TaskState::Working,
                message: None,
            };
            task.history.push(message);
            agent.store(&task);
            return Ok(agent.work(id, format!("Sunny in {city}")).await);
        }
        agent.firsts.lock().expect("lock").push(execution(&message));
        let id = uuid::Uuid::now_v7().to_string();
        agent.before_message(&id);
        let task = Task {
            id: Some(id.clone()),
            context_id: Some(
                message
                    .context_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            ),
            status: TaskStatus {
                state: if agent.asks_first {
                    TaskState::InputRequired
                } else {
                    TaskState::Working
                },
                message: agent
                    .asks_first
                    .then(|| Message::new(Role::Agent, vec![Part::Text(QUESTION.into())])),
            },
            artifacts: Vec::new(),
            history: vec![message],
        };
        agent.store(&task);
        if agent.asks_first {
            return Ok(task);
        }
        Ok(agent.work(id, "Sunny in Paris".into()).await)
    }

    async fn get_task(&self, id: &str) -> Result<Task, RpcError> {
        if !self.0.lookup {
            return Err(RpcError::new(
                RpcError::UNSUPPORTED_OPERATION,
                "tasks cannot be read",
            ));
        }
        self.0
            .visible_tasks()
            .remove(id)
            .ok_or_else(|| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))
    }

    async fn list_tasks(&self, context_id: &str) -> Result<Vec<Task>, RpcError> {
        if !self.0.lookup {
            return Err(RpcError::new(
                RpcError::METHOD_NOT_FOUND,
                "method not found: ListTasks",
            ));
        }
        Ok(self
            .0
            .visible_tasks()
            .into_values()
            .filter(|t| t.context_id.as_deref() == Some(context_id))
            .collect())
    }
}

async fn rpc(State(agent): State<Arc<Agent>>, headers: HeaderMap, request: RpcRequest) -> Response {
    let versions = agent.versions;
    server::answer(&request, &headers, versions, &Served(agent)).await
}

/// Serves `agent` on a loopback port; returns its URL.
async fn serve(agent: Arc<Agent>) -> String {
    let base = serve_on_loopback(|_| Router::new().route("/", post(rpc)).with_state(agent)).await;
    format!("{base}/")
}

/// A Baton process over `db` with the agent at `url` as its only agent (registered once: the
/// directory is in the database). The short lease lets the restarted process take the run over
/// soon.
async fn baton(db: &std::path::Path, url: Option<&str>) -> ServerProcess {
    let server = ServerProcess::start(db, &["--no-demo-agents", "--lease-ms", "1000"]);
    if let Some(url) = url {
        let card = json!({
            "id": "test.slow-weather", "name": "Slow Weather", "url": url, "protocolVersion": "1.0",
            "description": "Weather forecasts for Paris", "rating": 5.0,
            "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                        "tags": ["weather", "forecast", "paris"]}]
        });
        let (code, body) = post_at(&server.base, "/api/agents", card).await;
        assert_eq!(code, 201, "{body}");
    }
    server
}

/// Asks `server` for the weather in Paris on `thread`, in the background (the request dies with
/// the process); returns it once the agent got the call, with the message the agent executed.
async fn ask_until_called(
    server: &ServerProcess,
    agent: &Agent,
    thread: &str,
) -> (
    tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
    Execution,
) {
    let request = in_background(
        &server.base,
        "/api/chat",
        json!({"prompt": "What's the weather in Paris", "thread_id": thread}),
    );
    let sent = eventually(
        "the agent got the call",
        Duration::from_secs(20),
        || async { agent.firsts().first().cloned() },
    )
    .await;
    (request, sent)
}

/// Has the agent ask its question on a new thread, and answers "Lyon" in the background (the
/// request dies with the process); returns the thread and the request once `arrived` says the
/// answer got as far as the test needs.
async fn answer_until(
    server: &ServerProcess,
    agent: &Agent,
    arrived: impl Fn(&Agent) -> bool,
) -> (
    String,
    tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
) {
    let (code, asked) = chat_at(&server.base, "What's the weather in Paris").await;
    assert_eq!(code, 200, "{asked}");
    assert_eq!(asked["status"], "pending_user_input", "{asked}");
    assert!(question_text(&asked).contains(QUESTION), "{asked}");
    let thread = thread_of(&asked);
    let request = in_background(
        &server.base,
        "/api/chat/continue",
        json!({"thread_id": thread, "response": "Lyon"}),
    );
    eventually(
        "the answer got to the agent",
        Duration::from_secs(20),
        || async { arrived(agent).then_some(()) },
    )
    .await;
    (thread, request)
}

/// Waits until the restarted server at `base` has completed `thread`; returns its final text.
async fn completed(base: &str, thread: &str) -> String {
    completed_text(base, thread, Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_call_in_flight_at_a_kill_9_is_found_by_its_context_not_sent_again() {
    first_call_in_flight(false).await;
}

#[tokio::test]
async fn a_call_the_agent_finished_while_baton_was_down_is_found_by_its_context() {
    first_call_in_flight(true).await;
}

/// The first call of a task in flight at a kill -9; the agent finishes it while Baton is down
/// (`finished_while_down`), or only once Baton is back and waiting for it.
async fn first_call_in_flight(finished_while_down: bool) {
    let agent = Agent::new(false, true);
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    let thread = "reattach-first";
    let (request, sent) = ask_until_called(&server, &agent, thread).await;
    // The intent was checkpointed before the call left, naming the message and context sent.
    let (_, checkpoint) = get(&server.base, &format!("/api/threads/{thread}/checkpoint")).await;
    let intent = &checkpoint["state"]["intents"]["t1"];
    assert_eq!(intent["agent_id"], "test.slow-weather", "{checkpoint}");
    assert_eq!(intent["message_id"], json!(sent.message_id));
    assert_eq!(intent["context_id"], json!(sent.context_id));
    assert!(sent.context_id.is_some(), "Baton chose the context");
    assert_eq!(
        sent.idempotency_key.as_deref(),
        Some(sent.message_id.as_str())
    );
    server.kill9();
    let _ = request.await;

    if finished_while_down {
        agent.finish().await;
    }
    // Back up: the run finds the task by its context, and waits for it if it still works.
    let server = baton(&db, None).await;
    agent.open_gate();
    let text = completed(&server.base, thread).await;
    assert!(text.contains("Sunny in Paris"), "{text}");
    assert_eq!(
        agent.firsts().len(),
        1,
        "executed once: {:?}",
        agent.firsts()
    );
    let (_, checkpoint) = get(&server.base, &format!("/api/threads/{thread}/checkpoint")).await;
    assert_eq!(checkpoint["state"]["results"]["t1"]["ok"], true);
    assert!(
        checkpoint["state"].get("intents").is_none(),
        "no intent is left once the call has its result: {checkpoint}"
    );
}

/// The crash harness found this one (`crash.rs`, under load): the agent executes a message the
/// killed process sent, but its first lookup after the restart does not show it yet. The run
/// looks again a moment later instead of sending the call a second time.
#[tokio::test]
async fn a_call_the_agent_does_not_show_yet_is_looked_up_again_not_sent_twice() {
    let agent = Agent::new(false, true);
    *agent.lagging_lookups.lock().expect("lock") = 1;
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    let thread = "reattach-lagging-first";
    let (request, _) = ask_until_called(&server, &agent, thread).await;
    server.kill9();
    let _ = request.await;

    let server = baton(&db, None).await;
    agent.open_gate();
    let text = completed(&server.base, thread).await;
    assert!(text.contains("Sunny in Paris"), "{text}");
    assert_eq!(agent.firsts().len(), 1, "{:?}", agent.firsts());
    assert_eq!(
        *agent.lagging_lookups.lock().expect("lock"),
        0,
        "a lookup lagged"
    );
}

/// As above for an answer: the first lookup still shows the task asking, without the answer.
#[tokio::test]
async fn an_answer_the_agent_does_not_show_yet_is_looked_up_again_not_sent_twice() {
    let agent = Agent::new(true, true);
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    // Lookups happen only after the restart: the first of them lags.
    *agent.lagging_lookups.lock().expect("lock") = 1;
    let (thread, request) =
        answer_until(&server, &agent, |agent| !agent.answers().is_empty()).await;
    server.kill9();
    let _ = request.await;

    let server = baton(&db, None).await;
    agent.open_gate();
    let text = completed(&server.base, &thread).await;
    assert!(text.contains("Sunny in Lyon"), "{text}");
    assert_eq!(agent.answers().len(), 1, "{:?}", agent.answers());
    assert_eq!(*agent.refused_terminal.lock().expect("lock"), 0);
    assert_eq!(
        *agent.lagging_lookups.lock().expect("lock"),
        0,
        "a lookup lagged"
    );
}

#[tokio::test]
async fn an_answer_the_agent_finished_while_baton_was_down_is_not_sent_again() {
    answer_finished_while_down(Versions::Both).await;
}

#[tokio::test]
async fn a_v03_agent_is_asked_with_tasks_get_about_an_answer() {
    answer_finished_while_down(Versions::V03Only).await;
}

/// The follow-up case against an agent speaking `versions`: the agent asks, the user answers,
/// Baton dies while the agent works on the answer, the agent finishes while Baton is down.
async fn answer_finished_while_down(versions: Versions) {
    let agent = Agent::speaking(versions, true, true);
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    let (thread, request) =
        answer_until(&server, &agent, |agent| !agent.answers().is_empty()).await;
    server.kill9();
    let _ = request.await;
    // The agent completes the task while Baton is down.
    agent.finish().await;

    let server = baton(&db, None).await;
    let text = completed(&server.base, &thread).await;
    assert!(text.contains("Sunny in Lyon"), "{text}");
    assert_eq!(agent.firsts().len(), 1, "{:?}", agent.firsts());
    assert_eq!(
        agent.answers().len(),
        1,
        "answer executed once: {:?}",
        agent.answers()
    );
    assert_eq!(
        *agent.refused_terminal.lock().expect("lock"),
        0,
        "no answer sent to the ended task"
    );
}

#[tokio::test]
async fn an_agent_without_lookup_gets_the_call_again_with_the_same_key() {
    let agent = Agent::new(false, false);
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    let thread = "reattach-no-lookup";
    let (request, _) = ask_until_called(&server, &agent, thread).await;
    server.kill9();
    let _ = request.await;

    let server = baton(&db, None).await;
    eventually(
        "the call was sent again",
        Duration::from_secs(20),
        || async { (agent.firsts().len() == 2).then_some(()) },
    )
    .await;
    agent.open_gate();
    let text = completed(&server.base, thread).await;
    assert!(text.contains("Sunny in Paris"), "{text}");
    let firsts = agent.firsts();
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    assert!(firsts[0].idempotency_key.is_some());
    assert_eq!(
        firsts[0].idempotency_key, firsts[1].idempotency_key,
        "the resend carries the same idempotency key"
    );
    assert_eq!(firsts[0].message_id, firsts[1].message_id);
    assert_eq!(firsts[0].context_id, firsts[1].context_id);
}

#[tokio::test]
async fn an_answer_lost_on_the_way_is_sent_again_when_the_agent_still_asks() {
    let agent = Agent::new(true, true);
    *agent.answers_to_lose.lock().expect("lock") = 1;
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, Some(&url)).await;
    // The answer is on its way, and lost.
    let (thread, request) = answer_until(&server, &agent, |agent| {
        *agent.lost.lock().expect("lock") == 1
    })
    .await;
    server.kill9();
    let _ = request.await;

    // The agent's task still asks the same question and never saw the answer: send it.
    let server = baton(&db, None).await;
    eventually("the answer arrived", Duration::from_secs(20), || async {
        (!agent.answers().is_empty()).then_some(())
    })
    .await;
    agent.open_gate();
    let text = completed(&server.base, &thread).await;
    assert!(text.contains("Sunny in Lyon"), "{text}");
    assert_eq!(agent.answers().len(), 1, "{:?}", agent.answers());
    assert_eq!(agent.firsts().len(), 1, "{:?}", agent.firsts());
}

/// The task's first agent cannot be reached, so the call falls back to the next-ranked one, and
/// Baton dies while that agent works. The fallback's call was written ahead under its own
/// agent and `messageId`: the restarted run finds it there instead of starting over (which would
/// call the fallback a second time).
#[tokio::test]
async fn a_fallback_agents_call_in_flight_at_a_kill_9_is_found_not_sent_again() {
    let agent = Agent::new(false, true);
    let url = serve(agent.clone()).await;
    let (_dir, db) = temp_db();
    let server = baton(&db, None).await;
    let down = unreachable_base_url().await;
    for (id, url, rating) in [
        ("test.down-weather", down.as_str(), 5.0),
        ("test.slow-weather", url.as_str(), 3.0),
    ] {
        let card = json!({
            "id": id, "name": id, "url": url, "protocolVersion": "1.0",
            "description": "Weather forecasts for Paris", "rating": rating,
            "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                        "tags": ["weather", "forecast", "paris"]}]
        });
        let (code, body) = post_at(&server.base, "/api/agents", card).await;
        assert_eq!(code, 201, "{body}");
    }
    let thread = "reattach-fallback";
    let (request, sent) = ask_until_called(&server, &agent, thread).await;
    let (_, checkpoint) = get(&server.base, &format!("/api/threads/{thread}/checkpoint")).await;
    let intent = &checkpoint["state"]["intents"]["t1"];
    assert_eq!(intent["agent_id"], "test.slow-weather", "{checkpoint}");
    assert_eq!(intent["message_id"], json!(sent.message_id), "{checkpoint}");
    server.kill9();
    let _ = request.await;

    let server = baton(&db, None).await;
    agent.open_gate();
    let text = completed(&server.base, thread).await;
    assert!(text.contains("Sunny in Paris"), "{text}");
    assert_eq!(
        agent.firsts().len(),
        1,
        "the fallback executed once: {:?}",
        agent.firsts()
    );
}
