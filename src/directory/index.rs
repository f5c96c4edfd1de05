//! The directory's full-text index: BM25 over five boosted fields, scored as tantivy scored it
//! (same analyzer, same constants, same quantized field lengths), but with no commit step and no
//! segment files: a card is one splice into sorted postings, visible as soon as the directory's
//! write lock is released, so registering costs the same at 100k cards as at 1k.

use std::cell::RefCell;
use std::sync::Arc;

use super::hasher::WordMap;
use super::postings::Postings;
use super::snapshot::{Reader, SnapshotError, Writer};

/// BM25's term-frequency saturation, as tantivy (and Lucene) set it.
const K1: f32 = 1.2;
/// BM25's length normalization, as tantivy (and Lucene) set it.
const B: f32 = 0.75;

/// The fields a card is indexed in; their order is the order of every per-field array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Description,
    /// Each skill's name and description.
    Skills,
    /// Each skill's tags.
    Tags,
    /// Each skill's examples and what its inputs say of their values ("e.g. BTC or ETH").
    Examples,
}

/// How many fields a card has.
pub const FIELD_COUNT: usize = 5;

impl Field {
    /// Every field, in array order.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::Name,
        Field::Description,
        Field::Skills,
        Field::Tags,
        Field::Examples,
    ];

    /// A hit in this field counts this much: a tag says more about what an agent does than a
    /// word in its description. Order of the sum: tags, name, skills, description, examples.
    const BOOSTED: [(Field, f32); FIELD_COUNT] = [
        (Field::Tags, 2.0),
        (Field::Name, 1.5),
        (Field::Skills, 1.2),
        (Field::Description, 1.0),
        (Field::Examples, 0.6),
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// A term's interned number: words are stored once, postings and card term sets hold numbers.
pub type TermId = u32;

/// A card's place in the index; freed places are reused, so the index stays as dense as the
/// directory.
pub type CardSlot = u32;

/// A card's words per field, analyzed outside any lock: each field's distinct terms with their
/// counts, and its length in tokens.
#[derive(Debug, Default, Clone)]
pub struct AnalyzedFields {
    pub terms: [Vec<(Arc<str>, u16)>; FIELD_COUNT],
    pub lengths: [u32; FIELD_COUNT],
}

impl AnalyzedFields {
    /// Counts the analyzed tokens of each field: the plain form `Analysis::finish` must agree
    /// with, for tests.
    #[cfg(test)]
    pub fn from_tokens(tokens: [Vec<Arc<str>>; FIELD_COUNT]) -> Self {
        let mut out = AnalyzedFields::default();
        for (field, mut words) in tokens.into_iter().enumerate() {
            out.lengths[field] = u32::try_from(words.len()).unwrap_or(u32::MAX);
            words.sort_unstable();
            let mut counted: Vec<(Arc<str>, u16)> = Vec::new();
            for word in words {
                match counted.last_mut() {
                    Some((last, n)) if *last == word => *n = n.saturating_add(1),
                    _ => counted.push((word, 1)),
                }
            }
            out.terms[field] = counted;
        }
        out
    }
}

thread_local! {
    /// One score per card slot (text, then the required tags' clause), reused by every search on
    /// this thread and left all zeros after each: a fresh zeroed 400 KB per search at 100k cards
    /// (page faults included) cost more than the scoring itself.
    static SCORES: RefCell<(Vec<f32>, Vec<f32>)> = RefCell::default();
}

/// Interned terms, postings per (field, term) sorted by card slot, and field lengths per card.
#[derive(Default)]
pub struct InvertedIndex {
    term_ids: WordMap<Box<str>, TermId>,
    words: Vec<Box<str>>,
    /// Indexed by term id, then field.
    postings: Vec<[Postings; FIELD_COUNT]>,
    /// Indexed by card slot; a free slot has all zeros.
    lengths: Vec<[u32; FIELD_COUNT]>,
    /// The same lengths as tantivy's one-byte codes, which scoring reads.
    norms: Vec<[u8; FIELD_COUNT]>,
    total_tokens: [u64; FIELD_COUNT],
    cards: u64,
}

/// A search's words, already analyzed: free-text terms (repeats count again, as repeated
/// clauses of a boolean query do) and required tags.
pub struct IndexQuery<'a> {
    pub terms: &'a [String],
    pub required_tags: &'a [String],
}

impl InvertedIndex {
    /// How many terms were ever interned.
    pub fn term_count(&self) -> usize {
        self.words.len()
    }

    /// The term's number, if any card ever used it.
    pub fn term_id(&self, word: &str) -> Option<TermId> {
        self.term_ids.get(word).copied()
    }

    /// The word a term number stands for.
    pub fn word(&self, id: TermId) -> &str {
        self.words.get(id as usize).map_or("", |w| w)
    }

    /// The term's number, interning it if new. Terms are never forgotten: the vocabulary grows
    /// with the distinct words ever indexed, not with the cards.
    pub fn intern(&mut self, word: &str) -> TermId {
        if let Some(id) = self.term_ids.get(word) {
            return *id;
        }
        let id = TermId::try_from(self.words.len()).unwrap_or(TermId::MAX);
        self.words.push(word.into());
        self.term_ids.insert(word.into(), id);
        self.postings.push(Default::default());
        id
    }

    /// Indexes a card in `slot` (which must be free); returns each field's term ids, sorted.
    pub fn add(&mut self, slot: CardSlot, fields: &AnalyzedFields) -> [Vec<TermId>; FIELD_COUNT] {
        let at = slot as usize;
        if self.lengths.len() <= at {
            self.lengths.resize(at + 1, [0; FIELD_COUNT]);
            self.norms.resize(at + 1, [0; FIELD_COUNT]);
        }
        self.lengths[at] = fields.lengths;
        self.norms[at] = fields.lengths.map(norm_id);
        for field in Field::ALL {
            self.total_tokens[field.slot()] += u64::from(fields.lengths[field.slot()]);
        }
        self.cards += 1;
        let mut ids: [Vec<TermId>; FIELD_COUNT] = Default::default();
        for field in Field::ALL {
            for (word, tf) in &fields.terms[field.slot()] {
                let term = self.intern(word);
                self.postings[term as usize][field.slot()].insert(slot, *tf);
                ids[field.slot()].push(term);
            }
            ids[field.slot()].sort_unstable();
        }
        ids
    }

    /// Takes the card in `slot` out of the postings of `terms` (every term it was indexed
    /// with, in any field) and frees its lengths.
    pub fn remove(&mut self, slot: CardSlot, terms: impl Iterator<Item = TermId>) {
        for term in terms {
            let Some(lists) = self.postings.get_mut(term as usize) else {
                continue;
            };
            for list in lists.iter_mut() {
                list.remove(slot);
            }
        }
        if let Some(lengths) = self.lengths.get_mut(slot as usize) {
            for field in Field::ALL {
                self.total_tokens[field.slot()] -= u64::from(lengths[field.slot()]);
            }
            *lengths = [0; FIELD_COUNT];
            self.norms[slot as usize] = [0; FIELD_COUNT];
            self.cards = self.cards.saturating_sub(1);
        }
    }

    /// How many postings the index holds and their bytes, for the start-up log.
    pub fn postings_footprint(&self) -> (usize, usize) {
        self.postings
            .iter()
            .flatten()
            .fold((0, 0), |(n, bytes), list| {
                (n + list.len(), bytes + list.bytes())
            })
    }

    /// Gives back the room postings grew into: after a bulk load, lists stop growing.
    pub fn shrink(&mut self) {
        for lists in &mut self.postings {
            for list in lists.iter_mut() {
                list.shrink();
            }
        }
    }

    /// Writes the index for a snapshot: the words, each slot's field lengths, every term's
    /// postings per field, and the count of indexed cards. Norms and token totals are derived
    /// from the lengths when read back.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.words.len() as u64);
        for word in &self.words {
            w.bytes(word.as_bytes());
        }
        w.varint(self.lengths.len() as u64);
        for lengths in &self.lengths {
            for length in lengths {
                w.varint(u64::from(*length));
            }
        }
        for lists in &self.postings {
            for list in lists {
                list.encode(w);
            }
        }
        w.u64(self.cards);
    }

    /// Reads an index `encode` wrote, its postings checked against its slots.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let terms = r.count(1)?;
        let mut words: Vec<Box<str>> = Vec::with_capacity(terms);
        let mut term_ids: WordMap<Box<str>, TermId> = WordMap::default();
        term_ids.reserve(terms);
        for id in 0..terms {
            let word: Box<str> = r.str()?.into();
            let id =
                TermId::try_from(id).map_err(|_| SnapshotError::Malformed("too many terms"))?;
            if term_ids.insert(word.clone(), id).is_some() {
                return Err(SnapshotError::Malformed("a word twice"));
            }
            words.push(word);
        }
        let slots = r.count(FIELD_COUNT)?;
        let mut lengths = Vec::with_capacity(slots);
        let mut total_tokens = [0_u64; FIELD_COUNT];
        for _ in 0..slots {
            let mut card = [0_u32; FIELD_COUNT];
            for (field, length) in card.iter_mut().enumerate() {
                *length = r.varint_u32()?;
                total_tokens[field] += u64::from(*length);
            }
            lengths.push(card);
        }
        let mut postings: Vec<[Postings; FIELD_COUNT]> = Vec::with_capacity(terms);
        for _ in 0..terms {
            let mut lists: [Postings; FIELD_COUNT] = Default::default();
            for list in &mut lists {
                *list = Postings::decode(r, slots)?;
            }
            postings.push(lists);
        }
        let cards = r.u64()?;
        Ok(InvertedIndex {
            term_ids,
            words,
            postings,
            norms: lengths.iter().map(|l| l.map(norm_id)).collect(),
            lengths,
            total_tokens,
            cards,
        })
    }

    /// How many slots the index has lengths for.
    pub fn slot_count(&self) -> usize {
        self.lengths.len()
    }

    /// How many cards it counts as indexed.
    pub fn card_count(&self) -> u64 {
        self.cards
    }

    /// BM25 scores of the cards matching any query term (in any field), plus the required tags'
    /// clause for those cards, as tantivy's `Must(text) + Should(tags)` query summed them.
    /// Unordered; every score is positive.
    pub fn score(&self, query: &IndexQuery<'_>) -> Vec<(CardSlot, f32)> {
        SCORES.with_borrow_mut(|(scores, tag_scores)| {
            let cards = self.lengths.len();
            if scores.len() < cards {
                scores.resize(cards, 0.0);
                tag_scores.resize(cards, 0.0);
            }
            let hits = self.score_into(query, scores, tag_scores);
            debug_assert!(scores.iter().chain(tag_scores.iter()).all(|s| *s == 0.0));
            hits
        })
    }

    /// `score` over zeroed accumulators, which it leaves zeroed.
    fn score_into(
        &self,
        query: &IndexQuery<'_>,
        scores: &mut [f32],
        tag_scores: &mut [f32],
    ) -> Vec<(CardSlot, f32)> {
        let mut matched: Vec<CardSlot> = Vec::new();
        for term in query.terms {
            for (field, boost) in Field::BOOSTED {
                self.accumulate(term, field, boost, false, scores, &mut matched);
            }
        }
        if !query.required_tags.is_empty() && !matched.is_empty() {
            // Only cards the text matched: the tags' clause raises them, it finds none.
            let mut tagged = Vec::new();
            for tag in query.required_tags {
                self.accumulate(tag, Field::Tags, 1.0, true, tag_scores, &mut tagged);
            }
            for slot in tagged {
                let at = slot as usize;
                if scores[at] > 0.0 {
                    scores[at] += tag_scores[at];
                }
                tag_scores[at] = 0.0;
            }
        }
        matched
            .into_iter()
            .map(|slot| {
                let score = std::mem::take(&mut scores[slot as usize]);
                (slot, score)
            })
            .collect()
    }

    /// Adds one (term, field) clause's BM25 score to every card in its postings; `presence`
    /// scores a term frequency of one (tantivy's `IndexRecordOption::Basic`).
    fn accumulate(
        &self,
        word: &str,
        field: Field,
        boost: f32,
        presence: bool,
        scores: &mut [f32],
        matched: &mut Vec<CardSlot>,
    ) {
        let Some(term) = self.term_id(word) else {
            return;
        };
        let list = &self.postings[term as usize][field.slot()];
        if list.is_empty() || self.cards == 0 {
            return;
        }
        let doc_freq = list.len() as f32;
        let docs = self.cards as f32;
        let idf = (1.0 + (docs - doc_freq + 0.5) / (doc_freq + 0.5)).ln();
        let weight = idf * (1.0 + K1) * boost;
        let average = self.total_tokens[field.slot()] as f32 / docs;
        // Per length code, as tantivy caches it: one lookup per posting.
        let norms: [f32; 256] =
            std::array::from_fn(|id| K1 * (1.0 - B + B * FIELD_NORMS_TABLE[id] as f32 / average));
        list.for_each(|slot, tf| {
            let tf = if presence { 1.0 } else { f32::from(tf) };
            let norm = norms[usize::from(self.norms[slot as usize][field.slot()])];
            let score = &mut scores[slot as usize];
            if *score == 0.0 {
                matched.push(slot);
            }
            *score += weight * (tf / (tf + norm));
        });
    }
}

/// A field length as tantivy stores it: one byte, exact up to 40 tokens and coarser above, so
/// long fields score as they did under tantivy.
fn norm_id(length: u32) -> u8 {
    let id = match FIELD_NORMS_TABLE.binary_search(&length) {
        Ok(i) => i,
        Err(i) => i - 1,
    };
    u8::try_from(id).unwrap_or(u8::MAX)
}

/// tantivy 0.27's `fieldnorm::code::FIELD_NORMS_TABLE`: the length each byte value stands for.
const FIELD_NORMS_TABLE: [u32; 256] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 42, 44, 46, 48, 50, 52, 54, 56, 60,
    64, 68, 72, 76, 80, 84, 88, 96, 104, 112, 120, 128, 136, 144, 152, 168, 184, 200, 216, 232,
    248, 264, 280, 312, 344, 376, 408, 440, 472, 504, 536, 600, 664, 728, 792, 856, 920, 984, 1048,
    1176, 1304, 1432, 1560, 1688, 1816, 1944, 2072, 2328, 2584, 2840, 3096, 3352, 3608, 3864, 4120,
    4632, 5144, 5656, 6168, 6680, 7192, 7704, 8216, 9240, 10264, 11288, 12312, 13336, 14360, 15384,
    16408, 18456, 20504, 22552, 24600, 26648, 28696, 30744, 32792, 36888, 40984, 45080, 49176,
    53272, 57368, 61464, 65560, 73752, 81944, 90136, 98328, 106520, 114712, 122904, 131096, 147480,
    163864, 180248, 196632, 213016, 229400, 245784, 262168, 294936, 327704, 360472, 393240, 426008,
    458776, 491544, 524312, 589848, 655384, 720920, 786456, 851992, 917528, 983064, 1048600,
    1179672, 1310744, 1441816, 1572888, 1703960, 1835032, 1966104, 2097176, 2359320, 2621464,
    2883608, 3145752, 3407896, 3670040, 3932184, 4194328, 4718616, 5242904, 5767192, 6291480,
    6815768, 7340056, 7864344, 8388632, 9437208, 10485784, 11534360, 12582936, 13631512, 14680088,
    15728664, 16777240, 18874392, 20971544, 23068696, 25165848, 27263000, 29360152, 31457304,
    33554456, 37748760, 41943064, 46137368, 50331672, 54525976, 58720280, 62914584, 67108888,
    75497496, 83886104, 92274712, 100663320, 109051928, 117440536, 125829144, 134217752, 150994968,
    167772184, 184549400, 201326616, 218103832, 234881048, 251658264, 268435480, 301989912,
    335544344, 369098776, 402653208, 436207640, 469762072, 503316504, 536870936, 603979800,
    671088664, 738197528, 805306392, 872415256, 939524120, 1006632984, 1073741848, 1207959576,
    1342177304, 1476395032, 1610612760, 1744830488, 1879048216, 2013265944,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(name: &str, tags: &str) -> AnalyzedFields {
        let words = |s: &str| s.split_whitespace().map(Arc::from).collect::<Vec<_>>();
        AnalyzedFields::from_tokens([words(name), Vec::new(), Vec::new(), words(tags), Vec::new()])
    }

    #[test]
    fn the_length_table_is_tantivys() {
        assert_eq!(FIELD_NORMS_TABLE.len(), 256);
        assert!(FIELD_NORMS_TABLE.windows(2).all(|w| w[0] < w[1]));
        let quantized = |n: u32| FIELD_NORMS_TABLE[usize::from(norm_id(n))];
        assert_eq!(quantized(41), 40);
        assert_eq!(quantized(43), 42);
        assert_eq!(quantized(100), 96);
    }

    #[test]
    fn bm25_scores_as_tantivy_and_a_removed_card_is_gone() {
        let mut index = InvertedIndex::default();
        let first = index.add(0, &fields("weather forecast", "weather"));
        index.add(1, &fields("currency", "money"));
        let terms = vec!["weather".to_owned()];
        let hits = index.score(&IndexQuery {
            terms: &terms,
            required_tags: &[],
        });
        assert_eq!(hits.len(), 1);
        // N = 2, df = 1 in name and tags: idf = ln(1 + 1.5 / 1.5) = ln 2.
        let idf = 2.0_f32.ln();
        let name = 1.5 * idf * 2.2 * (1.0 / (1.0 + 1.2 * (0.25 + 0.75 * 2.0 / 1.5)));
        let tags = 2.0 * idf * 2.2 * (1.0 / (1.0 + 1.2 * (0.25 + 0.75 * 1.0 / 1.0)));
        assert!((hits[0].1 - (name + tags)).abs() < 1e-5, "{hits:?}");
        let money = vec!["money".to_owned()];
        let with_tag = index.score(&IndexQuery {
            terms: &terms,
            required_tags: &money,
        });
        assert_eq!(
            with_tag, hits,
            "a required tag finds no card the text missed"
        );
        index.add(2, &fields("weather", "weather"));
        index.remove(0, first.iter().flatten().copied());
        let hits = index.score(&IndexQuery {
            terms: &terms,
            required_tags: &[],
        });
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2]);
    }
}
