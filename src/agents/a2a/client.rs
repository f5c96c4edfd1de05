//! The client half: Baton calling A2A agents, in whichever version they speak.
//!
//! Baton speaks v1.0 unless the card says the agent only speaks 0.x, and falls back to v0.3 (and
//! remembers it) when an agent refuses v1.0 (`-32009` version not supported, `-32601` method not
//! found): cards often claim more than the agent behind them does. Replies are read liberally
//! (see [`super::wire`]). The official Rust SDK (`a2a-lf`) was not used: see ARCHITECTURE.md.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::streaming;
use super::wire::{
    Message, Method, Part, Role, RpcError, RpcRequest, SendResult, Task, TaskState, VERSION_HEADER,
    Version, WireError, readable,
};
use crate::agents::http::{Answer, HttpAgents, IDEMPOTENCY_HEADER};
use crate::agents::progress::ProgressSink;
use crate::agents::{AgentError, AgentReply, AgentRequest, OpenTask, Reattached};
use crate::card::AgentCard;
use crate::state::CallIntent;

/// How often a task still `working` after the send is polled.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// What an agent is asked when it asked for input but said nothing about what.
const UNSAID_QUESTION: &str = "The agent needs more information to go on.";

/// Calls A2A agents; it holds what was learnt about their versions, so one client should serve
/// the whole process.
pub struct A2aClient {
    http: HttpAgents,
    /// Agents that refused v1.0; they get v0.3 from then on.
    v03_only: Mutex<HashSet<String>>,
    /// Agent tasks this process is polling right now, by Baton thread: a cancelled thread's
    /// tasks in flight are cancelled on the agent too.
    polling: Mutex<HashMap<String, Vec<OpenTask>>>,
}

/// Where a read result leaves the call.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// The agent is still working on the task with this id: poll it.
    Poll(String),
    /// The agent answered, asked or gave up.
    Reply(AgentReply),
}

impl A2aClient {
    /// A client over Baton's HTTP transport (its URL policy, size cap and reqwest client).
    pub fn new(http: HttpAgents) -> Self {
        A2aClient {
            http,
            v03_only: Mutex::new(HashSet::new()),
            polling: Mutex::new(HashMap::new()),
        }
    }

    /// Sends the task (or the user's answer to the agent's question) and reads the outcome.
    pub async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        self.in_spoken_version(card, |version| self.send(card, request, version))
            .await
    }

    /// The version to speak to `card`'s agent first: v0.3 for one that declares 0.x or has
    /// refused v1.0 before, else v1.0.
    fn first_version(&self, card: &AgentCard) -> Version {
        let known_v03 = self.v03_only.lock().is_ok_and(|s| s.contains(&card.id));
        if known_v03 || !speaks_v1(card) {
            Version::V03
        } else {
            Version::V1
        }
    }

    /// Remembers that `card`'s agent refused v1.0 (`error`), so later exchanges start in v0.3.
    fn remember_v03(&self, card: &AgentCard, error: &RpcError) {
        tracing::debug!(agent = %card.id, %error, "agent refused A2A v1.0; using v0.3 from now on");
        if let Ok(mut set) = self.v03_only.lock() {
            set.insert(card.id.clone());
        }
    }

    /// Runs `exchange` in the version the agent speaks: v1.0 first unless it is known to speak
    /// only v0.3, and again in v0.3 (remembered) when it refuses v1.0.
    async fn in_spoken_version<T, F, Fut>(
        &self,
        card: &AgentCard,
        exchange: F,
    ) -> Result<T, AgentError>
    where
        F: Fn(Version) -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentError>>,
    {
        if self.first_version(card) == Version::V03 {
            return exchange(Version::V03).await;
        }
        match exchange(Version::V1).await {
            Err(AgentError::Rpc(error)) if error.refuses_version() => {
                self.remember_v03(card, &error);
                exchange(Version::V03).await
            }
            other => other,
        }
    }

    /// One exchange in one version: the send (streamed, for an agent whose card says it
    /// streams), then polls until the task settles.
    async fn send(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
        version: Version,
    ) -> Result<AgentReply, AgentError> {
        let params = json!({ "message": message(request).to_json(version) });
        let mut polling: Option<Polling<'_>> = None;
        let mut next = if card.capabilities.streaming {
            self.send_streaming(card, request, version, params, &mut polling)
                .await?
        } else {
            let result = self
                .rpc(card, request, version, version.send_method(), params)
                .await?;
            step(&SendResult::read(&result)?)?
        };
        // A blocking send normally returns a settled task; poll one that is still working.
        loop {
            match next {
                Step::Reply(reply) => return Ok(reply),
                Step::Poll(task_id) => {
                    if polling.as_ref().is_none_or(|p| p.task.task_id != task_id) {
                        polling = Some(Polling::start(self, request, card, &task_id));
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                    let params = json!({ "id": task_id });
                    let result = self
                        .rpc(card, request, version, version.get_method(), params)
                        .await?;
                    next = step(&SendResult::read(&result)?)?;
                }
            }
        }
    }

    /// The send as a stream of the task's events, relayed as progress while it works. An agent
    /// that refuses to stream (its card claimed more than it does) gets the plain send: the
    /// refusal says it took nothing.
    async fn send_streaming<'a>(
        &'a self,
        card: &AgentCard,
        request: &AgentRequest,
        version: Version,
        params: Value,
        polling: &mut Option<Polling<'a>>,
    ) -> Result<Step, AgentError> {
        let method = Method::Stream
            .name(version)
            .unwrap_or(version.send_method());
        let key = Some(request.idempotency_key.as_str());
        match self
            .post_for_events(card, key, version, method, params.clone())
            .await
        {
            Ok(Answer::Events(mut events)) => {
                let seen = |task: &Task| {
                    if let Some(id) = &task.id
                        && polling.as_ref().is_none_or(|p| &p.task.task_id != id)
                    {
                        *polling = Some(Polling::start(self, request, card, id));
                    }
                };
                let note = |text| request.progress.report(&card.id, text);
                streaming::follow(&mut events, seen, note).await
            }
            Ok(Answer::Json(result)) => Ok(step(&SendResult::read(&result)?)?),
            Err(AgentError::Rpc(error)) if error.is_unsupported() => {
                tracing::debug!(agent = %card.id, %error, "agent refused to stream; sending without");
                let result = self
                    .rpc(card, request, version, version.send_method(), params)
                    .await?;
                Ok(step(&SendResult::read(&result)?)?)
            }
            Err(e) => Err(e),
        }
    }

    /// Follows the running task `task_id` as a stream (`SubscribeToTask`), relaying its
    /// progress, until it settles or the agent ends the stream.
    async fn subscribe(
        &self,
        card: &AgentCard,
        key: &str,
        version: Version,
        task_id: &str,
        progress: &ProgressSink,
    ) -> Result<Step, AgentError> {
        let method = Method::Subscribe
            .name(version)
            .unwrap_or(version.get_method());
        let params = json!({ "id": task_id });
        match self
            .post_for_events(card, Some(key), version, method, params)
            .await?
        {
            Answer::Events(mut events) => {
                let note = |text| progress.report(&card.id, text);
                streaming::follow(&mut events, |_| {}, note).await
            }
            Answer::Json(result) => Ok(step(&SendResult::read(&result)?)?),
        }
    }

    /// Asks the agent to cancel its task `task_id` (the user cancelled the thread that opened
    /// it), in the version the agent speaks, falling back to v0.3 like [`Self::call`].
    pub async fn cancel(&self, card: &AgentCard, task_id: &str) -> Result<(), AgentError> {
        self.in_spoken_version(card, |version| async move {
            let params = json!({ "id": task_id });
            // Whatever the agent answers besides an error (the task, or nothing) is a yes.
            self.post_rpc(card, None, version, version.cancel_method(), params)
                .await
                .map(drop)
        })
        .await
    }

    /// Cancels the tasks still open in `context_id`: a call Baton chose the context of, whose
    /// blocking send has not answered yet, so its task id is known only to the agent. Found with
    /// `ListTasks` (v1.0); an agent without it has nothing Baton can name, which is no error.
    pub async fn cancel_in_context(
        &self,
        card: &AgentCard,
        context_id: &str,
    ) -> Result<(), AgentError> {
        let Some(method) = Version::V1
            .list_method()
            .filter(|_| self.first_version(card) == Version::V1)
        else {
            return Ok(());
        };
        let params = json!({ "contextId": context_id });
        let listed = match self
            .rpc_keyed(card, context_id, Version::V1, method, params)
            .await
        {
            Ok(listed) => listed,
            Err(AgentError::Rpc(error)) if error.is_unsupported() || error.refuses_version() => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for task in Task::read_list(&listed) {
            if let Some(id) = task.id.filter(|_| !task.status.state.is_settled()) {
                self.cancel(card, &id).await?;
            }
        }
        Ok(())
    }

    /// The agent tasks this process is polling for `thread_id` right now.
    pub fn tasks_in_flight(&self, thread_id: &str) -> Vec<OpenTask> {
        self.polling
            .lock()
            .ok()
            .and_then(|p| p.get(thread_id).cloned())
            .unwrap_or_default()
    }

    /// One JSON-RPC call; returns its `result`.
    async fn rpc(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
        version: Version,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        self.rpc_keyed(card, &request.idempotency_key, version, method, params)
            .await
    }

    /// One JSON-RPC call carrying the idempotency key `key`; returns its `result`.
    async fn rpc_keyed(
        &self,
        card: &AgentCard,
        key: &str,
        version: Version,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        let response = self
            .post_rpc(card, Some(key), version, method, params)
            .await?;
        result_of(response)
    }

    /// Posts one JSON-RPC request in `version` (with the idempotency key, when there is one);
    /// returns the whole response, or the agent's JSON-RPC error.
    async fn post_rpc(
        &self,
        card: &AgentCard,
        key: Option<&str>,
        version: Version,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        let headers = rpc_headers(key, version);
        let body = RpcRequest::to_json(method, params);
        let response = self.http.post_json(&card.url, &headers, &body).await?;
        match RpcError::read(&response) {
            Some(error) => Err(AgentError::Rpc(error)),
            None => Ok(response),
        }
    }
}

impl A2aClient {
    /// Posts one JSON-RPC request for a stream in `version`; returns the events, or the one
    /// JSON `result` an agent answered with instead, or the agent's JSON-RPC error.
    async fn post_for_events(
        &self,
        card: &AgentCard,
        key: Option<&str>,
        version: Version,
        method: &str,
        params: Value,
    ) -> Result<Answer, AgentError> {
        let headers = rpc_headers(key, version);
        let body = RpcRequest::to_json(method, params);
        match self
            .http
            .post_for_events(&card.url, &headers, &body)
            .await?
        {
            Answer::Json(response) => result_of(response).map(Answer::Json),
            events => Ok(events),
        }
    }
}

/// The `result` of a JSON-RPC response, or the error the agent sent instead.
pub(super) fn result_of(mut response: Value) -> Result<Value, AgentError> {
    if let Some(error) = RpcError::read(&response) {
        return Err(AgentError::Rpc(error));
    }
    match response.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(WireError::NoResult.into()),
    }
}

/// The headers of a JSON-RPC request: the idempotency key, when there is one, and the version.
fn rpc_headers(key: Option<&str>, version: Version) -> Vec<(&'static str, &str)> {
    let mut headers: Vec<(&'static str, &str)> = key
        .map(|key| (IDEMPOTENCY_HEADER, key))
        .into_iter()
        .collect();
    if let Some(value) = version.header() {
        headers.push((VERSION_HEADER, value));
    }
    headers
}

/// A task being polled, listed in [`A2aClient::tasks_in_flight`] for as long as this lives (the
/// call settles, fails, or is dropped because the run stopped).
struct Polling<'a> {
    client: &'a A2aClient,
    thread_id: String,
    task: OpenTask,
}

impl<'a> Polling<'a> {
    fn start(
        client: &'a A2aClient,
        request: &AgentRequest,
        card: &AgentCard,
        task_id: &str,
    ) -> Self {
        let task = OpenTask {
            card: card.clone(),
            task_id: task_id.to_owned(),
        };
        if let Ok(mut polling) = client.polling.lock() {
            polling
                .entry(request.thread_id.clone())
                .or_default()
                .push(task.clone());
        }
        Polling {
            client,
            thread_id: request.thread_id.clone(),
            task,
        }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let Ok(mut polling) = self.client.polling.lock() else {
            return;
        };
        if let Some(tasks) = polling.get_mut(&self.thread_id) {
            if let Some(at) = tasks
                .iter()
                .position(|t| t.task_id == self.task.task_id && t.card.id == self.task.card.id)
            {
                tasks.swap_remove(at);
            }
            if tasks.is_empty() {
                polling.remove(&self.thread_id);
            }
        }
    }
}

/// How many messages of a task's history a lookup asks for: enough to find the call's message.
const LOOKUP_HISTORY: u32 = 20;

impl A2aClient {
    /// Where the call of `intent` got to: its task read by id (`GetTask`/`tasks/get`) when the
    /// agent gave one, else found by the `contextId` Baton chose (`ListTasks`, v1.0 only), and
    /// waited for while it works. An agent without the lookup gets [`Reattached::NoLookup`].
    pub async fn reattach(
        &self,
        card: &AgentCard,
        intent: &CallIntent,
        progress: &ProgressSink,
    ) -> Result<Reattached, AgentError> {
        let first = self.first_version(card);
        let mut outcome = self.look_up(card, intent, first, progress).await;
        // Refused in v1.0: the agent may only speak v0.3 (a restarted Baton has forgotten), or
        // only lack `ListTasks`; v0.3 tells which.
        if first == Version::V1
            && let Err(AgentError::Rpc(error)) = &outcome
            && error.refuses_version()
        {
            if intent.task_id.is_some() || error.code == RpcError::VERSION_NOT_SUPPORTED {
                self.remember_v03(card, error);
            }
            outcome = self.look_up(card, intent, Version::V03, progress).await;
        }
        match outcome {
            Err(AgentError::Rpc(error)) if error.is_unsupported() => Ok(Reattached::NoLookup),
            other => other,
        }
    }

    /// [`Self::reattach`] in one version; a lookup the agent refuses comes back as its error.
    async fn look_up(
        &self,
        card: &AgentCard,
        intent: &CallIntent,
        version: Version,
        progress: &ProgressSink,
    ) -> Result<Reattached, AgentError> {
        let found = match (&intent.task_id, &intent.context_id, version.list_method()) {
            (Some(id), _, _) => self.get_task(card, intent, version, id).await,
            (None, Some(context_id), Some(method)) => {
                let params = json!({ "contextId": context_id, "historyLength": LOOKUP_HISTORY,
                    "includeArtifacts": true });
                self.rpc_keyed(card, &intent.message_id, version, method, params)
                    .await
                    .map(|result| {
                        let tasks = Task::read_list(&result);
                        let mine = tasks.iter().position(|t| t.has_message(&intent.message_id));
                        tasks
                            .into_iter()
                            .nth(mine.unwrap_or(0))
                            .map(SendResult::Task)
                    })
            }
            (None, _, _) => return Ok(Reattached::NoLookup),
        };
        let mut result = match found {
            Ok(Some(result)) => result,
            Ok(None) => return Ok(Reattached::Unknown),
            Err(AgentError::Rpc(error)) if error.code == RpcError::TASK_NOT_FOUND => {
                return Ok(Reattached::Unknown);
            }
            Err(e) => return Err(e),
        };
        let mut has_message = false;
        let mut subscribed = false;
        loop {
            if let SendResult::Task(task) = &result {
                has_message |= task.has_message(&intent.message_id);
            }
            let mut next = step(&result)?;
            // A streaming agent's running task is followed as a stream once (resumed where the
            // crash cut the call's stream); one that ends early, or cannot be followed, is
            // polled.
            if let Step::Poll(task_id) = &next
                && card.capabilities.streaming
                && !subscribed
            {
                subscribed = true;
                match self
                    .subscribe(card, &intent.message_id, version, task_id, progress)
                    .await
                {
                    Ok(streamed) => next = streamed,
                    Err(e) => {
                        tracing::debug!(agent = %card.id, error = %e, "cannot follow the task as a stream; polling it");
                    }
                }
            }
            match next {
                Step::Reply(reply) => return Ok(Reattached::Found { reply, has_message }),
                Step::Poll(task_id) => {
                    tokio::time::sleep(POLL_EVERY).await;
                    result = self
                        .get_task(card, intent, version, &task_id)
                        .await?
                        .ok_or(WireError::NoResult)?;
                }
            }
        }
    }

    /// Reads one task by id, with some of its history.
    async fn get_task(
        &self,
        card: &AgentCard,
        intent: &CallIntent,
        version: Version,
        task_id: &str,
    ) -> Result<Option<SendResult>, AgentError> {
        let params = json!({ "id": task_id, "historyLength": LOOKUP_HISTORY });
        let result = self
            .rpc_keyed(
                card,
                &intent.message_id,
                version,
                version.get_method(),
                params,
            )
            .await?;
        Ok(Some(SendResult::read(&result)?))
    }
}

/// The card offers v1.0 (a JSON-RPC interface of version 1.x), or says nothing about versions.
fn speaks_v1(card: &AgentCard) -> bool {
    let interfaces_v1 = card
        .extra
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|i| {
                i.get("protocolVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with('1'))
            })
        });
    interfaces_v1
        || card
            .protocol_version
            .as_deref()
            .is_none_or(|v| !v.starts_with("0."))
}

/// The message carrying the task with the skill's inputs as a data part, or the answer to the
/// agent's question on the agent's own task. The metadata lets an agent recognise a repeated
/// call and tells it which skill was chosen.
fn message(request: &AgentRequest) -> Message {
    let mut parts = vec![];
    let continued = request.follow_up.as_ref().filter(|f| f.continues_task());
    match (continued, &request.follow_up) {
        (Some(follow_up), _) => parts.push(Part::Text(follow_up.answer.clone())),
        (None, detached) => {
            parts.push(Part::Text(request.text.clone()));
            if !request.inputs.is_empty() {
                parts.push(Part::Data(json!(request.inputs)));
            }
            // An answer with no agent task to go back to: a new task, told the request and it.
            if let Some(follow_up) = detached {
                parts.push(Part::Text(follow_up.answer.clone()));
            }
        }
    }
    let mut message = Message::new(Role::User, parts);
    // The key names the call, so a resend after a crash is recognisably the same message.
    message.message_id.clone_from(&request.idempotency_key);
    message.context_id.clone_from(&request.context_id);
    message.metadata = Some(json!({
        "idempotencyKey": request.idempotency_key,
        "batonThreadId": request.thread_id,
        "batonTaskId": request.task_id,
        "skillId": request.skill_id,
    }));
    if let Some(follow_up) = continued {
        message.task_id.clone_from(&follow_up.task_id);
        message.context_id.clone_from(&follow_up.context_id);
    }
    message
}

/// What a send or get result means for the call.
pub(super) fn step(result: &SendResult) -> Result<Step, WireError> {
    match result {
        SendResult::Message(message) => {
            Ok(Step::Reply(AgentReply::Completed(readable(&message.parts))))
        }
        SendResult::Task(task) => task_step(task),
    }
}

/// What a task's state means for the call: an answer, a question for the user, a failure, or
/// more waiting.
pub(super) fn task_step(task: &Task) -> Result<Step, WireError> {
    let state = task.status.state;
    let status_text = task.status_text();
    Ok(Step::Reply(match state {
        TaskState::Completed => AgentReply::Completed(answer_of(task)),
        TaskState::InputRequired | TaskState::AuthRequired => AgentReply::InputRequired {
            question: if status_text.is_empty() {
                UNSAID_QUESTION.to_owned()
            } else {
                status_text
            },
            task_id: task.id.clone(),
            context_id: task.context_id.clone(),
        },
        TaskState::Failed | TaskState::Rejected | TaskState::Canceled => {
            AgentReply::Failed(if status_text.is_empty() {
                format!("the agent's task ended {state}")
            } else {
                format!("{state}: {status_text}")
            })
        }
        TaskState::Submitted | TaskState::Working => {
            return task
                .id
                .clone()
                .map(Step::Poll)
                .ok_or(WireError::RunningWithoutId(state));
        }
    }))
}

/// A completed task's answer: its artifacts, else its status message, else the agent's last
/// message in the history (agents put it in any of the three).
fn answer_of(task: &Task) -> String {
    let artifacts = task
        .artifacts
        .iter()
        .map(|a| readable(&a.parts))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if !artifacts.is_empty() {
        return artifacts;
    }
    let status_text = task.status_text();
    if !status_text.is_empty() {
        return status_text;
    }
    task.history
        .iter()
        .rev()
        .find(|m| m.role == Some(Role::Agent))
        .map(|m| readable(&m.parts))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: Value) -> Result<Step, WireError> {
        step(&SendResult::read(&v)?)
    }

    fn reply(v: Value) -> AgentReply {
        match read(v).expect("readable") {
            Step::Reply(r) => r,
            Step::Poll(_) => panic!("working"),
        }
    }

    #[test]
    fn reads_v1_and_v03_tasks() {
        let v1 = json!({"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED",
            "message": {"role": "ROLE_AGENT", "parts": [{"text": "Which metric?"}]}}}});
        assert_eq!(
            reply(v1),
            AgentReply::InputRequired {
                question: "Which metric?".into(),
                task_id: Some("t".into()),
                context_id: Some("c".into())
            }
        );
        let v03 = json!({"kind": "task", "id": "t", "contextId": "c", "status": {"state": "completed"},
            "artifacts": [{"artifactId": "a", "parts": [{"kind": "text", "text": "42"}]}]});
        assert_eq!(reply(v03), AgentReply::Completed("42".into()));
        let msg =
            json!({"kind": "message", "role": "agent", "parts": [{"kind": "text", "text": "hi"}]});
        assert_eq!(reply(msg), AgentReply::Completed("hi".into()));
        let v1msg = json!({"message": {"role": "ROLE_AGENT", "parts": [{"text": "hello"}]}});
        assert_eq!(reply(v1msg), AgentReply::Completed("hello".into()));
        let auth = json!({"kind": "task", "id": "t2", "status": {"state": "auth-required",
            "message": {"kind": "message", "role": "agent", "parts": [{"kind": "text", "text": "Sign in at https://example.test"}]}}});
        assert!(
            matches!(reply(auth), AgentReply::InputRequired { question, .. } if question.starts_with("Sign in"))
        );
        let failed = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_REJECTED"}}});
        assert!(matches!(reply(failed), AgentReply::Failed(_)));
        assert!(read(json!({"nonsense": true})).is_err());
    }

    #[test]
    fn a_working_task_is_polled_and_history_answers_when_nothing_else_does() {
        let working = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_WORKING"}}});
        assert_eq!(read(working), Ok(Step::Poll("t".into())));
        let anonymous = json!({"kind": "task", "status": {"state": "submitted"}});
        assert_eq!(
            read(anonymous),
            Err(WireError::RunningWithoutId(TaskState::Submitted))
        );
        let history = json!({"kind": "task", "id": "t", "status": {"state": "completed"},
            "history": [{"role": "user", "parts": [{"kind": "text", "text": "q"}]},
                        {"role": "agent", "parts": [{"kind": "text", "text": "a"}]}]});
        assert_eq!(reply(history), AgentReply::Completed("a".into()));
    }

    #[test]
    fn the_message_sends_inputs_once_and_answers_on_the_agents_task() {
        let mut request = AgentRequest {
            thread_id: "th".into(),
            task_id: "t1".into(),
            skill_id: None,
            text: "convert 5 EUR".into(),
            inputs: [("amount".to_owned(), "5".to_owned())].into(),
            idempotency_key: "th/1/t1/1".into(),
            context_id: None,
            follow_up: None,
            progress: ProgressSink::none(),
        };
        let first = message(&request).to_json(Version::V1);
        assert_eq!(
            first["parts"],
            json!([{"text": "convert 5 EUR"}, {"data": {"amount": "5"}}])
        );
        assert_eq!(first["metadata"]["skillId"], Value::Null);
        assert!(first.get("taskId").is_none());
        request.follow_up = Some(crate::agents::FollowUp {
            task_id: Some("remote".into()),
            context_id: Some("ctx".into()),
            answer: "USD".into(),
        });
        let answer = message(&request).to_json(Version::V03);
        assert_eq!(answer["parts"], json!([{"kind": "text", "text": "USD"}]));
        assert_eq!(answer["taskId"], "remote");
        assert_eq!(answer["contextId"], "ctx");
        assert_eq!(answer["metadata"]["idempotencyKey"], "th/1/t1/1");
    }
}
