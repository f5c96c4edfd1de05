//! Demo agents inside the binary, so that Baton does its whole job with nothing else running.
//! Their answers are deterministic (a hash of the inputs) and say that they are demo data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{AgentClient, AgentError, AgentReply, AgentRequest};
use crate::card::AgentCard;

const CARDS_JSON: &str = include_str!("demo_agents.json");

/// Idempotency keys remembered per agent: enough for tests to see the last calls, bounded so a
/// long-running demo does not grow.
const KEPT_KEYS: usize = 64;

/// The demo agents' cards, marked `builtin` so the dispatcher calls them in process (the
/// demo server overrides that when it serves them over A2A).
pub fn demo_cards() -> Result<Vec<AgentCard>, serde_json::Error> {
    let mut cards: Vec<AgentCard> = serde_json::from_str(CARDS_JSON)?;
    for card in &mut cards {
        card.protocol = crate::card::Protocol::Builtin;
    }
    Ok(cards)
}

/// The demo agents: deterministic answers so tests and demos need no network, with simulated
/// latency to show concurrency and crash recovery, and counters so tests can see who was called.
#[derive(Debug, Default)]
pub struct BuiltinAgents {
    latency: BTreeMap<String, Duration>,
    calls: BTreeMap<&'static str, AtomicU64>,
    /// The idempotency keys each agent received, in order (for tests of the wire).
    keys: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
}

const NAMES: [&str; 8] = [
    "weather",
    "climate",
    "currency",
    "data-analysis",
    "charts",
    "news",
    "translation",
    "summarization",
];

impl BuiltinAgents {
    /// Demo agents answering after `latency[name]` (for demonstrations and crash tests).
    pub fn new(latency: BTreeMap<String, Duration>) -> Self {
        BuiltinAgents {
            latency,
            calls: NAMES.iter().map(|n| (*n, AtomicU64::new(0))).collect(),
            keys: Default::default(),
        }
    }

    /// The idempotency keys the agent `name` received, oldest first.
    pub fn idempotency_keys(&self, name: &str) -> Vec<String> {
        self.keys
            .lock()
            .map(|k| k.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// How many times the agent `name` was called in this process.
    pub fn calls(&self, name: &str) -> u64 {
        self.calls
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn answer(name: &str, request: &AgentRequest) -> Option<String> {
        let input = |k: &str| request.inputs.get(k).map(String::as_str);
        let h = stable_hash(&format!("{}|{:?}", request.text, request.inputs));
        let text = match name {
            "weather" => {
                let place = input("location").unwrap_or("your area");
                format!(
                    "Weather in {place}: {}°C, {}, {}% chance of rain.",
                    8 + h % 20,
                    ["sunny", "partly cloudy", "overcast", "light showers"][(h % 4) as usize],
                    (h / 7) % 90
                )
            }
            "climate" => {
                let place = input("location").unwrap_or("your area");
                format!(
                    "Climate in {place}: long-term average {}°C, {} mm of rain a month.",
                    5 + h % 20,
                    20 + h % 80
                )
            }
            "currency" => {
                let amount: f64 = input("amount").and_then(|a| a.parse().ok()).unwrap_or(1.0);
                let from = input("from_currency").unwrap_or("USD");
                let to = input("to_currency").unwrap_or("EUR");
                let rate = if from == to {
                    1.0
                } else {
                    0.5 + (stable_hash(&format!("{from}{to}")) % 1500) as f64 / 1000.0
                };
                format!(
                    "{amount} {from} = {:.2} {to} (rate {rate:.4}).",
                    amount * rate
                )
            }
            "data-analysis" => {
                let subject = input("dataset").unwrap_or("your data");
                format!(
                    "Analysis of {subject}: revenue up {}% in Q{}, top region {}; {} outliers flagged.",
                    2 + h % 15,
                    1 + h % 4,
                    ["EMEA", "Americas", "APAC"][(h % 3) as usize],
                    h % 5
                )
            }
            "charts" => format!(
                "Chart ready: a {} chart with {} series.",
                ["bar", "line", "pie"][(h % 3) as usize],
                1 + h % 4
            ),
            "news" => {
                let topic = input("topic").unwrap_or("the world");
                format!(
                    "Top headlines on {topic}: \"{} breakthrough announced\", \"Markets react to {topic}\", \"{} things to know today\".",
                    capitalize(topic),
                    3 + h % 7
                )
            }
            "translation" => {
                let lang = input("target_language").unwrap_or("French");
                let source = input("text").unwrap_or(request.text.as_str());
                format!(
                    "Translation into {lang} of \"{}\": [{lang}] {}",
                    source.trim(),
                    source.trim()
                )
            }
            "summarization" => {
                let source = input("text").unwrap_or(request.text.as_str());
                let words: Vec<&str> = source.split_whitespace().collect();
                format!(
                    "Summary ({} words in): {}{}",
                    words.len(),
                    words.iter().take(12).copied().collect::<Vec<_>>().join(" "),
                    if words.len() > 12 { " …" } else { "" }
                )
            }
            _ => return None,
        };
        Some(format!("[demo data] {text}"))
    }
}

#[async_trait]
impl AgentClient for BuiltinAgents {
    async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        let name = card.builtin_name().unwrap_or(&card.url);
        let counter = self
            .calls
            .get(name)
            .ok_or_else(|| AgentError::UnknownBuiltin(name.to_owned()))?;
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut keys) = self.keys.lock() {
            // The most recent keys only: a long-running server must not grow without bound.
            let list = keys.entry(name.to_owned()).or_default();
            if list.len() >= KEPT_KEYS {
                list.remove(0);
            }
            list.push(request.idempotency_key.clone());
        }
        if let Some(delay) = self.latency.get(name) {
            tokio::time::sleep(*delay).await;
        }
        // The translator asks for the text when it was not given: the demo of an agent asking
        // the user something (A2A input-required), in process and over A2A alike.
        let mut request = request.clone();
        if name == "translation" && !request.inputs.contains_key("text") {
            match &request.follow_up {
                Some(follow_up) => {
                    request
                        .inputs
                        .insert("text".to_owned(), follow_up.answer.clone());
                }
                None => {
                    let lang = request
                        .inputs
                        .get("target_language")
                        .map_or("the target language", String::as_str);
                    return Ok(AgentReply::InputRequired {
                        question: format!("Which text should I translate into {lang}?"),
                        task_id: Some(format!("translation-{}", request.idempotency_key)),
                        context_id: Some(request.thread_id.clone()),
                    });
                }
            }
        }
        Self::answer(name, &request)
            .map(AgentReply::Completed)
            .ok_or_else(|| AgentError::UnknownBuiltin(name.to_owned()))
    }
}

/// FNV-1a: stable across runs and platforms, unlike std's randomized hasher.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_parse_and_validate() {
        let cards = demo_cards().expect("demo cards are valid JSON");
        assert_eq!(cards.len(), NAMES.len());
        for card in &cards {
            card.validate().expect("demo card is valid");
            let name = card.builtin_name().expect("builtin url");
            assert!(NAMES.contains(&name), "{name} has a behaviour");
        }
    }

    #[tokio::test]
    async fn answers_are_deterministic_demo_data() {
        let agents = BuiltinAgents::new(BTreeMap::new());
        let cards = demo_cards().expect("cards");
        let req = AgentRequest {
            thread_id: "t".into(),
            task_id: "t1".into(),
            skill_id: None,
            text: "weather in Paris".into(),
            inputs: BTreeMap::from([("location".into(), "Paris".into())]),
            idempotency_key: "t/t1/1".into(),
            context_id: None,
            follow_up: None,
            progress: crate::agents::progress::ProgressSink::none(),
        };
        let a = agents.call(&cards[0], &req).await.expect("answer");
        let b = agents.call(&cards[0], &req).await.expect("answer");
        assert_eq!(a, b);
        let AgentReply::Completed(text) = a else {
            panic!("completed")
        };
        assert!(text.starts_with("[demo data] Weather in Paris"));
        assert_eq!(agents.calls("weather"), 2);
    }
}
