//! `Analysis`: one thread's run of card analyses. It remembers, for itself alone, each word it
//! met with its stem's number, so a card's tokens are numbers counted by an integer sort: no
//! shared lock, no reference count shared with another thread and no string comparison per
//! token, which is what loading 100k cards on every core spent its time on.

use std::sync::Arc;

use super::analyzer::Analyzer;
use super::hasher::WordMap;
use super::index::{AnalyzedFields, FIELD_COUNT, Field};

/// A stem's number within one `Analysis`.
type StemNumber = u32;

/// Analyzes texts through `Analyzer` (exactly its terms), memoizing words and stems locally.
/// Meant to live for one batch of cards on one thread: its memory grows with the distinct
/// words it meets.
pub struct Analysis<'a> {
    analyzer: &'a Analyzer,
    /// Lower-cased word → its stem's number.
    words: WordMap<Box<str>, StemNumber>,
    /// Stem → its number.
    numbers: WordMap<Arc<str>, StemNumber>,
    /// Number → stem; each `Arc` is this analysis' own, so cloning it touches no other
    /// thread's cache line.
    stems: Vec<Arc<str>>,
    lowered: String,
    tokens: [Vec<StemNumber>; FIELD_COUNT],
}

impl<'a> Analysis<'a> {
    /// A fresh analysis over `analyzer`.
    pub fn new(analyzer: &'a Analyzer) -> Self {
        Analysis {
            analyzer,
            words: WordMap::default(),
            numbers: WordMap::default(),
            stems: Vec::new(),
            lowered: String::new(),
            tokens: Default::default(),
        }
    }

    /// Adds the analyzed terms of `text` to `field` of the card being analyzed.
    pub fn add(&mut self, text: &str, field: Field) {
        let analyzer = self.analyzer;
        let Analysis {
            analyzer: _,
            words,
            numbers,
            stems,
            lowered,
            tokens,
        } = self;
        analyzer.each_word(text, lowered, |word| {
            let number = match words.get(word) {
                Some(n) => *n,
                None => {
                    let stem = analyzer.stem(word);
                    let n = match numbers.get(&*stem) {
                        Some(n) => *n,
                        None => {
                            let n = StemNumber::try_from(stems.len()).unwrap_or(StemNumber::MAX);
                            // Our own copy: the shared one's count is touched by every thread.
                            let own: Arc<str> = Arc::from(&*stem);
                            stems.push(own.clone());
                            numbers.insert(own, n);
                            n
                        }
                    };
                    words.insert(word.into(), n);
                    n
                }
            };
            tokens[field as usize].push(number);
        });
    }

    /// The card's fields as the index takes them (each field's distinct terms with counts, in
    /// the order this analysis first met their stems, and its length); starts the next card.
    pub fn finish(&mut self) -> AnalyzedFields {
        let mut out = AnalyzedFields::default();
        for (field, numbers) in self.tokens.iter_mut().enumerate() {
            out.lengths[field] = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
            numbers.sort_unstable();
            let mut counted: Vec<(Arc<str>, u16)> = Vec::new();
            let mut last: Option<StemNumber> = None;
            for &n in numbers.iter() {
                match counted.last_mut() {
                    Some((_, count)) if last == Some(n) => *count = count.saturating_add(1),
                    _ => {
                        let stem = self.stems.get(n as usize).cloned().unwrap_or_default();
                        counted.push((stem, 1));
                    }
                }
                last = Some(n);
            }
            out.terms[field] = counted;
            numbers.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_as_the_analyzer_and_from_tokens_do() {
        let analyzer = Analyzer::default();
        let mut analysis = Analysis::new(&analyzer);
        let text = "Dogs dog DOGS running Größe flights";
        for _ in 0..2 {
            analysis.add(text, Field::Name);
            analysis.add("weather", Field::Tags);
            let fields = analysis.finish();
            let tokens = |t: &str| analyzer.analyze(t).into_iter().map(Arc::from).collect();
            let expected = AnalyzedFields::from_tokens([
                tokens(text),
                Vec::new(),
                Vec::new(),
                tokens("weather"),
                Vec::new(),
            ]);
            let mut terms = fields.terms.clone();
            // In the order stems were first met, not word order: the index does not mind.
            terms.iter_mut().for_each(|t| t.sort_unstable());
            assert_eq!(terms, expected.terms);
            assert_eq!(fields.lengths, [6, 0, 0, 1, 0]);
            assert_eq!(terms[0][0], (Arc::from("dog"), 3));
        }
    }
}
