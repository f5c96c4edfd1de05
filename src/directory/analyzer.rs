//! The words a card or a query is made of, as the directory's index compares them: exactly what
//! tantivy's `en_stem` analyzer made of them when tantivy held the index, so rankings and the
//! planner's fit did not move when the index became our own.

use std::sync::{Arc, RwLock};

use frostem::{Algorithm, Stemmer};

use super::hasher::WordMap;

/// The analysis's version, kept in directory snapshots: bump when analysis changes (splitting,
/// lower-casing, the long-token limit, stemming, or what `Analysis` does with a card's fields),
/// so a snapshot analysed the old way is ignored and every card is analysed again.
pub const ANALYZER_VERSION: u32 = 1;

/// Tokens this long (in UTF-8 bytes) or longer are dropped, as tantivy's `RemoveLongFilter::limit(40)`
/// does: such a "word" is a hash or a URL fragment, not something a request names.
const MAX_TOKEN_BYTES: usize = 40;

/// Most distinct words the stem cache remembers; past that it starts over, so a client sending
/// random words cannot grow it without bound.
const STEM_CACHE_WORDS: usize = 200_000;

/// Splits text into runs of alphanumeric characters, drops long ones, lower-cases, and stems in
/// English. Stems are memoized (word → stem): card vocabularies repeat, and the stemmer is the
/// costly step. Cards are analyzed through an `Analysis` (`analysis.rs`), which memoizes again
/// per thread.
pub struct Analyzer {
    stemmer: Stemmer,
    /// Shared by every request and the start-up's threads; readers only take the read half, so
    /// a cached word (the common case) costs no exclusive lock.
    stems: RwLock<WordMap<Box<str>, Arc<str>>>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            stemmer: Stemmer::new(Algorithm::English),
            stems: RwLock::new(WordMap::default()),
        }
    }
}

impl Analyzer {
    /// The analyzed terms of `text`, in order, repeats kept (their count is a term frequency).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.analyze_into(text, &mut out);
        out
    }

    /// Appends the analyzed terms of `text` to `out`.
    pub fn analyze_into(&self, text: &str, out: &mut Vec<String>) {
        self.each_word(text, &mut String::new(), |word| {
            out.push(self.stem(word).to_string());
        });
    }

    /// Calls `each` with every lower-cased word of `text` that is kept, before stemming;
    /// `lowered` is the buffer it is written to.
    pub(super) fn each_word(&self, text: &str, lowered: &mut String, mut each: impl FnMut(&str)) {
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && w.len() < MAX_TOKEN_BYTES)
        {
            lowered.clear();
            if word.is_ascii() {
                lowered.push_str(word);
                lowered.make_ascii_lowercase();
            } else {
                // Character by character, as tantivy's `LowerCaser` does (no final-sigma rule).
                for c in word.chars() {
                    lowered.extend(c.to_lowercase());
                }
            }
            each(lowered);
        }
    }

    /// The stem of a lower-cased word, from the shared cache when it has it.
    pub(super) fn stem(&self, word: &str) -> Arc<str> {
        if let Ok(stems) = self.stems.read()
            && let Some(stem) = stems.get(word)
        {
            return stem.clone();
        }
        let stem: Arc<str> = self.stemmer.stem(word).into();
        // A poisoned cache only loses memoization: stemming is still right without it.
        if let Ok(mut stems) = self.stems.write() {
            if stems.len() >= STEM_CACHE_WORDS {
                stems.clear();
            }
            stems.insert(word.into(), stem.clone());
        }
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against tantivy 0.27's `en_stem` before tantivy was removed.
    #[test]
    fn words_stem_as_tantivys_en_stem_did() {
        let analyzer = Analyzer::default();
        let words = "Flights definitions daily Dogs are the bests! reservations running \
                     weather-forecasts BTC ETH l'été Größe ΣΟΦΟΣ naïve x1y2 \
                     aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \
                     translating summarization analyses generously cities";
        let expected = [
            "flight",
            "definit",
            "daili",
            "dog",
            "are",
            "the",
            "best",
            "reserv",
            "run",
            "weather",
            "forecast",
            "btc",
            "eth",
            "l",
            "été",
            "größe",
            "σοφοσ",
            "naïv",
            "x1y2",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "translat",
            "summar",
            "analys",
            "generous",
            "citi",
        ];
        assert_eq!(analyzer.analyze(words), expected);
        // Twice: the second time from the cache.
        assert_eq!(analyzer.analyze(words), expected);
    }
}
