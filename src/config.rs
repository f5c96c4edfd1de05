//! Settings: command-line flags, each with a `BATON_*` environment variable and a default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::agents::CallPolicy;
use crate::auth::MetricsToken;
use crate::metrics::Metrics;
use crate::planner::llm::client::{ApiKey, ClientOptions};
use crate::store::{ExpiryPolicy, SqliteSync, StoreOptions};
use crate::webhooks::{RetryPolicy, WebhookSecret, WebhookSettings};

/// Everything `baton serve` (and the in-process `baton chat`) can be told.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "BATON_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: String,

    /// Where threads and agent cards are stored: `sqlite://PATH` (created if missing),
    /// `postgres://USER@HOST/DB` (several processes may share it) or `memory://` (nothing
    /// survives exit).
    #[arg(long, env = "BATON_DATABASE_URL", default_value = "sqlite://baton.db")]
    pub database_url: String,

    /// SQLite commit durability: `full` fsyncs every commit (survives power loss); `normal`
    /// survives a killed process but may lose the last commits on power loss.
    #[arg(long, env = "BATON_SQLITE_SYNC", value_parser = sqlite_sync_parser(), default_value = "full")]
    pub sqlite_sync: SqliteSync,

    /// Do not register the built-in demo agents at start-up.
    #[arg(long, env = "BATON_NO_DEMO_AGENTS")]
    pub no_demo_agents: bool,

    /// Simulated latency of a demo agent, as NAME=MILLISECONDS (repeatable), e.g. weather=2000.
    #[arg(long = "demo-latency", env = "BATON_DEMO_LATENCY", value_delimiter = ',', value_parser = parse_latency)]
    pub demo_latency: Vec<(String, u64)>,

    /// Agent URLs Baton may call (comma-separated or repeated): URL prefixes
    /// (`http://10.0.0.5:9000/`) or hosts (`agents.internal`, `127.0.0.1:9000`). Default: any
    /// http(s) URL, loopback and private addresses included.
    #[arg(long, env = "BATON_AGENT_URL_ALLOW", value_delimiter = ',')]
    pub agent_url_allow: Vec<String>,

    /// Hosts outbound requests may reach although they are link-local or cloud-metadata
    /// addresses or names (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200,
    /// 0.0.0.0/8, `::`, multicast, broadcast, `metadata.google.internal`…), which agents,
    /// discovery and webhooks otherwise never reach, even through DNS or a redirect. Names or
    /// addresses as the URL writes them, comma-separated or repeated.
    #[arg(long, env = "BATON_OUTBOUND_ALLOW", value_delimiter = ',')]
    pub outbound_allow: Vec<String>,

    /// Largest agent answer read, in bytes; a larger one fails the call.
    #[arg(long, env = "BATON_AGENT_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub agent_max_response_bytes: usize,

    /// How long a run's lease on its thread lasts without renewal, in milliseconds. A process that
    /// dies mid-run leaves its lease to expire; another process then takes the run over.
    #[arg(long, env = "BATON_LEASE_MS", default_value_t = 10_000)]
    pub lease_ms: u64,

    /// Checkpoints kept per thread for its history (0: keep all).
    #[arg(long, env = "BATON_CHECKPOINT_RETENTION", default_value_t = 500)]
    pub checkpoint_retention: i64,

    /// PostgreSQL connections per process, the checkpoint writers' included.
    #[arg(long, env = "BATON_PG_POOL_SIZE", default_value_t = 10)]
    pub pg_pool_size: u32,

    /// PostgreSQL checkpoint writers per process: each group-commits whatever checkpoints are
    /// queued on its own connection. One by default: a single writer gathers everything queued
    /// while it committed, so its groups are bigger and PostgreSQL commits (and flushes) fewer
    /// times; more writers overlap commits, which helps only on a slow disk.
    #[arg(long, env = "BATON_PG_WRITERS", default_value_t = 1)]
    pub pg_writers: u32,

    /// Follow other processes through PostgreSQL LISTEN/NOTIFY. Turn it off where LISTEN is not
    /// available (a PgBouncer in transaction mode): WebSocket watches then get other processes'
    /// events by polling, about a second late, and cards registered elsewhere appear after a
    /// restart.
    #[arg(long, env = "BATON_PG_LISTEN", default_value_t = true, action = clap::ArgAction::Set)]
    pub pg_listen: bool,

    /// PostgreSQL statement timeout, in milliseconds (0: none).
    #[arg(long, env = "BATON_PG_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub pg_statement_timeout_ms: u64,

    /// Delete finished threads (completed, error, cancelled) this long after their last
    /// update, with their history and webhook deliveries: `30s`, `10m`, `12h`, `7d`. Default:
    /// keep them forever.
    #[arg(long, env = "BATON_THREAD_TTL")]
    pub thread_ttl: Option<Ttl>,

    /// Delete threads waiting for the user's answer (pending_user_input) this long after their
    /// last update; usually longer than `--thread-ttl`. Default: keep them forever (also when
    /// `--thread-ttl` is given).
    #[arg(long, env = "BATON_WAITING_THREAD_TTL")]
    pub waiting_thread_ttl: Option<Ttl>,

    /// Seconds between writes of the directory's snapshot (written only when cards changed, and
    /// once at graceful shutdown), which the next start-up restores instead of analysing every
    /// card; 0 turns snapshots off.
    #[arg(long, env = "BATON_DIRECTORY_SNAPSHOT_INTERVAL", default_value_t = 60)]
    pub directory_snapshot_interval: u64,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "BATON_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest prompt accepted, in characters (a chat's `prompt`, a WebSocket `start`, an A2A
    /// message opening a turn); a longer one gets 422.
    #[arg(long, env = "BATON_MAX_PROMPT_CHARS", default_value_t = 32_000)]
    pub max_prompt_chars: usize,

    /// Longest answer to a question accepted, in characters (`/api/chat/continue`'s
    /// `response`, a WebSocket `continue`, an A2A reply to `input-required`); a longer one gets 422.
    #[arg(long, env = "BATON_MAX_ANSWER_CHARS", default_value_t = 32_000)]
    pub max_answer_chars: usize,

    /// Largest WebSocket message a client may send, in bytes; a larger one closes the socket
    /// with code 1009 (message too big).
    #[arg(long, env = "BATON_WS_MAX_MESSAGE_BYTES", default_value_t = 256 * 1024)]
    pub ws_max_message_bytes: usize,

    /// Messages a second one WebSocket may send on average (twice that at once); a message
    /// beyond it is refused with an error frame and not acted on. 0: no limit.
    #[arg(long, env = "BATON_WS_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub ws_messages_per_second: u32,

    /// Threads one WebSocket may watch at once (`{"type":"watch"}`); a watch beyond it is
    /// refused with an error frame, so one socket cannot hold unbounded store polls.
    #[arg(long, env = "BATON_WS_MAX_WATCHES", default_value_t = 16)]
    pub ws_max_watches: usize,

    /// The URL other agents reach this server at (`https://baton.example.com`), written into
    /// Baton's own A2A card (`/.well-known/agent-card.json`); without it, the card names the host
    /// each card request was sent to, over http.
    #[arg(long, env = "BATON_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Longest wait for one agent call, in milliseconds.
    #[arg(long, env = "BATON_AGENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub agent_timeout_ms: u64,

    /// Calls per agent (first try plus retries) before falling back to the next-ranked agent.
    #[arg(long, env = "BATON_AGENT_ATTEMPTS", default_value_t = 2)]
    pub agent_attempts: u32,

    /// Who makes the plan: `rules` (offline, deterministic) or `llm` (an OpenAI-compatible
    /// model, falling back to `rules` for any decision it cannot make).
    #[arg(long, env = "BATON_PLANNER", value_enum, default_value = "rules")]
    pub planner: PlannerKind,

    /// Base URL of an OpenAI-compatible chat-completions API for `--planner llm`
    /// (`https://api.openai.com/v1`, Ollama's `http://127.0.0.1:11434/v1`, …). The key, if the
    /// endpoint needs one, comes from the environment variable `BATON_LLM_API_KEY` only.
    #[arg(long, env = "BATON_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// Model name for `--planner llm`.
    #[arg(long, env = "BATON_LLM_MODEL")]
    pub llm_model: Option<String>,

    /// Longest wait for one model request, in milliseconds (a model that hangs is cut off here).
    #[arg(long, env = "BATON_LLM_TIMEOUT_MS", default_value_t = 20_000)]
    pub llm_timeout_ms: u64,

    /// Model requests per call (first try plus retries after timeouts, connection errors, 429
    /// and 5xx) before the rules planner makes that decision.
    #[arg(long, env = "BATON_LLM_ATTEMPTS", default_value_t = 2)]
    pub llm_attempts: u32,

    /// Longest time one planner decision may take with the model, retries and corrections
    /// included, in milliseconds; then the rules planner makes it. A thread never waits longer.
    #[arg(long, env = "BATON_LLM_DEADLINE_MS", default_value_t = 30_000)]
    pub llm_deadline_ms: u64,

    /// Key of the HMAC-SHA256 signature every webhook delivery carries
    /// (`X-Baton-Signature: sha256=…`); without it deliveries are unsigned. Prefer the
    /// environment variable: a flag shows in the process list.
    #[arg(long, env = "BATON_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<WebhookSecret>,

    /// Attempts per webhook delivery, the first included; retries follow connection errors,
    /// timeouts, 5xx and 429 only.
    #[arg(long, env = "BATON_WEBHOOK_ATTEMPTS", default_value_t = 8)]
    pub webhook_attempts: u32,

    /// Longest wait for one webhook attempt, in milliseconds.
    #[arg(long, env = "BATON_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// Wait after a webhook's first failed attempt, in milliseconds; doubled after each (at most
    /// ten minutes), plus up to half again at random.
    #[arg(long, env = "BATON_WEBHOOK_BACKOFF_MS", default_value_t = 1_000)]
    pub webhook_backoff_ms: u64,

    /// Most bytes of a webhook receiver's answer Baton reads: only a failed attempt's, kept
    /// with the attempt (`GET /api/threads/{id}/webhooks`) to say why; the rest, and any
    /// successful answer's body, is never read.
    #[arg(long, env = "BATON_WEBHOOK_MAX_RESPONSE_BYTES", default_value_t = 4096)]
    pub webhook_max_response_bytes: usize,

    /// The model endpoint's key, from `BATON_LLM_API_KEY` only (no flag, so it never shows in a
    /// process list); `main` reads it, tests set it here. Its `Debug` is redacted.
    #[arg(skip)]
    pub llm_api_key: Option<ApiKey>,

    /// Turns authentication on: every endpoint but health, metrics, the docs, the console's
    /// page and Baton's agent card needs `Authorization: Bearer KEY` with a key from this file
    /// (`NAME ROLE SHA256` lines, made by `baton keys add`); re-read on SIGHUP.
    #[arg(long, env = "BATON_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Without `--api-keys-file`, Baton listens only on loopback; this lets it listen anywhere
    /// with no authentication at all (anyone who reaches the port reads and changes everything).
    #[arg(long, env = "BATON_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// The bearer token `/metrics` asks for (`Authorization: Bearer TOKEN`); without it,
    /// `/metrics` is open.
    #[arg(long, env = "BATON_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<MetricsToken>,

    /// With API keys: requests per second each key may make on average (429 with `Retry-After`
    /// past it); 0: no limit.
    #[arg(long, env = "BATON_KEY_REQUESTS_PER_SECOND", default_value_t = 50)]
    pub key_requests_per_second: u32,

    /// With API keys: requests a key may make at once before `--key-requests-per-second` applies.
    #[arg(long, env = "BATON_KEY_BURST", default_value_t = 100)]
    pub key_burst: u32,

    /// With API keys: run requests (chat, continue, fork, A2A) each key may have in flight; 0: no
    /// limit.
    #[arg(long, env = "BATON_KEY_MAX_RUNS", default_value_t = 16)]
    pub key_max_runs: usize,

    /// With API keys: event streams and WebSockets each key may hold open; 0: no limit.
    #[arg(long, env = "BATON_KEY_MAX_STREAMS", default_value_t = 32)]
    pub key_max_streams: usize,
}

/// Which planner makes the flow's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerKind {
    /// Offline rules over the user's words (the default).
    #[default]
    Rules,
    /// An OpenAI-compatible model, with the rules planner as fallback.
    Llm,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            addr: "127.0.0.1:8000".into(),
            database_url: "sqlite://baton.db".into(),
            sqlite_sync: SqliteSync::Full,
            no_demo_agents: false,
            demo_latency: Vec::new(),
            directory_snapshot_interval: 60,
            max_body_bytes: 1024 * 1024,
            max_prompt_chars: 32_000,
            max_answer_chars: 32_000,
            ws_max_message_bytes: 256 * 1024,
            ws_messages_per_second: 20,
            ws_max_watches: 16,
            public_url: None,
            agent_timeout_ms: 30_000,
            agent_attempts: 2,
            planner: PlannerKind::Rules,
            llm_base_url: None,
            llm_model: None,
            llm_timeout_ms: 20_000,
            llm_attempts: 2,
            llm_deadline_ms: 30_000,
            llm_api_key: None,
            agent_url_allow: Vec::new(),
            outbound_allow: Vec::new(),
            agent_max_response_bytes: 1024 * 1024,
            lease_ms: 10_000,
            checkpoint_retention: 500,
            pg_pool_size: 10,
            pg_writers: 1,
            pg_listen: true,
            pg_statement_timeout_ms: 5_000,
            webhook_secret: None,
            webhook_attempts: 8,
            webhook_timeout_ms: 10_000,
            webhook_backoff_ms: 1_000,
            webhook_max_response_bytes: 4096,
            thread_ttl: None,
            waiting_thread_ttl: None,
            api_keys_file: None,
            insecure_no_auth: false,
            metrics_token: None,
            key_requests_per_second: 50,
            key_burst: 100,
            key_max_runs: 16,
            key_max_streams: 32,
        }
    }
}

/// Parses `--sqlite-sync` (here and in `baton bench`): the store's names, each with a line of
/// help, so the store itself needs nothing of clap.
pub fn sqlite_sync_parser() -> impl TypedValueParser<Value = SqliteSync> {
    PossibleValuesParser::new(SqliteSync::ALL.map(|sync| {
        PossibleValue::new(sync.as_str()).help(match sync {
            SqliteSync::Full => "fsync on every commit: survives power loss",
            SqliteSync::Normal => {
                "WAL without fsync on commit: survives a killed process, may lose the last \
                 commits on power loss"
            }
        })
    }))
    .try_map(|name| name.parse::<SqliteSync>())
}

impl Settings {
    /// The store options these settings name, reporting to a `Metrics` of their own (the server
    /// replaces it with the one it serves).
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            sqlite_sync: self.sqlite_sync,
            retention: self.checkpoint_retention,
            pool_size: self.pg_pool_size,
            pg_writers: self.pg_writers,
            listen: self.pg_listen,
            statement_timeout_ms: self.pg_statement_timeout_ms,
            metrics: Metrics::default(),
        }
    }

    /// Timeouts and retries for agent calls.
    pub fn call_policy(&self) -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_millis(self.agent_timeout_ms.max(1)),
            attempts: self.agent_attempts.max(1),
            ..CallPolicy::default()
        }
    }

    /// Fills `llm_api_key` from `BATON_LLM_API_KEY` unless it is already set.
    pub fn read_llm_api_key_from_env(&mut self) {
        if self.llm_api_key.is_none() {
            self.llm_api_key = ApiKey::from_env();
        }
    }

    /// Timeouts and retries of model requests.
    pub fn llm_client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_millis(self.llm_timeout_ms.max(1)),
            attempts: self.llm_attempts.max(1),
            ..ClientOptions::default()
        }
    }

    /// Longest time one planner decision may take with the model.
    pub fn llm_deadline(&self) -> Duration {
        Duration::from_millis(self.llm_deadline_ms.max(1))
    }

    /// The lease a run holds on its thread.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// The webhook deliverer's secret and retry policy.
    pub fn webhooks(&self) -> WebhookSettings {
        WebhookSettings {
            secret: self.webhook_secret.clone(),
            retry: RetryPolicy {
                attempts: self.webhook_attempts.max(1),
                timeout: Duration::from_millis(self.webhook_timeout_ms.max(1)),
                backoff: Duration::from_millis(self.webhook_backoff_ms),
            },
            max_response_bytes: self.webhook_max_response_bytes,
        }
    }

    /// The limits on what a client sends (`--max-prompt-chars`, `--ws-*`).
    pub fn input_limits(&self) -> crate::api::input_limits::InputLimits {
        crate::api::input_limits::InputLimits {
            prompt_chars: self.max_prompt_chars,
            answer_chars: self.max_answer_chars,
            ws_message_bytes: self.ws_max_message_bytes,
            ws_messages_per_second: self.ws_messages_per_second,
        }
    }

    /// The per-key limits of `--key-*`.
    pub fn key_limits(&self) -> crate::auth::limits::LimitSettings {
        crate::auth::limits::LimitSettings {
            requests_per_second: self.key_requests_per_second,
            burst: self.key_burst,
            max_runs: self.key_max_runs,
            max_streams: self.key_max_streams,
        }
    }

    /// Which threads expire, and when.
    pub fn expiry(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            finished: self.thread_ttl.map(Ttl::duration),
            waiting: self.waiting_thread_ttl.map(Ttl::duration),
        }
    }

    /// Demo agent latencies by agent name.
    pub fn demo_latencies(&self) -> BTreeMap<String, Duration> {
        self.demo_latency
            .iter()
            .map(|(name, ms)| (name.clone(), Duration::from_millis(*ms)))
            .collect()
    }
}

fn parse_latency(s: &str) -> Result<(String, u64), String> {
    let (name, ms) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=MILLISECONDS, got {s:?}"))?;
    let ms = ms
        .trim()
        .parse()
        .map_err(|_| format!("{ms:?} is not a number of milliseconds"))?;
    Ok((name.trim().to_owned(), ms))
}

/// A time to live as the command line writes it: whole numbers with a unit (`ms`, `s`, `m`,
/// `h`, `d`), one or several (`90s`, `1h30m`, `7d`); never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(Duration);

impl Ttl {
    /// The time to live.
    pub fn duration(self) -> Duration {
        self.0
    }
}

/// A text that is not a `Ttl`, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a duration ({reason}); write e.g. 30s, 10m, 12h, 7d or 1h30m")]
pub struct BadTtl {
    text: String,
    reason: &'static str,
}

impl FromStr for Ttl {
    type Err = BadTtl;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| BadTtl {
            text: text.to_owned(),
            reason,
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad("a number is missing"))?;
            rest = &rest[digits..];
            let unit = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let part = match rest[..unit].trim() {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3_600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                "" => return Err(bad("a unit is missing")),
                _ => return Err(bad("the unit is not one of ms, s, m, h, d")),
            };
            total = total.saturating_add(part);
            rest = rest[unit..].trim_start();
        }
        if total.is_zero() {
            return Err(bad("it is zero"));
        }
        Ok(Ttl(total))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_to_live_read_as_people_write_them() {
        let ttl = |text: &str| text.parse::<Ttl>().map(Ttl::duration);
        assert_eq!(ttl("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(ttl("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(ttl("12h").ok(), Some(Duration::from_secs(12 * 3_600)));
        assert_eq!(ttl("7d").ok(), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(ttl("1h30m").ok(), Some(Duration::from_secs(5_400)));
        assert_eq!(ttl("1500ms").ok(), Some(Duration::from_millis(1_500)));
        for bad in ["", "10", "s", "10x", "0s", "-1m", "1.5h"] {
            assert!(ttl(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
