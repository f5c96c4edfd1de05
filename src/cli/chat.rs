//! `baton chat`: a conversation at the terminal, in process or against a running server over
//! its WebSocket. Progress goes to stderr, answers to stdout, and questions are asked inline.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin};
use tokio_tungstenite::tungstenite::Message;

use crate::api::chat::ProcessResponse;
use crate::app::{StartupError, build_engine};
use crate::config::Settings;
use crate::engine::{Engine, EngineError, StartRequest};

/// Flags of `baton chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// What to ask; read from the terminal when omitted.
    pub prompt: Option<String>,
    /// Talk to a running server (for example http://127.0.0.1:8000) instead of in process.
    #[arg(long)]
    pub server: Option<String>,
    /// The API key to send with `--server`, for a server run with `--api-keys-file`.
    #[arg(long, env = "BATON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Continue or name this thread.
    #[arg(long)]
    pub thread_id: Option<String>,
    /// How many ranked agents to show per task.
    #[arg(long, default_value_t = 5)]
    pub max_results: usize,
    #[command(flatten)]
    pub settings: Settings,
}

/// Why a terminal conversation stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("server: {0}")]
    Server(String),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the conversation until it completes, fails, or the terminal closes.
pub async fn run(args: ChatArgs) -> Result<(), ChatError> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let prompt = match args.prompt.clone() {
        Some(p) => p,
        None => match ask_line(&mut stdin, "What can I do for you? ").await? {
            Some(p) => p,
            None => return Ok(()),
        },
    };
    match &args.server {
        Some(server) => remote(server, &args, prompt, &mut stdin).await,
        None => local(&args, prompt, &mut stdin).await,
    }
}

async fn local(
    args: &ChatArgs,
    prompt: String,
    stdin: &mut Lines<BufReader<Stdin>>,
) -> Result<(), ChatError> {
    let engine = build_engine(&args.settings).await?;
    let thread_id = args.thread_id.clone().unwrap_or_else(Engine::new_thread_id);
    let mut events = engine.events().subscribe();
    let watched = thread_id.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if event.thread_id == watched {
                eprintln!("  · {} → {}", event.node, event.next);
            }
        }
    });
    let mut view = engine
        .start(StartRequest {
            thread_id: Some(thread_id.clone()),
            prompt,
            max_results: args.max_results,
            opened_by: None,
            webhook: None,
            access: crate::access::Access::Open,
        })
        .await?;
    loop {
        let response = serde_json::to_value(ProcessResponse::from(view)).unwrap_or_default();
        match next_answer(&response, stdin).await? {
            Some(answer) => view = engine.answer(&thread_id, &answer, None).await?,
            None => return Ok(()),
        }
    }
}

async fn remote(
    server: &str,
    args: &ChatArgs,
    prompt: String,
    stdin: &mut Lines<BufReader<Stdin>>,
) -> Result<(), ChatError> {
    let url = format!(
        "{}/ws/chat",
        server.trim_end_matches('/').replacen("http", "ws", 1)
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .map_err(|e| ChatError::Server(format!("cannot connect to {url}: {e}")))?;
    if let Some(key) = &args.api_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| ChatError::Server("the API key is not a valid header value".into()))?;
        request
            .headers_mut()
            .insert(axum::http::header::AUTHORIZATION, value);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| ChatError::Server(format!("cannot connect to {url}: {e}")))?;
    let mut start = json!({"type": "start", "prompt": prompt, "max_results": args.max_results});
    if let Some(id) = &args.thread_id {
        start["thread_id"] = json!(id);
    }
    send(&mut socket, &start).await?;
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|e| ChatError::Server(e.to_string()))?;
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        match value["type"].as_str() {
            Some("event") => eprintln!(
                "  · {} → {}",
                value["node"].as_str().unwrap_or("?"),
                value["next"].as_str().unwrap_or("?")
            ),
            Some("error") => {
                return Err(ChatError::Server(
                    value["error"].as_str().unwrap_or("error").to_owned(),
                ));
            }
            Some("response") => match next_answer(&value, stdin).await? {
                Some(answer) => {
                    let message = json!({
                        "type": "continue",
                        "thread_id": value["thread_id"],
                        "response": answer,
                    });
                    send(&mut socket, &message).await?;
                }
                None => return Ok(()),
            },
            _ => {}
        }
    }
    Err(ChatError::Server("the server closed the connection".into()))
}

async fn send<S>(socket: &mut S, value: &Value) -> Result<(), ChatError>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .map_err(|e| ChatError::Server(e.to_string()))
}

/// Prints a response; if it asks a question, reads and returns the user's answer.
async fn next_answer(
    response: &Value,
    stdin: &mut Lines<BufReader<Stdin>>,
) -> Result<Option<String>, ChatError> {
    let thread_id = response["thread_id"].as_str().unwrap_or("?");
    if let Some(pairs) = response["task_agent_pairs"].as_array() {
        for pair in pairs {
            eprintln!(
                "  task {:<28} agent {}",
                pair["task_name"].as_str().unwrap_or("?"),
                pair["primary"]["name"].as_str().unwrap_or("?")
            );
        }
    }
    match response["status"].as_str() {
        Some("pending_user_input") => {
            let question = response["question_for_user"].as_str().unwrap_or("?");
            let answer = ask_line(stdin, &format!("{question}\n> ")).await?;
            if answer.is_none() {
                println!(
                    "(thread {thread_id} is waiting; answer later with POST /api/chat/continue)"
                );
            }
            Ok(answer)
        }
        Some("completed") => {
            println!("{}", response["final_response"].as_str().unwrap_or(""));
            Ok(None)
        }
        _ => {
            println!(
                "error: {}",
                response["error_message"]
                    .as_str()
                    .unwrap_or("unknown error")
            );
            Ok(None)
        }
    }
}

async fn ask_line(
    stdin: &mut Lines<BufReader<Stdin>>,
    prompt: &str,
) -> Result<Option<String>, ChatError> {
    let mut out = tokio::io::stdout();
    loop {
        out.write_all(prompt.as_bytes()).await?;
        out.flush().await?;
        match stdin.next_line().await? {
            None => return Ok(None),
            Some(line) if line.trim().is_empty() => continue,
            Some(line) => return Ok(Some(line.trim().to_owned())),
        }
    }
}
