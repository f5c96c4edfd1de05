//! Baton as an A2A agent: its card, the JSON-RPC binding in v1.0 and v0.3 driven over raw HTTP
//! (a question, its answer, the final response as an artifact, earlier turns, errors), and one
//! Baton registered as an agent in another Baton's directory.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_completed_saying, assert_contains_all, http, question_text, spawn_app,
    spawn_app_with, thread_of,
};

/// The guidance prompt: the rules planner asks what kind of data before planning.
const GUIDANCE: &str = "Help me analyze data but I need guidance";

/// One JSON-RPC call to the app's A2A endpoint, v1.0 (with the header) or v0.3; returns the
/// whole response.
pub async fn rpc(app: &TestApp, v1: bool, method: &str, params: Value) -> Value {
    let mut request = http()
        .post(app.url("/a2a"))
        .json(&json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params}));
    if v1 {
        request = request.header("A2A-Version", "1.0");
    }
    let response = request.send().await.expect("request sent");
    assert_eq!(response.status().as_u16(), 200, "{method}");
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["id"], "r1", "{body}");
    body
}

/// A v1.0 `SendMessage` of `text`, optionally on a task or in a context; returns the task.
async fn send_v1(app: &TestApp, text: &str, task: Option<&str>, context: Option<&str>) -> Value {
    let mut message = json!({"messageId": uuid(), "role": "ROLE_USER", "parts": [{"text": text}]});
    if let Some(task) = task {
        message["taskId"] = json!(task);
    }
    if let Some(context) = context {
        message["contextId"] = json!(context);
    }
    let body = rpc(app, true, "SendMessage", json!({ "message": message })).await;
    body["result"]["task"].clone()
}

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The error code of a JSON-RPC response that must be an error.
fn error_code(body: &Value) -> i64 {
    body["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error: {body}"))
}

#[tokio::test]
async fn the_card_names_the_endpoint_in_both_versions_and_the_skill() {
    let app = spawn_app().await;
    let (code, card) = app.get("/.well-known/agent-card.json").await;
    assert_eq!(code, 200);
    let endpoint = app.url("/a2a");
    assert_eq!(card["name"], "Baton");
    assert_eq!(card["url"], endpoint);
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["preferredTransport"], "JSONRPC");
    assert_eq!(
        card["supportedInterfaces"][0],
        json!({"url": endpoint, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"})
    );
    assert_eq!(card["skills"][0]["id"], "orchestrate");
    let tags = card["skills"][0]["tags"].to_string();
    assert_contains_all(&tags, &["weather", "translation"]);
    assert!(card["capabilities"].is_object(), "{card}");

    let public = spawn_app_with(|s| s.public_url = Some("https://baton.example.com/".into())).await;
    let (_, card) = public.get("/.well-known/agent-card.json").await;
    assert_eq!(card["url"], "https://baton.example.com/a2a");
}

#[tokio::test]
async fn a_v1_client_gets_the_question_answers_it_and_reads_the_turns() {
    let app = spawn_app().await;
    let asked = send_v1(&app, GUIDANCE, None, None).await;
    assert_eq!(
        asked["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
        "{asked}"
    );
    let question = &asked["status"]["message"];
    assert_eq!(question["role"], "ROLE_AGENT");
    assert!(
        question["parts"][0]["text"]
            .as_str()
            .is_some_and(|q| q.starts_with("What type of data")),
        "{asked}"
    );
    let context = asked["contextId"].as_str().expect("a context id");
    let task = asked["id"].as_str().expect("a task id");
    assert_eq!(task, format!("{context}:0"));
    // The context is the thread: the ordinary API sees the same question.
    let (_, status) = app.status_of(context).await;
    assert_eq!(status["status"], "pending_user_input");

    let done = send_v1(&app, "I want to analyze sales data", Some(task), None).await;
    assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(done["id"], task);
    let response = done["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .expect("the response as an artifact");
    assert_contains_all(response, &["Analysis of sales"]);

    // Answering a finished task is refused; so is a task Baton never handed out.
    let again = rpc(
        &app,
        true,
        "SendMessage",
        json!({"message": {"messageId": uuid(), "role": "ROLE_USER", "taskId": task,
            "parts": [{"text": "more"}]}}),
    )
    .await;
    assert_eq!(error_code(&again), -32004, "{again}");
    let unknown = rpc(&app, true, "GetTask", json!({"id": "nothing:0"})).await;
    assert_eq!(error_code(&unknown), -32001, "{unknown}");

    // A second message in the context is the thread's next turn.
    let second = send_v1(&app, "What's the weather in Paris", None, Some(context)).await;
    assert_eq!(
        second["status"]["state"], "TASK_STATE_COMPLETED",
        "{second}"
    );
    assert_eq!(second["id"], format!("{context}:1"));
    assert_eq!(second["contextId"], context);

    let first = rpc(&app, true, "GetTask", json!({"id": task})).await;
    assert_eq!(first["result"]["id"], task, "GetTask returns the task bare");
    assert_eq!(
        first["result"]["artifacts"][0]["parts"][0]["text"],
        response
    );
    let listed = rpc(&app, true, "ListTasks", json!({"contextId": context})).await;
    let ids: Vec<&str> = listed["result"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [format!("{context}:1"), task.to_owned()]);
    let cancel = rpc(&app, true, "CancelTask", json!({"id": task})).await;
    assert_eq!(error_code(&cancel), -32002, "{cancel}");
    let cancel = rpc(
        &app,
        true,
        "CancelTask",
        json!({"id": format!("{context}:9")}),
    )
    .await;
    assert_eq!(error_code(&cancel), -32001, "{cancel}");
}

#[tokio::test]
async fn a_v03_client_is_answered_in_v03_and_bad_requests_are_refused() {
    let app = spawn_app().await;
    let message = json!({"kind": "message", "messageId": uuid(), "role": "user",
        "parts": [{"kind": "text", "text": GUIDANCE}]});
    let asked = rpc(&app, false, "message/send", json!({ "message": message })).await;
    let task = &asked["result"];
    assert_eq!(task["kind"], "task", "{asked}");
    assert_eq!(task["status"]["state"], "input-required");
    assert_eq!(task["status"]["message"]["role"], "agent");
    let id = task["id"].as_str().expect("task id");
    let answer = json!({"kind": "message", "messageId": uuid(), "role": "user", "taskId": id,
        "contextId": task["contextId"], "parts": [{"kind": "text", "text": "sales data"}]});
    let done = rpc(&app, false, "message/send", json!({ "message": answer })).await;
    assert_eq!(done["result"]["status"]["state"], "completed", "{done}");
    let got = rpc(&app, false, "tasks/get", json!({ "id": id })).await;
    assert_eq!(got["result"]["kind"], "task");
    assert_eq!(got["result"]["artifacts"], done["result"]["artifacts"]);

    let blank = rpc(
        &app,
        true,
        "SendMessage",
        json!({"message": {"role": "ROLE_USER", "parts": [{"text": "  "}]}}),
    )
    .await;
    assert_eq!(error_code(&blank), -32602, "{blank}");
    let no_header = rpc(&app, false, "SendMessage", json!({})).await;
    assert_eq!(error_code(&no_header), -32009, "{no_header}");
    let no_context = rpc(&app, true, "ListTasks", json!({})).await;
    assert_eq!(error_code(&no_context), -32602, "{no_context}");
}

#[tokio::test]
async fn a_baton_is_an_agent_of_another_baton_questions_included() {
    // B has the demo agents; A has none but B, so whatever A is asked goes to B.
    let b = spawn_app().await;
    let a = spawn_app_with(|s| s.no_demo_agents = true).await;
    let (code, card) = a.discover(&json!({ "url": b.base() })).await;
    assert_eq!(code, 201, "{card}");
    assert_eq!(card["url"], b.url("/a2a"));

    // B asks which text to translate; the question reaches A's user, and the answer B.
    let r = a.chat("Translate my notes into German").await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    let question = question_text(&r).to_owned();
    let thread = thread_of(&r);
    let remote = a.state_of(&thread).await["remote_tasks"]["t1"].clone();
    let b_task = remote["task_id"].as_str().expect("B's task id").to_owned();
    let (_, b_status) = b
        .status_of(remote["context_id"].as_str().expect("B's context"))
        .await;
    assert_eq!(b_status["status"], "pending_user_input", "{b_status}");
    let b_question = b_status["question_for_user"]
        .as_str()
        .expect("B's question");
    assert_eq!(
        question,
        format!("Baton asks: {b_question}"),
        "A asks B's question"
    );

    assert_contains_all(&question, &["German"]);
    let (code, done) = a.answer(&thread, "Guten Morgen").await;
    assert_eq!(code, 200, "{done}");
    assert_completed_saying(
        &done,
        &[
            "Translation into German of \"Guten Morgen\"",
            "Answered by Baton",
        ],
    );
    let (_, b_done) = b
        .status_of(remote["context_id"].as_str().unwrap_or_default())
        .await;
    assert_eq!(
        b_done["status"], "completed",
        "B finished the turn: {b_done}"
    );
    assert!(b_task.ends_with(":0"), "{b_task}");
}

/// A streaming call's events: each `data:` line of the server-sent events, read to the end.
async fn stream(app: &TestApp, v1: bool, method: &str, params: Value) -> Vec<Value> {
    let mut request = http()
        .post(app.url("/a2a"))
        .json(&json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params}));
    if v1 {
        request = request.header("A2A-Version", "1.0");
    }
    let response = request.send().await.expect("request sent");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(content_type, "text/event-stream", "{method}");
    let text = response.text().await.expect("the stream");
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).expect("JSON data"))
        .inspect(|event| assert_eq!(event["id"], "s1", "{event}"))
        .map(|event| event["result"].clone())
        .collect()
}

#[tokio::test]
async fn a_streaming_client_follows_the_turn_to_its_question_and_answer() {
    let app = spawn_app().await;
    let message = json!({"messageId": uuid(), "role": "ROLE_USER", "parts": [{"text": GUIDANCE}]});
    let events = stream(
        &app,
        true,
        "SendStreamingMessage",
        json!({ "message": message }),
    )
    .await;
    let first = &events[0]["task"];
    assert_eq!(first["status"]["state"], "TASK_STATE_WORKING", "{events:?}");
    let id = first["id"].as_str().expect("task id").to_owned();
    let last = events.last().expect("events");
    assert_eq!(last["statusUpdate"]["taskId"], id.as_str());
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
        "{events:?}"
    );
    let question = last["statusUpdate"]["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(question.starts_with("What type of data"), "{question}");
    // A subscription to the waiting turn has nothing to follow: the task and its status.
    let now = stream(&app, true, "SubscribeToTask", json!({ "id": id })).await;
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(
        now[0]["task"]["status"]["state"],
        "TASK_STATE_INPUT_REQUIRED"
    );
    assert_eq!(
        now[1]["statusUpdate"]["status"]["state"],
        "TASK_STATE_INPUT_REQUIRED"
    );

    // The answer, streamed in v0.3: ends completed, with the response as an artifact first.
    let answer = json!({"kind": "message", "messageId": uuid(), "role": "user", "taskId": id,
        "parts": [{"kind": "text", "text": "sales data"}]});
    let events = stream(&app, false, "message/stream", json!({ "message": answer })).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"task"), "{kinds:?}");
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["artifact-update", "status-update"]
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "task").count(),
        1,
        "the task goes out once: {kinds:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "status-update" && e["metadata"]["node"] == "parse_prompt"),
        "progress names the nodes: {events:?}"
    );
    let last = events.last().expect("events");
    assert_eq!(last["status"]["state"], "completed");
    assert_eq!(last["final"], true);
    let artifact = &events[events.len() - 2]["artifact"]["parts"][0]["text"];
    assert_contains_all(
        artifact.as_str().unwrap_or_default(),
        &["Analysis of sales"],
    );

    // A finished task cannot be subscribed to; an unknown one is not found.
    let body = rpc(&app, true, "SubscribeToTask", json!({ "id": id })).await;
    assert_eq!(error_code(&body), -32004, "{body}");
    let unknown = rpc(&app, true, "SubscribeToTask", json!({"id": "none:0"})).await;
    assert_eq!(error_code(&unknown), -32001, "{unknown}");
}

#[tokio::test]
async fn a_subscription_follows_a_running_turn_to_its_end() {
    let app = spawn_app_with(|s| s.demo_latency = vec![("weather".into(), 3_000)]).await;
    let message = json!({"messageId": uuid(), "role": "ROLE_USER",
        "parts": [{"text": "What's the weather in Paris"}]});
    let mut running = http()
        .post(app.url("/a2a"))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": "s0", "method": "SendStreamingMessage",
            "params": { "message": message }}),
        )
        .send()
        .await
        .expect("request sent");
    // The first event is the task, sent while the weather agent still works.
    let mut head = String::new();
    while !head.contains("\n\n") {
        let chunk = running
            .chunk()
            .await
            .expect("a chunk")
            .expect("more of the stream");
        head.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first: Value = serde_json::from_str(
        head.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line"),
    )
    .expect("JSON");
    let id = first["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_owned();

    let events = stream(&app, true, "SubscribeToTask", json!({ "id": id })).await;
    assert_eq!(
        events[0]["task"]["status"]["state"], "TASK_STATE_WORKING",
        "{events:?}"
    );
    let last = events.last().expect("events");
    assert_eq!(
        last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{events:?}"
    );
    let artifact = &events[events.len() - 2]["artifactUpdate"];
    assert_eq!(artifact["taskId"], id.as_str(), "{events:?}");
    assert_contains_all(
        artifact["artifact"]["parts"][0]["text"]
            .as_str()
            .unwrap_or_default(),
        &["Weather in Paris"],
    );
    drop(running);
}

#[tokio::test]
async fn cancel_task_stops_a_waiting_turn_and_refuses_a_finished_one() {
    let app = spawn_app().await;
    let asked = send_v1(&app, GUIDANCE, None, None).await;
    let task = asked["id"].as_str().expect("task id");
    let context = asked["contextId"].as_str().expect("context id");
    let cancelled = rpc(&app, true, "CancelTask", json!({ "id": task })).await;
    assert_eq!(
        cancelled["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{cancelled}"
    );
    let (_, status) = app.status_of(context).await;
    assert_eq!(
        status["status"], "cancelled",
        "the thread is cancelled: {status}"
    );
    let got = rpc(&app, false, "tasks/get", json!({ "id": task })).await;
    assert_eq!(got["result"]["status"]["state"], "canceled", "{got}");
    let again = rpc(&app, false, "tasks/cancel", json!({ "id": task })).await;
    assert_eq!(error_code(&again), -32002, "{again}");
    let answer = rpc(
        &app,
        true,
        "SendMessage",
        json!({"message": {"messageId": uuid(), "role": "ROLE_USER", "taskId": task,
            "parts": [{"text": "sales data"}]}}),
    )
    .await;
    assert_eq!(error_code(&answer), -32004, "{answer}");
}

/// A caller that sends the same message again (its own crash between the send and the answer)
/// gets the turn that message opened, blocking or streaming, in v1.0 or v0.3: Baton runs it once.
#[tokio::test]
async fn the_same_message_sent_again_gets_its_turn_not_a_second_one() {
    let app = spawn_app().await;
    let context = "resent";
    let message = json!({"messageId": "m-once", "contextId": context, "role": "ROLE_USER",
        "parts": [{"text": "What is the weather in Paris?"}]});
    let first = rpc(&app, true, "SendMessage", json!({ "message": message })).await;
    let task = &first["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{first}");
    assert_eq!(task["history"][0]["messageId"], "m-once", "{task}");

    let again = rpc(&app, true, "SendMessage", json!({ "message": message })).await;
    assert_eq!(again["result"]["task"], *task, "the same turn, as it ended");
    let v03 = json!({"kind": "message", "messageId": "m-once", "contextId": context,
        "role": "user", "parts": [{"kind": "text", "text": "What is the weather in Paris?"}]});
    let again_v03 = rpc(&app, false, "message/send", json!({ "message": v03 })).await;
    assert_eq!(again_v03["result"]["id"], task["id"], "{again_v03}");
    let streamed = stream(
        &app,
        true,
        "SendStreamingMessage",
        json!({ "message": message }),
    )
    .await;
    assert_eq!(streamed[0]["task"]["id"], task["id"], "{streamed:?}");
    assert_eq!(
        streamed.last().expect("events")["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "{streamed:?}"
    );

    // One turn in the thread, and the weather agent called once.
    let listed = rpc(&app, true, "ListTasks", json!({ "contextId": context })).await;
    assert_eq!(
        listed["result"]["tasks"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let (_, status) = app.get(&format!("/api/chat/status/{context}")).await;
    assert_eq!(status["status"], "completed", "{status}");
    // A new message in the same context is a new turn.
    let next = send_v1(&app, "What is the weather in Rome?", None, Some(context)).await;
    assert_ne!(next["id"], task["id"], "{next}");
}
