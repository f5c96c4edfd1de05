//! The agent directory: the cards Baton knows, a full-text index over them, and the ranking that
//! turns search hits into a task's agent and its fallbacks. Changes to it (register, discover,
//! rate, remove) go through `AgentDirectory` (`service.rs`), which also writes them to the store.

pub mod health;
pub mod register;
pub mod search;
pub mod service;
pub mod service_error;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use crate::card::AgentCard;
use crate::state::Candidate;
use search::SearchIndex;
pub use service::AgentDirectory;
pub use service_error::AgentDirectoryError;

/// Failures of the in-memory directory (the store's own errors are `StoreError`); tantivy's
/// error is kept whole so a log shows which index operation failed and why.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The analyzer the index was built with is not registered: a programming error, reported
    /// rather than panicking at start-up.
    #[error("search index: tokenizer {0} missing")]
    MissingTokenizer(&'static str),
    /// A thread panicked while holding the named lock; the directory refuses further changes
    /// rather than work on cards it may have left half updated.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
}

/// How many hits one search considers before ranking trims to `max_results`.
const SEARCH_DEPTH: usize = 50;

/// Relevance within this fraction of the best hit counts as a tie, so that rating and price decide
/// between agents that fit about equally well.
const RELEVANCE_TIER: f32 = 0.1;

#[derive(Default)]
struct Cards {
    by_id: BTreeMap<String, Arc<AgentCard>>,
    /// Analyzed words of every card, for judging fit without re-analysing cards per request.
    terms: BTreeMap<String, CardTerms>,
    /// Analyzed skill tags of every card: the words the planner treats as capabilities.
    tags: BTreeSet<String>,
    /// Every analyzed word some card says it does (name, description, skills, tags).
    vocabulary: BTreeSet<String>,
    /// Every analyzed word some card mentions anywhere (its own words, examples, inputs).
    mentioned: BTreeSet<String>,
}

/// A card's analyzed words: what it says it does (name, description, skills, tags) and what its
/// examples mention (weaker evidence: an example's city or topic is not what the agent does).
#[derive(Default)]
struct CardTerms {
    own: BTreeSet<String>,
    examples: BTreeSet<String>,
}

/// How much a word counts when judging fit: words that say little about which agent fits
/// (time, politeness, generic verbs) count less than the ones naming the work.
fn term_weight(term: &str) -> f32 {
    const WEAK: &[&str] = &[
        "current", "latest", "today", "tomorrow", "tonight", "now", "new", "recent", "quick",
        "daili", "good", "best", "nice", "info", "inform", "detail", "thing", "someth", "stuff",
        "next", "week", "weekend", "month", "year", "day", "check", "look", "see", "make", "chang",
        "want", "like", "pleas", "abl", "possibl", "realli", "kind",
    ];
    if WEAK.contains(&term) { 0.3 } else { 1.0 }
}

/// Shortest shared beginning that makes two stems one word ("defin" and "definit",
/// "reserv" and "reservat"): the English stemmer leaves such pairs apart.
const MIN_SHARED_STEM: usize = 5;

/// Whether `set` holds `term` or a stem that is the same word in another form.
fn holds(set: &BTreeSet<String>, term: &str) -> bool {
    if set.contains(term) {
        return true;
    }
    related(set, term).next().is_some()
}

/// The terms of `set` that are `term` in another form: one begins with the other, and they
/// share at least `MIN_SHARED_STEM` characters.
fn related<'a>(set: &'a BTreeSet<String>, term: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    let head: String = term.chars().take(MIN_SHARED_STEM).collect();
    let long_enough = head.chars().count() == MIN_SHARED_STEM;
    set.range(head.clone()..)
        .take_while(move |v| long_enough && v.starts_with(&head))
        .filter(move |v| v.starts_with(term) || term.starts_with(v.as_str()))
}

/// How many agent names a "nothing fits" question lists.
const SUMMARY_NAMES: usize = 12;

/// Least fit a candidate needs, as a share of what the task asks covered by the card.
pub const FIT_FLOOR: f32 = 0.3;

/// The cards in memory with their index and measured health: what the planner and the nodes
/// read on every request, so it answers without the store. Shared by `Arc` between the engine's
/// `Services` and `AgentDirectory`, which keeps it in line with the store.
pub struct Directory {
    cards: RwLock<Cards>,
    index: SearchIndex,
    health: health::HealthBook,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Result<Self, DirectoryError> {
        Ok(Directory {
            cards: RwLock::new(Cards::default()),
            index: SearchIndex::new()?,
            health: health::HealthBook::default(),
        })
    }

    /// Adds or replaces cards (already persisted by the caller) and indexes them.
    pub fn upsert(&self, cards: Vec<AgentCard>) -> Result<(), DirectoryError> {
        self.index.upsert(&cards.iter().collect::<Vec<_>>())?;
        let mut guard = self.write()?;
        for card in cards {
            let terms = self.card_terms(&card);
            guard.terms.insert(card.id.clone(), terms);
            guard.by_id.insert(card.id.clone(), Arc::new(card));
        }
        self.retag(&mut guard);
        Ok(())
    }

    /// Drops a card (already deleted from the store by the caller); false if it was not there.
    pub fn remove(&self, id: &str) -> Result<bool, DirectoryError> {
        self.index.remove(id)?;
        let mut guard = self.write()?;
        let removed = guard.by_id.remove(id).is_some();
        guard.terms.remove(id);
        self.retag(&mut guard);
        Ok(removed)
    }

    /// Cards for a search request: relevant to `query` (every card when it is blank), carrying
    /// one of `capabilities` (when any), within the price and rating bounds, best first.
    pub fn find(
        &self,
        query: &str,
        capabilities: &[String],
        max_price: Option<f64>,
        min_rating: Option<f64>,
        limit: usize,
    ) -> Result<Vec<(Arc<AgentCard>, f32)>, DirectoryError> {
        let words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
        let candidates = if words.is_empty() {
            self.list()
                .iter()
                .filter(|c| {
                    capabilities.is_empty()
                        || c.skills.iter().any(|s| {
                            s.tags
                                .iter()
                                .any(|t| capabilities.iter().any(|w| w.eq_ignore_ascii_case(t)))
                        })
                })
                .map(|c| Candidate::hit(c.id.clone(), None, 0.0, 0.0))
                .collect()
        } else {
            // Search ranks by the capabilities; the API's filter keeps only cards that have one.
            self.search(&words, capabilities)?
                .into_iter()
                .filter(|c| {
                    capabilities.is_empty()
                        || self.get(&c.agent_id).is_some_and(|card| {
                            card.skills.iter().any(|s| {
                                s.tags
                                    .iter()
                                    .any(|t| capabilities.iter().any(|w| w.eq_ignore_ascii_case(t)))
                            })
                        })
                })
                .collect()
        };
        Ok(self
            .rank(candidates)
            .into_iter()
            .filter_map(|c| Some((self.get(&c.agent_id)?, c.relevance)))
            .filter(|(card, _)| max_price.is_none_or(|p| card.price_per_call_usd <= p))
            .filter(|(card, _)| min_rating.is_none_or(|r| card.rating >= r))
            .take(limit)
            .collect())
    }

    /// The card with this id.
    pub fn get(&self, id: &str) -> Option<Arc<AgentCard>> {
        self.cards.read().ok()?.by_id.get(id).cloned()
    }

    /// Every card, ordered by id.
    pub fn list(&self) -> Vec<Arc<AgentCard>> {
        self.cards
            .read()
            .map(|c| c.by_id.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The analyzed form of words, as the index compares them.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        self.index.analyze(text)
    }

    /// The keywords that some card lists as a skill tag: a task's required capabilities.
    pub fn capabilities_of(&self, keywords: &[String]) -> Vec<String> {
        let Ok(cards) = self.cards.read() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for k in keywords {
            if self.index.analyze(k).iter().any(|t| cards.tags.contains(t)) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// Cards relevant to `keywords` carrying one of `capabilities` (when any), unranked.
    pub fn search(
        &self,
        keywords: &[String],
        capabilities: &[String],
    ) -> Result<Vec<Candidate>, DirectoryError> {
        // "define" finds cards that say "definitions": the stemmer keeps those apart.
        let related_terms: Vec<String> = match self.cards.read() {
            Ok(cards) => keywords
                .iter()
                .flat_map(|k| self.analyze(k))
                .flat_map(|t| {
                    related(&cards.vocabulary, &t)
                        .filter(|v| **v != t)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let hits = self
            .index
            .search(keywords, &related_terms, capabilities, SEARCH_DEPTH)?;
        let terms: BTreeSet<String> = keywords.iter().flat_map(|k| self.analyze(k)).collect();
        let analyzed: Vec<Vec<String>> = keywords.iter().map(|k| self.analyze(k)).collect();
        Ok(hits
            .into_iter()
            .filter_map(|hit| {
                let card = self.get(&hit.agent_id)?;
                let fit = self.fit(&hit.agent_id, &analyzed);
                Some(Candidate::hit(
                    hit.agent_id,
                    self.best_skill(&card, &terms),
                    hit.score,
                    fit,
                ))
            })
            .collect())
    }

    /// How much of what the (analyzed) `keywords` ask the card `agent_id` covers, from 0 to 1:
    /// each keyword counts fully when the card says it does it (name, description, skills,
    /// tags), half when only an example or an input's description mentions it, weighted by how
    /// much the word says about the work. Unlike BM25 relevance this compares across requests,
    /// so a floor on it refuses weak matches.
    fn fit(&self, agent_id: &str, keywords: &[Vec<String>]) -> f32 {
        let Ok(cards) = self.cards.read() else {
            return 0.0;
        };
        let Some(terms) = cards.terms.get(agent_id) else {
            return 0.0;
        };
        let (mut covered, mut total) = (0.0_f32, 0.0_f32);
        for keyword in keywords.iter().filter(|k| !k.is_empty()) {
            let weight = keyword
                .iter()
                .map(|t| term_weight(t))
                .fold(0.0_f32, f32::max);
            total += weight;
            if keyword.iter().any(|t| holds(&terms.own, t)) {
                covered += weight;
            } else if keyword.iter().any(|t| holds(&terms.examples, t)) {
                covered += weight / 2.0;
            }
        }
        if total > 0.0 { covered / total } else { 0.0 }
    }

    /// Whether any card mentions `word` anywhere, examples and inputs included: such a word is
    /// kept as it is rather than read as a value of some class ("BTC" stays "BTC").
    pub fn mentions(&self, word: &str) -> bool {
        let analyzed = self.analyze(word);
        let Ok(cards) = self.cards.read() else {
            return false;
        };
        analyzed.iter().any(|a| cards.mentioned.contains(a))
    }

    /// Whether the card `agent_id` says it does `word` (name, description, skills or tags).
    pub fn covers(&self, agent_id: &str, word: &str) -> bool {
        let analyzed = self.analyze(word);
        let Ok(cards) = self.cards.read() else {
            return false;
        };
        cards
            .terms
            .get(agent_id)
            .is_some_and(|t| analyzed.iter().any(|a| holds(&t.own, a)))
    }

    /// Whether any card says it does `keyword` (name, description, skills or tags).
    pub fn knows(&self, keyword: &str) -> bool {
        let analyzed = self.analyze(keyword);
        let Ok(cards) = self.cards.read() else {
            return false;
        };
        analyzed.iter().any(|a| holds(&cards.vocabulary, a))
    }

    fn card_terms(&self, card: &AgentCard) -> CardTerms {
        let mut own = String::new();
        let mut examples = String::new();
        for text in [&card.name, &card.description] {
            own.push_str(text);
            own.push(' ');
        }
        for skill in &card.skills {
            own.push_str(&format!(
                "{} {} {} ",
                skill.name,
                skill.description,
                skill.tags.join(" ")
            ));
            examples.push_str(&skill.examples.join(" "));
            examples.push(' ');
            // What a skill's inputs say ("Coin ticker, e.g. BTC or ETH") is example-level
            // evidence too: "What's BTC at?" names this agent's kind of value.
            for input in &skill.inputs {
                examples.push_str(&input.description);
                examples.push(' ');
            }
        }
        CardTerms {
            own: self.analyze(&own).into_iter().collect(),
            examples: self.analyze(&examples).into_iter().collect(),
        }
    }

    /// Records an agent call's outcome, for ranking.
    pub fn record_call(&self, agent_id: &str, reach: health::Reach, elapsed: std::time::Duration) {
        self.health.record(agent_id, reach, elapsed);
    }

    /// What this process has measured about an agent.
    pub fn health(&self, agent_id: &str) -> health::AgentHealth {
        self.health.of(agent_id)
    }

    /// Orders candidates best first: relevance (in tiers of 10% of the best), then measured
    /// success rate (in tiers of 10%), then rating, then measured latency (in tiers of 100 ms),
    /// then price, then id for a stable order.
    pub fn rank(&self, mut candidates: Vec<Candidate>) -> Vec<Candidate> {
        let best = candidates
            .iter()
            .map(|c| c.relevance)
            .fold(0.0_f32, f32::max);
        let tier = |c: &Candidate| -> i64 {
            if best <= 0.0 {
                0
            } else {
                (c.relevance / best / RELEVANCE_TIER).floor() as i64
            }
        };
        let cards: BTreeMap<String, Arc<AgentCard>> = candidates
            .iter()
            .filter_map(|c| Some((c.agent_id.clone(), self.get(&c.agent_id)?)))
            .collect();
        let rating = |c: &Candidate| cards.get(&c.agent_id).map_or(0.0, |k| k.rating);
        let success =
            |c: &Candidate| (self.health.of(&c.agent_id).success_rate * 10.0).round() as i64;
        let latency =
            |c: &Candidate| (self.health.of(&c.agent_id).latency_ms / 100.0).floor() as i64;
        let price = |c: &Candidate| {
            cards
                .get(&c.agent_id)
                .map_or(f64::MAX, |k| k.price_per_call_usd)
        };
        candidates.sort_by(|a, b| {
            tier(b)
                .cmp(&tier(a))
                .then_with(|| success(b).cmp(&success(a)))
                .then_with(|| rating(b).partial_cmp(&rating(a)).unwrap_or(Ordering::Equal))
                .then_with(|| latency(a).cmp(&latency(b)))
                .then_with(|| price(a).partial_cmp(&price(b)).unwrap_or(Ordering::Equal))
                .then_with(|| a.agent_id.cmp(&b.agent_id))
        });
        candidates
    }

    /// A short list of what the directory can do, for questions when nothing fits: at most
    /// `SUMMARY_NAMES` names, so a large directory does not flood the question.
    pub fn summary(&self) -> String {
        let cards = self.list();
        if cards.is_empty() {
            return "nothing yet (the directory is empty)".to_owned();
        }
        let names: Vec<&str> = cards
            .iter()
            .take(SUMMARY_NAMES)
            .map(|c| c.name.as_str())
            .collect();
        let more = cards.len().saturating_sub(SUMMARY_NAMES);
        if more == 0 {
            names.join(", ")
        } else {
            format!("{} and {more} more", names.join(", "))
        }
    }

    /// The skill of `card` that fits the task best: terms shared with the skill's own name and
    /// description count double, those shared with its tags and examples once (cards often
    /// give every skill the same tags).
    fn best_skill(&self, card: &AgentCard, terms: &BTreeSet<String>) -> Option<String> {
        let overlap = |text: String| {
            self.analyze(&text)
                .into_iter()
                .collect::<BTreeSet<String>>()
                .intersection(terms)
                .count()
        };
        card.skills
            .iter()
            .map(|s| {
                let own = overlap(format!("{} {}", s.name, s.description));
                let shared = overlap(format!("{} {}", s.tags.join(" "), s.examples.join(" ")));
                (2 * own + shared, s)
            })
            .fold(
                None,
                |best: Option<(usize, &crate::card::AgentSkill)>, (n, s)| match best {
                    Some((m, _)) if m >= n => best,
                    _ => Some((n, s)),
                },
            )
            .map(|(_, s)| s.id.clone())
    }

    /// Recomputes the capability vocabulary after cards changed.
    fn retag(&self, cards: &mut Cards) {
        cards.tags = cards
            .by_id
            .values()
            .flat_map(|c| c.skills.iter().flat_map(|s| s.tags.iter()))
            .flat_map(|t| self.index.analyze(t))
            .collect();
        cards.vocabulary = cards
            .terms
            .values()
            .flat_map(|t| t.own.iter().cloned())
            .collect();
        cards.mentioned = cards
            .terms
            .values()
            .flat_map(|t| t.own.iter().chain(t.examples.iter()).cloned())
            .collect();
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Cards>, DirectoryError> {
        self.cards
            .write()
            .map_err(|_| DirectoryError::Poisoned("directory"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn card(id: &str, rating: f64) -> AgentCard {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "Forecaster", "url": format!("http://127.0.0.1:9/{id}"),
            "description": "Weather forecasts", "rating": rating,
            "skills": [{"id": "f", "name": "Forecast", "description": "forecast", "tags": ["weather"]}]
        }))
        .expect("card")
    }

    fn ranked(directory: &Directory) -> Vec<String> {
        let words = vec!["weather".to_owned()];
        let found = directory.search(&words, &[]).expect("search");
        directory
            .rank(found)
            .into_iter()
            .map(|c| c.agent_id)
            .collect()
    }

    #[test]
    fn an_index_error_keeps_tantivys_error_as_its_source() {
        let error = DirectoryError::from(tantivy::TantivyError::InvalidArgument("x".into()));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn measured_failures_and_latency_outrank_rating() {
        let directory = Directory::new().expect("directory");
        directory
            .upsert(vec![card("a", 5.0), card("b", 4.0)])
            .expect("upsert");
        assert_eq!(
            ranked(&directory),
            ["a", "b"],
            "equal relevance: rating decides"
        );
        for _ in 0..5 {
            directory.record_call("a", health::Reach::Failed, Duration::from_millis(50));
        }
        assert_eq!(ranked(&directory), ["b", "a"], "a keeps failing");
        let directory = Directory::new().expect("directory");
        directory
            .upsert(vec![card("a", 4.0), card("b", 4.0)])
            .expect("upsert");
        directory.record_call("a", health::Reach::Reached, Duration::from_millis(900));
        directory.record_call("b", health::Reach::Reached, Duration::from_millis(20));
        assert_eq!(
            ranked(&directory),
            ["b", "a"],
            "same rating: the faster first"
        );
        assert!(directory.remove("b").expect("remove"));
        assert_eq!(ranked(&directory), ["a"]);
    }
}
