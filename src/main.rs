//! The `baton` command: parses arguments, builds the app, nothing else.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

use baton::app::Application;
use baton::cli::bench::{self, BenchArgs};
use baton::cli::{self, ChatArgs};
use baton::config::Settings;
use baton::telemetry::{self, LogFormat};

/// Baton: interactive multi-agent orchestration. Plans a request into tasks, finds and ranks
/// agents, runs them in parallel batches, and asks the user when only the user knows.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about)]
struct Cli {
    /// Log as JSON lines instead of text: one object per line, with the fields of the spans it
    /// was logged in (request id, route, thread id, node, agent id).
    #[arg(long, global = true, env = "BATON_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP/WebSocket server.
    Serve(Settings),
    /// Hold a conversation at the terminal (in process, or with --server against a server).
    Chat(ChatArgs),
    /// The agent directory of a running server: add, discover, list, search, rate, remove.
    Agents(baton::cli::agents::AgentsArgs),
    /// API keys: `baton keys add NAME [--admin] --api-keys-file PATH` prints a new key once and
    /// appends only its hash (send SIGHUP to a running server to take it).
    Keys(baton::cli::keys::KeysArgs),
    /// Measure whole conversations in process, per store.
    Bench(BenchArgs),
    /// Score the planner on the request corpus (evals/): per kind of request, then in total.
    Eval(baton::eval::EvalArgs),
    /// Serve the built-in demo agents over A2A, each at /NAME with its card at
    /// /NAME/.well-known/agent-card.json.
    DemoAgents {
        /// Address to listen on.
        #[arg(long, env = "BATON_DEMO_AGENTS_ADDR", default_value = "127.0.0.1:9000")]
        addr: String,
        /// Speak only A2A v0.3 (as older agents do), to exercise Baton's fallback.
        #[arg(long)]
        v03_only: bool,
    },
    /// Compact a SQLite database once (a full VACUUM) and switch it to incremental
    /// auto-vacuum, so that expired threads (`--thread-ttl`) shrink the file; stop the server
    /// first.
    Vacuum(baton::cli::vacuum::VacuumArgs),
    /// Create or update the database schema, then exit (`serve` also does it at start-up).
    Migrate {
        /// The database to migrate.
        #[arg(long, env = "BATON_DATABASE_URL", default_value = "sqlite://baton.db")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = if cli.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    // Held to the end: dropping it flushes the trace export (feature `otlp`).
    let _telemetry = telemetry::init(format, default_filter).context("cannot set up logging")?;
    match cli.command {
        Command::Serve(mut settings) => {
            settings.read_llm_api_key_from_env();
            serve(settings).await
        }
        Command::Chat(mut args) => {
            args.settings.read_llm_api_key_from_env();
            cli::run(args).await.context("chat failed")
        }
        Command::Agents(args) => baton::cli::agents::run(args)
            .await
            .context("agents command failed"),
        Command::Keys(args) => {
            let added = baton::cli::keys::run(&args).context("cannot add the key")?;
            println!("{}", added.key);
            eprintln!(
                "added `{}`; the key above is shown only this once (the file keeps its hash)",
                added.line
            );
            Ok(())
        }
        Command::DemoAgents { addr, v03_only } => {
            let versions = if v03_only {
                baton::agents::serve::Versions::V03Only
            } else {
                baton::agents::serve::Versions::Both
            };
            baton::agents::serve::serve(&addr, versions, |bound| {
                // Whoever started us may have stopped reading: never die of a closed stdout.
                let mut out = std::io::stdout();
                let _ = writeln!(out, "demo agents listening on http://{bound}");
                for card in baton::agents::builtin::demo_cards().unwrap_or_default() {
                    if let Some(name) = card.builtin_name() {
                        let _ = writeln!(out, "  http://{bound}/{name}  ({})", card.name);
                    }
                }
            })
            .await
            .context("demo agents stopped")
        }
        Command::Migrate { database_url } => {
            baton::store::connect(&database_url, &baton::store::StoreOptions::default())
                .await
                .with_context(|| format!("cannot migrate {database_url}"))?;
            println!("{database_url} is up to date");
            Ok(())
        }
        Command::Vacuum(args) => {
            let done = baton::cli::vacuum::run(&args)
                .await
                .with_context(|| format!("cannot vacuum {}", args.database_url))?;
            println!(
                "{}: {} bytes before, {} after; incremental auto-vacuum on",
                args.database_url, done.bytes_before, done.bytes_after
            );
            Ok(())
        }
        Command::Eval(mut args) => {
            args.settings.read_llm_api_key_from_env();
            let report = baton::eval::run(&args).await.context("eval failed")?;
            print!("{}", report.text(args.listing()));
            println!("{}", report.json_line());
            if let Some(min) = args.min_score
                && report.score() < min
            {
                anyhow::bail!("score {:.3} is below --min-score {min}", report.score());
            }
            Ok(())
        }
        Command::Bench(args) => {
            let summary = bench::run(&args).await.context("benchmark failed")?;
            println!("{summary}");
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings)
        .await
        .context("cannot start the server")?;
    let addr = app.local_addr()?;
    tracing::info!(%addr, database = %settings.database_url, "baton listening");
    // One plain line on stdout, for people and for scripts that started us on port 0.
    let _ = writeln!(std::io::stdout(), "baton listening on http://{addr}");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("baton stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
