//! Cancelling a thread (`POST /api/threads/{id}/cancel`, `{"type":"cancel"}` on the WebSocket):
//! the thread says `cancelled` at once, no agent is called after it, every agent task the thread
//! had open gets a `CancelTask`, and the thread takes a new prompt.

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
    Message, Part, Role, RpcError, RpcRequest, Task, TaskState, TaskStatus,
};
use baton::agents::builtin::BuiltinAgents;
use baton::agents::serve;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::serve_on_loopback;
use crate::helpers::{
    ServerProcess, TestApp, TestPostgres, assert_refused, connect_ws, eventually, spawn_app,
    spawn_app_with, thread_of, until_response,
};

/// How a recording agent answers a message.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Takes a minute before answering (the call is in flight when the thread is cancelled).
    Slow,
    /// Answers at once with a task still `working`, and keeps it working: Baton polls it.
    KeepsWorking,
    /// Asks the user something (`input-required`).
    Asks,
    /// Answers at once.
    Answers,
}

/// An A2A agent on loopback that records what it is sent.
#[derive(Clone)]
struct Recorder {
    behaviour: Behaviour,
    task_id: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new(behaviour: Behaviour, task_id: &'static str) -> Self {
        Recorder {
            behaviour,
            task_id,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.seen().iter().filter(|s| s.starts_with(prefix)).count()
    }

    fn task(&self, state: TaskState, text: &str) -> Task {
        Task {
            id: Some(self.task_id.to_owned()),
            context_id: Some("ctx".to_owned()),
            status: TaskStatus {
                state,
                message: Some(Message::new(Role::Agent, vec![Part::Text(text.to_owned())])),
            },
            artifacts: Vec::new(),
            history: Vec::new(),
        }
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        self.seen
            .lock()
            .expect("lock")
            .push(format!("send {}", message.text()));
        Ok(match self.behaviour {
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                self.task(TaskState::Completed, "too late")
            }
            Behaviour::KeepsWorking => self.task(TaskState::Working, "on it"),
            Behaviour::Asks => self.task(TaskState::InputRequired, "Which day do you mean?"),
            Behaviour::Answers => self.task(TaskState::Completed, "Sunny in Paris"),
        })
    }

    async fn get_task(&self, id: &str) -> Result<Task, RpcError> {
        self.seen.lock().expect("lock").push(format!("get {id}"));
        Ok(self.task(TaskState::Working, "still on it"))
    }

    async fn cancel_task(&self, id: &str) -> Result<Task, RpcError> {
        self.seen.lock().expect("lock").push(format!("cancel {id}"));
        Ok(self.task(TaskState::Canceled, "cancelled"))
    }
}

async fn rpc(State(agent): State<Recorder>, headers: HeaderMap, request: RpcRequest) -> Response {
    server::answer(&request, &headers, Versions::Both, &agent).await
}

/// Serves `agent` on a loopback port and registers it as a Paris weather agent with `rating`
/// (the higher, the earlier it is tried).
async fn serve_and_register(app: &TestApp, id: &str, rating: f64, agent: Recorder) {
    serve_and_register_at(&app.base(), id, rating, agent).await;
}

/// [`serve_and_register`] with the server at `base`.
async fn serve_and_register_at(base: &str, id: &str, rating: f64, agent: Recorder) {
    let served = serve_on_loopback(|_| Router::new().route("/", post(rpc)).with_state(agent)).await;
    let url = format!("{served}/");
    let card = json!({
        "id": id, "name": format!("Weather {id}"), "url": url, "protocolVersion": "1.0",
        "rating": rating, "description": "Weather forecasts for Paris",
        "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                    "tags": ["weather", "forecast", "paris"]}]
    });
    let (code, stored) = crate::helpers::post(base, "/api/agents", card).await;
    assert_eq!(code, 201, "{stored}");
}

/// An app with no demo agents whose agent calls time out after `timeout_ms`, one attempt each.
async fn app_with_timeout(timeout_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.no_demo_agents = true;
        s.agent_timeout_ms = timeout_ms;
        s.agent_attempts = 2;
    })
    .await
}

async fn cancel(app: &TestApp, thread: &str) -> (u16, Value) {
    app.post(&format!("/api/threads/{thread}/cancel"), &json!({}))
        .await
}

/// Starts "weather in Paris" in the background and waits until `agent` has been sent it; returns
/// the thread id and the pending `/api/chat` request.
async fn start_and_wait_for_call(
    app: &TestApp,
    agent: &Recorder,
) -> (String, tokio::task::JoinHandle<(u16, Value)>) {
    start_at_and_wait_for_call(&app.base(), agent).await
}

/// [`start_and_wait_for_call`] on the server at `base`.
async fn start_at_and_wait_for_call(
    base: &str,
    agent: &Recorder,
) -> (String, tokio::task::JoinHandle<(u16, Value)>) {
    let thread = format!("cancel-{}", uuid::Uuid::now_v7());
    let base = base.to_owned();
    let body = json!({"prompt": "What's the weather in Paris", "thread_id": thread});
    let chat = tokio::spawn(async move { crate::helpers::post(&base, "/api/chat", body).await });
    eventually("the agent is called", Duration::from_secs(20), || async {
        (agent.count("send") > 0).then_some(())
    })
    .await;
    (thread, chat)
}

#[tokio::test]
async fn a_cancel_during_a_slow_call_stops_the_run_and_no_agent_is_called_after_it() {
    // A timeout long enough that the call is surely in flight, short enough that a run that was
    // not stopped would retry (and then try the next agent) within the wait below.
    let app = app_with_timeout(1_500).await;
    let slow = Recorder::new(Behaviour::Slow, "slow-1");
    let later = Recorder::new(Behaviour::Answers, "later-1");
    serve_and_register(&app, "slow", 5.0, slow.clone()).await;
    serve_and_register(&app, "later", 1.0, later.clone()).await;

    let (thread, chat) = start_and_wait_for_call(&app, &slow).await;
    let (code, cancelled) = cancel(&app, &thread).await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["requires_user_input"], false);
    assert_eq!(cancelled["thread_id"], thread.as_str());

    // The request that started the run answers with the cancelled thread.
    let (code, started) = chat.await.expect("the chat request");
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["status"], "cancelled", "{started}");

    let (_, head) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
    let version = head["version"].clone();
    assert_eq!(head["state"]["status"], "cancelled");
    assert_eq!(head["next"], "end");
    // Past the call timeout and its backoff: a run still going would have retried by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(slow.count("send"), 1, "not retried: {:?}", slow.seen());
    assert!(
        later.seen().is_empty(),
        "no later agent: {:?}",
        later.seen()
    );
    let (_, head) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
    assert_eq!(head["version"], version, "nothing written after the cancel");
    let (_, history) = app.get(&format!("/api/threads/{thread}/history")).await;
    assert_eq!(history[0]["node"], "cancel", "{history}");
    assert_eq!(history[0]["status"], "cancelled", "{history}");
}

#[tokio::test]
async fn a_cancel_sends_cancel_task_to_the_agent_task_being_polled() {
    let app = app_with_timeout(30_000).await;
    let working = Recorder::new(Behaviour::KeepsWorking, "work-1");
    serve_and_register(&app, "working", 5.0, working.clone()).await;

    let (thread, chat) = start_and_wait_for_call(&app, &working).await;
    eventually("the task is polled", Duration::from_secs(20), || async {
        (working.count("get") > 0).then_some(())
    })
    .await;
    let (code, cancelled) = cancel(&app, &thread).await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        working.count("cancel work-1"),
        1,
        "the agent's task was cancelled: {:?}",
        working.seen()
    );
    let (_, started) = chat.await.expect("the chat request");
    assert_eq!(started["status"], "cancelled", "{started}");
    let polls = working.count("get");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(working.count("get"), polls, "polling stopped");
}

#[tokio::test]
async fn cancelling_a_thread_waiting_for_the_user_cancels_the_agents_task_and_a_new_prompt_runs() {
    let app = app_with_timeout(10_000).await;
    let asker = Recorder::new(Behaviour::Asks, "ask-1");
    serve_and_register(&app, "asker", 5.0, asker.clone()).await;

    let waiting = app.chat("What's the weather in Paris").await;
    assert_eq!(waiting["status"], "pending_user_input", "{waiting}");
    let thread = thread_of(&waiting);
    let (code, cancelled) = cancel(&app, &thread).await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["requires_user_input"], false);
    assert_eq!(cancelled["pending_questions"], json!([]));
    assert_eq!(asker.count("send"), 1, "{:?}", asker.seen());
    assert_eq!(
        asker.count("cancel ask-1"),
        1,
        "the agent's waiting task got a CancelTask: {:?}",
        asker.seen()
    );

    // An answer is refused now: the thread no longer waits.
    let (code, refused) = app.answer(&thread, "tomorrow").await;
    assert_eq!(code, 409, "{refused}");

    // Cancelling again answers the thread as it is.
    let (code, again) = cancel(&app, &thread).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["status"], "cancelled");
    assert_eq!(asker.count("cancel"), 1, "no second CancelTask");

    let (code, next) = app
        .chat_in(&thread, "What's the weather in Paris today")
        .await;
    assert_eq!(code, 200, "{next}");
    assert_eq!(
        next["status"], "pending_user_input",
        "a new turn ran: {next}"
    );
    assert_eq!(asker.count("send"), 2);
    let (code, earlier) = app.get(&format!("/api/threads/{thread}/turns")).await;
    assert_eq!(code, 200, "{earlier}");
    assert_eq!(
        earlier["turns"][0]["prompt"], "What's the weather in Paris",
        "the cancelled turn is kept: {earlier}"
    );
}

#[tokio::test]
async fn cancelling_a_finished_or_unknown_thread() {
    let app = spawn_app().await;
    let done = app.chat("What's the weather in Paris").await;
    assert_eq!(done["status"], "completed", "{done}");
    let thread = thread_of(&done);
    let (_, before) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
    let (code, r) = cancel(&app, &thread).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["status"], "completed", "a finished thread stays as it is");
    assert_eq!(r["final_response"], done["final_response"]);
    let (_, after) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
    assert_eq!(after["version"], before["version"], "nothing written");

    assert_refused(cancel(&app, "no-such-thread").await, 404, "no-such-thread");
    let (code, r) = cancel(&app, "bad%20id").await;
    assert_eq!(code, 422, "{r}");
}

#[tokio::test]
async fn a_cancel_over_the_websocket() {
    let app = app_with_timeout(10_000).await;
    let asker = Recorder::new(Behaviour::Asks, "ask-ws");
    serve_and_register(&app, "asker", 5.0, asker.clone()).await;
    let mut ws = connect_ws(&app.ws_url()).await;
    let send = |v: Value| WsMessage::Text(v.to_string().into());
    ws.send(send(
        json!({"type": "start", "prompt": "What's the weather in Paris"}),
    ))
    .await
    .expect("sent");
    let waiting = until_response(&mut ws).await.1;
    assert_eq!(waiting["status"], "pending_user_input", "{waiting}");
    let thread = thread_of(&waiting);

    ws.send(send(json!({"type": "cancel", "thread_id": thread})))
        .await
        .expect("sent");
    let cancelled = until_response(&mut ws).await.1;
    assert_eq!(cancelled["type"], "response", "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["thread_id"], thread.as_str());
    assert_eq!(asker.count("cancel ask-ws"), 1, "{:?}", asker.seen());

    ws.send(send(json!({"type": "cancel", "thread_id": "nobody"})))
        .await
        .expect("sent");
    let unknown = until_response(&mut ws).await.1;
    assert_eq!(unknown["type"], "error", "{unknown}");
    assert_eq!(unknown["thread_id"], "nobody");
}

#[tokio::test]
async fn the_demo_agents_cancel_a_waiting_task_in_either_version() {
    for versions in [Versions::Both, Versions::V03Only] {
        let agents = Arc::new(BuiltinAgents::new(BTreeMap::new()));
        let base =
            serve_on_loopback(|base| serve::router(base, agents, versions).expect("router")).await;
        let app = app_with_timeout(10_000).await;
        let (code, card) = app
            .discover(&json!({"url": format!("{base}/translation")}))
            .await;
        assert_eq!(code, 201, "{card}");

        let waiting = app.chat("translate my notes into German").await;
        assert_eq!(waiting["status"], "pending_user_input", "{waiting}");
        let thread = thread_of(&waiting);
        let task_id = app.state_of(&thread).await["remote_tasks"]["t1"]["task_id"]
            .as_str()
            .expect("the agent's task id")
            .to_owned();
        let (code, cancelled) = cancel(&app, &thread).await;
        assert_eq!(code, 200, "{cancelled}");

        // Read back over v0.3, which both servers speak.
        let (code, task) = crate::helpers::post(
            &base,
            "/translation",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": task_id}}),
        )
        .await;
        assert_eq!(code, 200, "{task}");
        assert_eq!(task["result"]["status"]["state"], "canceled", "{task}");
    }
}

#[tokio::test]
async fn a_cancel_on_one_process_stops_the_run_on_another() {
    // A run not stopped would time out its call and retry it within the wait below. The runner
    // hears of the cancel through the database's notification, or (without it) through its
    // lease heartbeat.
    let timeout = ["--no-demo-agents", "--agent-timeout-ms", "1500"];
    let no_listen = ["--pg-listen", "false", "--lease-ms", "600"];
    for (how, runner_flags) in [
        ("notification", timeout.to_vec()),
        ("lease", [&timeout[..], &no_listen[..]].concat()),
    ] {
        cancel_across_processes(how, &runner_flags).await;
    }
}

async fn cancel_across_processes(how: &str, runner_flags: &[&str]) {
    let pg = TestPostgres::create().await;
    let runner = ServerProcess::start_url(&pg.url, runner_flags);
    let other = ServerProcess::start_url(&pg.url, &["--no-demo-agents"]);
    let task_id: &'static str = if how == "lease" {
        "work-lease"
    } else {
        "work-pg"
    };
    let working = Recorder::new(Behaviour::KeepsWorking, task_id);
    serve_and_register_at(&runner.base, "working", 5.0, working.clone()).await;

    let (thread, chat) = start_at_and_wait_for_call(&runner.base, &working).await;
    eventually("the task is polled", Duration::from_secs(20), || async {
        (working.count("get") > 0).then_some(())
    })
    .await;
    let (code, cancelled) = crate::helpers::post(
        &other.base,
        &format!("/api/threads/{thread}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{how}: {cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{how}: {cancelled}");

    let (code, started) = chat.await.expect("the chat request");
    assert_eq!(code, 200, "{how}: {started}");
    assert_eq!(
        started["status"], "cancelled",
        "{how}: the run's process answers: {started}"
    );
    let cancel = format!("cancel {task_id}");
    eventually(
        "the running process cancels the task it polled",
        Duration::from_secs(20),
        || async { (working.count(&cancel) == 1).then_some(()) },
    )
    .await;
    let polls = working.count("get");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        working.count("send"),
        1,
        "{how}: not retried: {:?}",
        working.seen()
    );
    assert_eq!(working.count("get"), polls, "{how}: polling stopped");
    let (_, head) =
        crate::helpers::get(&runner.base, &format!("/api/threads/{thread}/checkpoint")).await;
    assert_eq!(head["state"]["status"], "cancelled", "{how}: {head}");
}
