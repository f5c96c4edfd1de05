//! `baton bench --directory-cards N`: the directory as it grows. The real server runs in process
//! on a temporary SQLite file; N generated cards (varied, about 1 KB of JSON each) are registered
//! through the HTTP API by concurrent clients, then by one sequential client; then search and
//! chat latencies are measured at N (chat alone and while a client registers as fast as it can),
//! and the release binary is started on the same file to time start-up and read its RSS and
//! CPU time (from the snapshot the in-process server wrote as it stopped); then 1% of the cards
//! are changed through that binary, it is killed (-9, no snapshot written), and the start-up
//! is timed again (the snapshot plus the changed cards reloaded by revision).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::app::{Application, StartupError};
use crate::config::Settings;

/// Clients registering at once in the concurrent phase.
const CONCURRENT_CLIENTS: usize = 8;

/// Searches measured at N.
const SEARCHES: usize = 500;

/// Chat turns measured at N, alone and beside a registering client.
const CHATS: usize = 60;

/// How long the restarted binary may take before the bench gives up on it.
const RESTART_DEADLINE: Duration = Duration::from_secs(120);

/// Why the directory benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryBenchError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("registration refused with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the restarted binary did not answer /api/health within {0:?}")]
    RestartTimeout(Duration),
}

/// Runs the benchmark for `cards` cards, printing a readable line and a JSON line per figure;
/// returns the summary.
pub async fn run(cards: usize) -> Result<Value, DirectoryBenchError> {
    let dir = std::env::temp_dir().join(format!("baton-bench-directory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DirectoryBenchError::TempDir)?;
    let db = dir.join("directory.db");
    let result = measure(cards, &db).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(cards: usize, db: &std::path::Path) -> Result<Value, DirectoryBenchError> {
    let settings = Settings {
        addr: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", db.display()),
        ..Settings::default()
    };
    let app = Application::build(&settings).await?;
    let addr = app.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let mut summary = json!({"bench": "baton.directory", "cards": cards,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get())});

    // Concurrent clients, the rate per tenth of the way so growth shows.
    let slices = 10.min(cards.max(1));
    let mut rates = Vec::new();
    for slice in 0..slices {
        let (from, to) = (cards * slice / slices, cards * (slice + 1) / slices);
        let started = Instant::now();
        register_range(&client, &base, from, to, CONCURRENT_CLIENTS).await?;
        let rate = (to - from) as f64 / started.elapsed().as_secs_f64();
        figure(
            &format!(
                "register {from:>7}..{to:<7} {rate:9.0} cards/s ({CONCURRENT_CLIENTS} clients)"
            ),
            json!({"figure": "register_concurrent", "from": from, "to": to,
                   "clients": CONCURRENT_CLIENTS, "cards_per_s": rate}),
        );
        rates.push(rate);
    }
    summary["register_cards_per_s"] = json!(rates);

    // One sequential client at N.
    let extra = (cards / 10).clamp(1, 1000);
    let started = Instant::now();
    register_range(&client, &base, cards, cards + extra, 1).await?;
    let sequential = extra as f64 / started.elapsed().as_secs_f64();
    figure(
        &format!("register at {cards}: {sequential:.0} cards/s (1 sequential client)"),
        json!({"figure": "register_sequential", "at": cards, "cards": extra,
               "cards_per_s": sequential}),
    );
    summary["register_sequential_cards_per_s"] = json!(sequential);

    // Search at N.
    let mut random = Random::new(7);
    let mut latencies = Vec::with_capacity(SEARCHES);
    for _ in 0..SEARCHES {
        let words: Vec<&str> = (0..1 + random.below(3))
            .map(|_| random.pick(WORDS))
            .collect();
        let started = Instant::now();
        let response = client
            .get(format!("{base}/api/agents/search"))
            .query(&[("q", words.join(" "))])
            .send()
            .await?;
        response.bytes().await?;
        latencies.push(started.elapsed());
    }
    let (p50, p99) = percentiles(&mut latencies);
    figure(
        &format!("search at {cards}: p50 {p50:.2} ms  p99 {p99:.2} ms"),
        json!({"figure": "search", "at": cards, "p50_ms": p50, "p99_ms": p99}),
    );
    summary["search_p50_ms"] = json!(p50);
    summary["search_p99_ms"] = json!(p99);

    // Chat alone, then beside a client registering as fast as it can.
    let (alone50, alone99) = chats(&client, &base).await?;
    let registering = Arc::new(AtomicBool::new(true));
    let registered = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, base) = (client.clone(), base.clone());
        let (registering, registered) = (registering.clone(), registered.clone());
        let first = cards + extra;
        tokio::spawn(async move {
            let mut next = first;
            while registering.load(Ordering::Relaxed) {
                if register_one(&client, &base, next).await.is_err() {
                    break;
                }
                next += 1;
                registered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let busy = chats(&client, &base).await;
    registering.store(false, Ordering::Relaxed);
    let _ = writer.await;
    let (busy50, busy99) = busy?;
    figure(
        &format!(
            "chat at {cards}: alone p50 {alone50:.2} ms p99 {alone99:.2} ms; beside a registering \
             client p50 {busy50:.2} ms p99 {busy99:.2} ms ({} cards registered meanwhile)",
            registered.load(Ordering::Relaxed)
        ),
        json!({"figure": "chat", "at": cards, "alone_p50_ms": alone50, "alone_p99_ms": alone99,
               "registering_p50_ms": busy50, "registering_p99_ms": busy99}),
    );
    summary["chat"] = json!({"alone_p50_ms": alone50, "alone_p99_ms": alone99,
        "registering_p50_ms": busy50, "registering_p99_ms": busy99});

    let _ = stop.send(());
    let _ = server.await;

    let (first, server) = restart(&client, db).await?;
    figure(
        &format!(
            "restart at {} cards: /api/health after {:.0} ms ({:.0} ms CPU), RSS {:.1} MB",
            first.listed,
            first.startup_ms,
            first.cpu_ms,
            first.rss_kb as f64 / 1024.0
        ),
        json!({"figure": "restart", "cards": first.listed, "startup_ms": first.startup_ms,
               "cpu_ms": first.cpu_ms, "rss_kb": first.rss_kb}),
    );
    summary["startup_ms"] = json!(first.startup_ms);
    summary["startup_cpu_ms"] = json!(first.cpu_ms);
    summary["rss_kb"] = json!(first.rss_kb);

    // 1% of the cards changed through the restarted binary, which is then killed: the next
    // start-up has the snapshot and those cards to reload.
    let changed = (cards / 100).max(1);
    for i in 0..changed {
        let mut card = generated_card(cards * 3 + i);
        card["id"] = generated_card(i * 97 % cards.max(1))["id"].clone();
        register_card(&client, &server.base, &card).await?;
    }
    drop(server);
    let (second, server) = restart(&client, db).await?;
    drop(server);
    figure(
        &format!(
            "restart after kill -9 with {changed} cards changed: /api/health after {:.0} ms \
             ({:.0} ms CPU), RSS {:.1} MB",
            second.startup_ms,
            second.cpu_ms,
            second.rss_kb as f64 / 1024.0
        ),
        json!({"figure": "restart_changed", "cards": second.listed, "changed": changed,
               "startup_ms": second.startup_ms, "cpu_ms": second.cpu_ms,
               "rss_kb": second.rss_kb}),
    );
    summary["startup_changed_ms"] = json!(second.startup_ms);
    Ok(summary)
}

/// One start-up of the binary, measured.
struct Restart {
    startup_ms: f64,
    /// CPU time (user and system) the process used until it answered.
    cpu_ms: f64,
    rss_kb: u64,
    listed: usize,
}

/// Prints a figure as a readable line and a JSON line.
fn figure(line: &str, value: Value) {
    println!("{line}");
    println!("{value}");
}

/// Registers cards `from..to` with `clients` clients at once.
async fn register_range(
    client: &reqwest::Client,
    base: &str,
    from: usize,
    to: usize,
    clients: usize,
) -> Result<(), DirectoryBenchError> {
    let next = Arc::new(AtomicUsize::new(from));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base, next) = (client.clone(), base.to_owned(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return Ok::<(), DirectoryBenchError>(());
                    }
                    register_one(&client, &base, i).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        match worker.await {
            Ok(done) => done?,
            Err(e) => return Err(DirectoryBenchError::Io(std::io::Error::other(e))),
        }
    }
    Ok(())
}

async fn register_one(
    client: &reqwest::Client,
    base: &str,
    i: usize,
) -> Result<(), DirectoryBenchError> {
    register_card(client, base, &generated_card(i)).await
}

/// Registers `card` through the API; anything but 201 is the bench's error.
async fn register_card(
    client: &reqwest::Client,
    base: &str,
    card: &Value,
) -> Result<(), DirectoryBenchError> {
    let response = client
        .post(format!("{base}/api/agents"))
        .json(card)
        .send()
        .await?;
    let status = response.status().as_u16();
    if status != 201 {
        let body = response.text().await.unwrap_or_default();
        return Err(DirectoryBenchError::Refused { status, body });
    }
    response.bytes().await?;
    Ok(())
}

/// `CHATS` first turns (each plans over the directory and asks a question), p50 and p99 in ms.
async fn chats(client: &reqwest::Client, base: &str) -> Result<(f64, f64), DirectoryBenchError> {
    let mut latencies = Vec::with_capacity(CHATS);
    for _ in 0..CHATS {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/chat"))
            .json(&json!({"prompt": super::bench::PROMPT}))
            .send()
            .await?;
        response.bytes().await?;
        latencies.push(started.elapsed());
    }
    Ok(percentiles(&mut latencies))
}

/// Starts this binary's `serve` on the database: milliseconds until `/api/health` answers,
/// its RSS then (kB), and how many cards it lists.
async fn restart(
    client: &reqwest::Client,
    db: &std::path::Path,
) -> Result<(Restart, Server), DirectoryBenchError> {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let started = Instant::now();
    let base = format!("http://{addr}");
    let child = Server {
        child: std::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--addr", &addr.to_string(), "--database-url"])
            .arg(format!("sqlite://{}", db.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
        base: base.clone(),
    };
    let startup = loop {
        if started.elapsed() > RESTART_DEADLINE {
            return Err(DirectoryBenchError::RestartTimeout(RESTART_DEADLINE));
        }
        match client.get(format!("{base}/api/health")).send().await {
            Ok(r) if r.status().is_success() => break started.elapsed(),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let rss_kb = vm_rss_kb(child.child.id());
    let cpu_ms = cpu_ms(child.child.id());
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client.get(format!("{base}/api/agents?limit=1000"));
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let response = request.send().await?;
        cursor = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page: Vec<Value> = response.json().await?;
        listed += page.len();
        if cursor.is_none() {
            break;
        }
    }
    let measured = Restart {
        startup_ms: startup.as_secs_f64() * 1000.0,
        cpu_ms,
        rss_kb,
        listed,
    };
    Ok((measured, child))
}

/// The restarted server, killed (-9, and reaped) however the bench ends.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's CPU time so far (user and system) from `/proc/PID/stat`, in ms, at Linux's 100
/// clock ticks a second (0 where there is no procfs).
fn cpu_ms(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) * 10.0)
        })
        .unwrap_or(0.0)
}

/// A process's resident set from `/proc/PID/status`, in kB (0 where there is no procfs).
fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// p50 and p99 in milliseconds.
fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// The `i`th generated card: the same for the same `i`, varied across `i` (name, description,
/// one to three skills with tags, examples and inputs), about 1 KB of JSON.
pub fn generated_card(i: usize) -> Value {
    let mut random = Random::new(i as u64 + 1);
    let mut words = |n: usize| -> String {
        (0..n)
            .map(|_| random.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let name = format!("{} {} agent", words(1), words(1));
    let description = format!("Helps with {}.", words(18));
    let mut random = Random::new(i as u64 * 31 + 7);
    let skills: Vec<Value> = (0..1 + random.below(3))
        .map(|s| {
            let mut text = |n: usize| -> String {
                (0..n)
                    .map(|_| random.pick(WORDS))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            json!({
                "id": format!("skill-{s}"),
                "name": text(2),
                "description": format!("Finds {}", text(12)),
                "tags": [text(1), text(1), text(1)],
                "examples": [format!("Can you {}?", text(7)), format!("I need {}", text(6))],
                "inputs": [{"name": "subject", "description": format!("The {} to look at", text(3)),
                            "required": true, "type": "string"}],
            })
        })
        .collect();
    json!({
        "id": format!("bench.agent-{i}"),
        "name": name,
        "description": description,
        "url": format!("http://127.0.0.1:9/agents/{i}"),
        "rating": (i % 50) as f64 / 10.0,
        "price_per_call_usd": (i % 7) as f64 / 100.0,
        "skills": skills,
    })
}

/// A small deterministic generator (xorshift64*): the same cards on every run.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// The generated cards' vocabulary: the kinds of work agents do and the things they name.
const WORDS: &[&str] = &[
    "weather",
    "forecast",
    "rain",
    "temperature",
    "flight",
    "hotel",
    "booking",
    "travel",
    "train",
    "ticket",
    "currency",
    "exchange",
    "rate",
    "stock",
    "price",
    "market",
    "crypto",
    "bitcoin",
    "news",
    "headline",
    "article",
    "summary",
    "translate",
    "language",
    "french",
    "german",
    "spanish",
    "recipe",
    "cooking",
    "restaurant",
    "menu",
    "calendar",
    "meeting",
    "reminder",
    "email",
    "message",
    "invoice",
    "payment",
    "loan",
    "mortgage",
    "insurance",
    "tax",
    "account",
    "bank",
    "budget",
    "report",
    "chart",
    "data",
    "analysis",
    "sales",
    "customer",
    "support",
    "ticketing",
    "shipping",
    "parcel",
    "delivery",
    "tracking",
    "route",
    "map",
    "directions",
    "traffic",
    "parking",
    "car",
    "rental",
    "bike",
    "fitness",
    "workout",
    "nutrition",
    "diet",
    "doctor",
    "medicine",
    "pharmacy",
    "appointment",
    "dentist",
    "health",
    "sleep",
    "music",
    "playlist",
    "movie",
    "cinema",
    "concert",
    "event",
    "sports",
    "football",
    "score",
    "game",
    "book",
    "library",
    "author",
    "poem",
    "story",
    "joke",
    "quiz",
    "math",
    "equation",
    "unit",
    "conversion",
    "time",
    "zone",
    "clock",
    "alarm",
    "timer",
    "photo",
    "image",
    "video",
    "resize",
    "document",
    "pdf",
    "contract",
    "legal",
    "law",
    "job",
    "resume",
    "interview",
    "salary",
    "hiring",
    "school",
    "course",
    "lesson",
    "homework",
    "exam",
    "research",
    "paper",
    "citation",
    "patent",
    "energy",
    "solar",
    "electricity",
    "water",
    "garden",
    "plant",
    "pet",
    "dog",
    "cat",
    "vet",
    "home",
    "repair",
    "plumber",
    "cleaning",
    "furniture",
    "shopping",
    "gift",
    "coupon",
    "discount",
    "review",
    "rating",
    "survey",
    "poll",
    "vote",
    "election",
    "city",
    "country",
    "museum",
    "park",
    "beach",
    "mountain",
    "ski",
    "hiking",
    "camping",
    "weekly",
    "daily",
    "local",
    "global",
    "quick",
    "detailed",
    "accurate",
    "secure",
    "private",
    "public",
    "open",
    "smart",
    "simple",
    "fast",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cards_are_valid_varied_and_about_a_kilobyte() {
        let sizes: Vec<usize> = (0..50)
            .map(|i| {
                let value = generated_card(i);
                let card = crate::directory::register::parse_card(value.clone()).expect("card");
                assert!(card.validate().is_ok());
                value.to_string().len()
            })
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((500..2000).contains(&mean), "mean size {mean}");
        assert_ne!(generated_card(1)["name"], generated_card(2)["name"]);
        assert_eq!(generated_card(3), generated_card(3));
    }
}
