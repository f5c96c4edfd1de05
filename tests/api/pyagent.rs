//! Calls in flight when Baton dies, against an agent built with the Python a2a-sdk's own server
//! (`tests/python/slow_agent.py`: `DefaultRequestHandler`, `InMemoryTaskStore`, uvicorn), which
//! does not deduplicate by idempotency key. The real binary on a SQLite file is killed with
//! SIGKILL while the agent works on its call and restarted on the same file; the agent logs every
//! execution, so a call sent again shows as a second line. Without the SDK this test fails, saying
//! how to install it (see `sdk.rs`).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{PythonAgent, completed_text, in_background};
use crate::helpers::{
    ServerProcess, chat_at, eventually, get, post as post_at, question_text, temp_db, thread_of,
};

/// How long the agent works on each message: long enough to kill Baton in the middle.
const WORK_SECONDS: &str = "3";

/// `slow_agent.py` on the Python SDK's server; killed when dropped.
pub struct PyAgent {
    agent: PythonAgent,
    pub url: String,
}

/// One execution the agent logged.
#[derive(Debug)]
pub struct Execution {
    pub kind: String,
    pub text: String,
}

impl PyAgent {
    /// Starts `slow_agent.py` on a free loopback port, logging into `dir`, with the script's
    /// `flags` (`--ask` to ask for the city first, `--stream` to stream progress). Returns once
    /// it serves.
    pub fn start(dir: &Path, flags: &[&str]) -> PyAgent {
        let mut args = vec!["--work-seconds", WORK_SECONDS];
        args.extend_from_slice(flags);
        let agent = PythonAgent::start("slow_agent.py", dir.join("executions.jsonl"), &args);
        PyAgent {
            url: agent.url.clone(),
            agent,
        }
    }

    /// The executions logged so far.
    pub fn executions(&self) -> Vec<Execution> {
        self.agent
            .logged()
            .iter()
            .map(|line| Execution {
                kind: line["kind"].as_str().unwrap_or_default().to_owned(),
                text: line["text"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.executions().iter().filter(|e| e.kind == kind).count()
    }
}

/// A Baton process over `db` with no agent but those in its database; the short lease lets the
/// restarted process take the run over soon. With `agent`, discovers it from its card.
pub async fn baton(db: &Path, agent: Option<&PyAgent>) -> ServerProcess {
    let server = ServerProcess::start(db, &["--no-demo-agents", "--lease-ms", "1000"]);
    if let Some(agent) = agent {
        let (code, card) = post_at(
            &server.base,
            "/api/agents/discover",
            json!({"url": agent.url}),
        )
        .await;
        assert!(code == 200 || code == 201, "discover: {code} {card}");
    }
    server
}

/// Asks `server` for the weather in Paris on `thread`, in the background (the request dies with
/// the process), and returns once the agent works on the call.
pub async fn ask_weather_until_working(
    server: &ServerProcess,
    agent: &PyAgent,
    thread: &str,
) -> tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>> {
    let request = in_background(
        &server.base,
        "/api/chat",
        json!({"prompt": "What is the weather in Paris?", "thread_id": thread}),
    );
    eventually(
        "the agent works on the call",
        Duration::from_secs(30),
        || async { (agent.count("first") > 0).then_some(()) },
    )
    .await;
    request
}

/// Waits until the server at `base` has completed `thread`; returns its final text.
async fn completed(base: &str, thread: &str) -> String {
    completed_text(base, thread, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_python_sdk_agent_executes_a_call_in_flight_at_a_kill_9_once() {
    first_call_killed(false).await;
}

#[tokio::test]
async fn a_python_sdk_agent_call_finished_while_baton_was_down_is_not_sent_again() {
    first_call_killed(true).await;
}

/// Waits, if `finished_while_down`, until the agent has completed its work while Baton is down.
async fn maybe_finish(agent: &PyAgent, finished_while_down: bool) {
    if finished_while_down {
        eventually("the agent finished", Duration::from_secs(30), || async {
            (agent.count("done") > 0).then_some(())
        })
        .await;
    }
}

/// The first call of a task in flight at a kill -9; the agent finishes it while Baton is down
/// (`finished_while_down`), or Baton comes back while it still works.
async fn first_call_killed(finished_while_down: bool) {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &[]);
    let server = baton(&db, Some(&agent)).await;
    let thread = if finished_while_down {
        "pyagent-first-done"
    } else {
        "pyagent-first"
    };
    let request = ask_weather_until_working(&server, &agent, thread).await;
    // The intent was checkpointed before the call left.
    let (_, checkpoint) = get(&server.base, &format!("/api/threads/{thread}/checkpoint")).await;
    let intent = &checkpoint["state"]["intents"]["t1"];
    assert!(intent["context_id"].is_string(), "{checkpoint}");
    server.kill9();
    let _ = request.await;
    maybe_finish(&agent, finished_while_down).await;

    let server = baton(&db, None).await;
    let text = completed(&server.base, thread).await;
    assert!(text.contains("Sunny in Paris"), "{text}");
    let executions = agent.executions();
    assert_eq!(agent.count("first"), 1, "executed once: {executions:?}");
    assert_eq!(agent.count("done"), 1, "{executions:?}");
    assert!(executions[0].text.contains("Paris"), "{executions:?}");
}

#[tokio::test]
async fn a_python_sdk_agent_executes_an_answer_in_flight_at_a_kill_9_once() {
    answer_killed(false).await;
}

#[tokio::test]
async fn a_python_sdk_agent_answer_finished_while_baton_was_down_is_not_sent_again() {
    answer_killed(true).await;
}

/// The agent asks, the user answers, Baton dies while the agent works on the answer; the agent
/// finishes while Baton is down (`finished_while_down`) or after it is back.
async fn answer_killed(finished_while_down: bool) {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &["--ask"]);
    let server = baton(&db, Some(&agent)).await;
    let (code, asked) = chat_at(&server.base, "What is the weather in Paris?").await;
    assert_eq!(code, 200, "{asked}");
    assert_eq!(asked["status"], "pending_user_input", "{asked}");
    assert!(
        question_text(&asked).contains("Which city exactly?"),
        "{asked}"
    );
    let thread = thread_of(&asked);
    let request = in_background(
        &server.base,
        "/api/chat/continue",
        json!({"thread_id": thread, "response": "Lyon"}),
    );
    eventually(
        "the agent works on the answer",
        Duration::from_secs(30),
        || async { (agent.count("answer") > 0).then_some(()) },
    )
    .await;
    server.kill9();
    let _ = request.await;
    maybe_finish(&agent, finished_while_down).await;

    let server = baton(&db, None).await;
    let text = completed(&server.base, &thread).await;
    assert!(text.contains("Sunny in Lyon"), "{text}");
    assert!(!text.contains("not done"), "{text}");
    let executions = agent.executions();
    assert_eq!(agent.count("first"), 1, "{executions:?}");
    assert_eq!(
        agent.count("answer"),
        1,
        "the answer executed once: {executions:?}"
    );
    assert_eq!(agent.count("done"), 1, "{executions:?}");
}

/// A cancel while the agent works inside Baton's blocking send, before the agent has named its
/// task to Baton: the task is found by the context Baton chose, and the agent is told to cancel.
#[tokio::test]
async fn a_cancel_reaches_a_python_sdk_agent_inside_a_blocking_send() {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &[]);
    let server = baton(&db, Some(&agent)).await;
    let thread = "pyagent-cancel";
    let request = ask_weather_until_working(&server, &agent, thread).await;
    let (code, cancelled) = post_at(
        &server.base,
        &format!("/api/threads/{thread}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    eventually(
        "the agent was told to cancel",
        Duration::from_secs(10),
        || async { (agent.count("cancel") > 0).then_some(()) },
    )
    .await;
    let _ = request.await;
    assert_eq!(agent.count("first"), 1, "{:?}", agent.executions());
}
