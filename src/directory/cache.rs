//! `CardCache`: parsed cards kept for the ids asked for most recently, so the directory keeps
//! only each card's JSON for 100k cards and still answers the planner's repeated `get`s without
//! parsing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::card::AgentCard;

/// How many parsed cards the cache keeps: far more than a request's search reads (at most
/// 50 hits), a few MB at most.
pub const CACHED_CARDS: usize = 4096;

/// A parsed card with the catalog generation it was parsed from.
type Generational = (u64, Arc<AgentCard>);

/// Parsed cards by id, each with the catalog generation it was parsed from.
pub struct CardCache {
    /// Held for a map lookup or insert only, never while parsing.
    cards: Mutex<HashMap<Box<str>, Generational>>,
    capacity: usize,
}

impl CardCache {
    /// A cache of at most `capacity` cards.
    pub fn new(capacity: usize) -> Self {
        CardCache {
            cards: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The card parsed from `generation` of `id`, if cached.
    pub fn get(&self, id: &str, generation: u64) -> Option<Arc<AgentCard>> {
        let cards = self.cards.lock().ok()?;
        let (cached, card) = cards.get(id)?;
        (*cached == generation).then(|| card.clone())
    }

    /// Keeps a parsed card, making room by dropping an arbitrary one when full.
    pub fn put(&self, id: &str, generation: u64, card: Arc<AgentCard>) {
        // A poisoned cache only costs parsing again.
        let Ok(mut cards) = self.cards.lock() else {
            return;
        };
        if cards.len() >= self.capacity
            && !cards.contains_key(id)
            && let Some(victim) = cards.keys().next().cloned()
        {
            cards.remove(&victim);
        }
        cards.insert(id.into(), (generation, card));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_of_another_generation_is_not_served_and_the_size_is_bounded() {
        let cache = CardCache::new(2);
        let card: AgentCard = serde_json::from_value(serde_json::json!({
            "id": "a", "name": "A", "url": "http://127.0.0.1:9/", "description": ""
        }))
        .expect("card");
        let card = Arc::new(card);
        cache.put("a", 1, card.clone());
        assert!(cache.get("a", 1).is_some());
        assert!(cache.get("a", 2).is_none(), "replaced since");
        cache.put("b", 1, card.clone());
        cache.put("c", 1, card);
        let kept = ["a", "b", "c"]
            .iter()
            .filter(|id| cache.get(id, 1).is_some())
            .count();
        assert_eq!(kept, 2);
    }
}
