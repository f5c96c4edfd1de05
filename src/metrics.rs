//! The process's Prometheus metrics: one [`Metrics`] value, created by `Application` and handed
//! to whoever records (the HTTP middleware, the engine, `execute_batch`, the SQLite writer), so
//! there is no global registry and two servers in one process (the tests) never share counts.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client): atomics and a
//! `parking_lot` lock per labelled family, four small crates in all, no HTTP server of its own. Its text
//! is OpenMetrics; [`Metrics::render`] also writes the classic Prometheus text format (0.0.4),
//! which names a counter's family with its `_total` and has no `# EOF`.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::{QuestionKind, ThreadStatus};

/// Upper bounds, in seconds, of the latency histograms: 1 ms to 60 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds of the SQLite group-commit sizes (the writer takes at most 256 writes a group).
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn group_histogram() -> Histogram {
    Histogram::new(GROUP_BUCKETS)
}

/// A labelled latency histogram family.
type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// The exposition a scraper asked for (by its `Accept` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `text/plain; version=0.0.4`: what curl and most scrapers get.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: what Prometheus asks for first.
    OpenMetrics,
}

impl Exposition {
    /// The format an `Accept` header prefers: OpenMetrics only when asked for by name.
    pub fn for_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => {
                Exposition::OpenMetrics
            }
            _ => Exposition::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// How a turn's run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnOutcome {
    /// The turn has its final response.
    Completed,
    /// The run paused on a question for the user.
    PendingUserInput,
    /// The turn failed (a node failed).
    Error,
    /// The user cancelled the turn.
    Cancelled,
    /// The run stopped without settling the thread: its lease went to another process, or the
    /// store failed; the thread goes on from its last checkpoint elsewhere or later.
    Interrupted,
}

impl TurnOutcome {
    /// The outcome a run that stopped with the thread in `status` had.
    pub fn of(status: ThreadStatus) -> Self {
        match status {
            ThreadStatus::Completed => TurnOutcome::Completed,
            ThreadStatus::PendingUserInput => TurnOutcome::PendingUserInput,
            ThreadStatus::Error => TurnOutcome::Error,
            ThreadStatus::Cancelled => TurnOutcome::Cancelled,
            ThreadStatus::Processing => TurnOutcome::Interrupted,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Completed => "completed",
            TurnOutcome::PendingUserInput => "pending_user_input",
            TurnOutcome::Error => "error",
            TurnOutcome::Cancelled => "cancelled",
            TurnOutcome::Interrupted => "interrupted",
        }
    }
}

/// What started a turn's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTrigger {
    /// A new prompt (a new thread, or a new turn of a finished one).
    Prompt,
    /// The user's answer to the thread's question.
    Answer,
    /// A run another process (or this one, before a restart) left cut short.
    Takeover,
    /// A fork of a checkpoint taken mid-run, resumed as a run of its own.
    Fork,
}

impl TurnTrigger {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnTrigger::Prompt => "prompt",
            TurnTrigger::Answer => "answer",
            TurnTrigger::Takeover => "takeover",
            TurnTrigger::Fork => "fork",
        }
    }
}

/// What one call of one agent came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The agent answered the task.
    Answered,
    /// The agent asked the user something.
    Asked,
    /// The agent failed, refused, or did not answer in time.
    Failed,
}

impl CallOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Answered => "answered",
            CallOutcome::Asked => "asked",
            CallOutcome::Failed => "failed",
        }
    }
}

/// Who asked the user a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asker {
    /// The planner (guidance, no agent fits, a missing input).
    Planner,
    /// An agent (A2A `input-required`).
    Agent,
}

impl Asker {
    /// Who asks a question of this kind.
    pub fn of(kind: &QuestionKind) -> Self {
        match kind {
            QuestionKind::Agent { .. } => Asker::Agent,
            _ => Asker::Planner,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Asker::Planner => "planner",
            Asker::Agent => "agent",
        }
    }
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value!(TurnOutcome, TurnTrigger, CallOutcome, Asker);

/// A thread status as a label value (the wire string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StatusLabel(ThreadStatus);

impl EncodeLabelValue for StatusLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TriggerLabels {
    trigger: TurnTrigger,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: TurnOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabels {
    node: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    agent_id: String,
    outcome: CallOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabels {
    agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AskerLabels {
    asked_by: Asker,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ThreadLabels {
    status: StatusLabel,
}

/// Every metric of the process; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Latencies<RouteLabels>,
    turns_started: Family<TriggerLabels, Counter>,
    turns_finished: Family<OutcomeLabels, Counter>,
    turn_duration: Latencies<OutcomeLabels>,
    node_duration: Latencies<NodeLabels>,
    agent_calls: Family<CallLabels, Counter>,
    agent_call_duration: Latencies<AgentLabels>,
    questions: Family<AskerLabels, Counter>,
    threads: Family<ThreadLabels, Gauge>,
    checkpoint_write_duration: Histogram,
    sqlite_group_size: Histogram,
    sqlite_commit_duration: Histogram,
    pg_group_size: Histogram,
    pg_commit_duration: Histogram,
    threads_expired: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh set of metrics, all at zero, in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let inner = Inner {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            turns_started: Family::default(),
            turns_finished: Family::default(),
            turn_duration: Family::new_with_constructor(latency_histogram),
            node_duration: Family::new_with_constructor(latency_histogram),
            agent_calls: Family::default(),
            agent_call_duration: Family::new_with_constructor(latency_histogram),
            questions: Family::default(),
            threads: Family::default(),
            checkpoint_write_duration: latency_histogram(),
            sqlite_group_size: group_histogram(),
            sqlite_commit_duration: latency_histogram(),
            pg_group_size: group_histogram(),
            pg_commit_duration: latency_histogram(),
            threads_expired: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "baton_http_requests",
            "HTTP requests answered, by method, route template and status",
            inner.http_requests.clone(),
        );
        registry.register(
            "baton_http_request_duration_seconds",
            "Time to answer an HTTP request (to its response head), by method and route template",
            inner.http_duration.clone(),
        );
        registry.register(
            "baton_turns_started",
            "Runs of a turn started on this process, by what started them",
            inner.turns_started.clone(),
        );
        registry.register(
            "baton_turns_finished",
            "Runs of a turn that stopped on this process, by outcome",
            inner.turns_finished.clone(),
        );
        registry.register(
            "baton_turn_duration_seconds",
            "Time a turn's run took, from its start to its pause or end, by outcome",
            inner.turn_duration.clone(),
        );
        registry.register(
            "baton_node_duration_seconds",
            "Time one node of the flow took, by node",
            inner.node_duration.clone(),
        );
        registry.register(
            "baton_agent_calls",
            "Calls of agents (each attempt), by agent id and outcome",
            inner.agent_calls.clone(),
        );
        registry.register(
            "baton_agent_call_duration_seconds",
            "Time one call of an agent took, by agent id",
            inner.agent_call_duration.clone(),
        );
        registry.register(
            "baton_questions_asked",
            "Questions put to the user, by who asked (planner or agent)",
            inner.questions.clone(),
        );
        registry.register(
            "baton_threads",
            "Threads in the store by status, counted when scraped (the whole database)",
            inner.threads.clone(),
        );
        registry.register(
            "baton_checkpoint_write_duration_seconds",
            "Time to write one checkpoint, from the run's call to the store's commit",
            inner.checkpoint_write_duration.clone(),
        );
        registry.register(
            "baton_sqlite_group_commit_size",
            "Writes committed together by the SQLite writer in one transaction",
            inner.sqlite_group_size.clone(),
        );
        registry.register(
            "baton_sqlite_group_commit_duration_seconds",
            "Time the SQLite writer took to commit one group",
            inner.sqlite_commit_duration.clone(),
        );
        registry.register(
            "baton_pg_group_commit_size",
            "Checkpoints committed together by one PostgreSQL writer in one transaction",
            inner.pg_group_size.clone(),
        );
        registry.register(
            "baton_pg_group_commit_duration_seconds",
            "Time a PostgreSQL writer took to commit one group",
            inner.pg_commit_duration.clone(),
        );
        registry.register(
            "baton_threads_expired",
            "Threads deleted by this process's reaper because their time to live (--thread-ttl, --waiting-thread-ttl) ran out",
            inner.threads_expired.clone(),
        );
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// An HTTP request answered with `status` after `elapsed`; `route` is the route's template.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.inner
            .http_duration
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.inner
            .http_requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// A turn's run started.
    pub fn turn_started(&self, trigger: TurnTrigger) {
        self.inner
            .turns_started
            .get_or_create(&TriggerLabels { trigger })
            .inc();
    }

    /// A turn's run stopped after `elapsed`.
    pub fn turn_finished(&self, outcome: TurnOutcome, elapsed: Duration) {
        let labels = OutcomeLabels { outcome };
        self.inner.turns_finished.get_or_create(&labels).inc();
        self.inner
            .turn_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A node of the flow ran for `elapsed`.
    pub fn node(&self, node: &'static str, elapsed: Duration) {
        self.inner
            .node_duration
            .get_or_create(&NodeLabels { node })
            .observe(elapsed.as_secs_f64());
    }

    /// One call of an agent came to `outcome` after `elapsed`.
    pub fn agent_call(&self, agent_id: &str, outcome: CallOutcome, elapsed: Duration) {
        self.inner
            .agent_calls
            .get_or_create(&CallLabels {
                agent_id: agent_id.to_owned(),
                outcome,
            })
            .inc();
        self.inner
            .agent_call_duration
            .get_or_create(&AgentLabels {
                agent_id: agent_id.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A question was put to the user.
    pub fn question_asked(&self, asked_by: Asker) {
        self.inner
            .questions
            .get_or_create(&AskerLabels { asked_by })
            .inc();
    }

    /// One checkpoint write took `elapsed`.
    pub fn checkpoint_written(&self, elapsed: Duration) {
        self.inner
            .checkpoint_write_duration
            .observe(elapsed.as_secs_f64());
    }

    /// The SQLite writer committed `size` writes in one transaction, in `elapsed`.
    pub fn sqlite_group_committed(&self, size: usize, elapsed: Duration) {
        self.inner.sqlite_group_size.observe(size as f64);
        self.inner
            .sqlite_commit_duration
            .observe(elapsed.as_secs_f64());
    }

    /// A PostgreSQL writer committed `size` checkpoints in one transaction, in `elapsed` (also
    /// a failed group: the time it took to fail).
    pub fn pg_group_committed(&self, size: usize, elapsed: Duration) {
        self.inner.pg_group_size.observe(size as f64);
        self.inner.pg_commit_duration.observe(elapsed.as_secs_f64());
    }

    /// The reaper deleted `count` expired threads.
    pub fn threads_expired(&self, count: u64) {
        self.inner.threads_expired.inc_by(count);
    }

    /// Sets the threads-by-status gauge to a fresh count (every status, zero when absent);
    /// `None` (the store could not count) drops the gauge from the exposition rather than show
    /// stale numbers.
    pub fn set_threads(&self, counts: Option<&[(ThreadStatus, u64)]>) {
        let threads = &self.inner.threads;
        let Some(counts) = counts else {
            threads.clear();
            return;
        };
        for status in ThreadStatus::ALL {
            let n = counts
                .iter()
                .filter(|(s, _)| *s == status)
                .map(|(_, n)| *n)
                .sum::<u64>();
            threads
                .get_or_create(&ThreadLabels {
                    status: StatusLabel(status),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: Exposition) -> Result<String, fmt::Error> {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode_registry(
            &mut open_metrics,
            &self.inner.registry,
        )?;
        Ok(match format {
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode_eof(&mut open_metrics)?;
                open_metrics
            }
            Exposition::Prometheus => classic_text(&open_metrics),
        })
    }
}

/// OpenMetrics text (without `# EOF`) as the classic Prometheus text format: a counter's `HELP`
/// and `TYPE` name the family as its samples do, with `_total`; `# UNIT` lines are dropped. The
/// samples are the same in both.
fn classic_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + 256);
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(pending) = help.replace(line) {
                out.push_str(pending);
                out.push('\n');
            }
            continue;
        }
        if let Some(family) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            if let Some(text) = help
                .take()
                .and_then(|h| h.strip_prefix("# HELP "))
                .and_then(|h| h.strip_prefix(family))
            {
                let _ = writeln!(out, "# HELP {family}_total{text}");
            }
            let _ = writeln!(out, "# TYPE {family}_total counter");
            continue;
        }
        if let Some(pending) = help.take() {
            out.push_str(pending);
            out.push('\n');
        }
        if line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(pending) = help {
        out.push_str(pending);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_with_total() {
        let metrics = Metrics::new();
        metrics.question_asked(Asker::Agent);
        let text = metrics.render(Exposition::Prometheus).expect("render");
        assert!(
            text.contains("# TYPE baton_questions_asked_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP baton_questions_asked_total Questions"),
            "{text}"
        );
        assert!(
            text.contains("baton_questions_asked_total{asked_by=\"agent\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let open = metrics.render(Exposition::OpenMetrics).expect("render");
        assert!(
            open.contains("# TYPE baton_questions_asked counter\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn thread_gauge_lists_every_status_and_disappears_when_unknown() {
        let metrics = Metrics::new();
        metrics.set_threads(Some(&[(ThreadStatus::Completed, 3)]));
        let text = metrics.render(Exposition::Prometheus).expect("render");
        assert!(
            text.contains("baton_threads{status=\"completed\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("baton_threads{status=\"error\"} 0\n"),
            "{text}"
        );
        metrics.set_threads(None);
        let text = metrics.render(Exposition::Prometheus).expect("render");
        assert!(!text.contains("baton_threads{"), "{text}");
    }
}
