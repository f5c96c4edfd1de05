//! `Catalog`: what the directory keeps per card, lean enough for 100k cards: the card's JSON (it
//! is parsed on demand, through `CardCache`), what ranking and filtering read (rating, price,
//! tags), its analyzed words as interned term ids, and the index over them. Everything that
//! costs (serializing, analyzing) happens in `PreparedCard::new`, outside the directory's lock;
//! `Catalog::upsert` only splices.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::analysis::Analysis;
use super::card_file::{BodyRef, CardFile, CardFileError};
use super::index::{AnalyzedFields, CardSlot, Field, IndexQuery, InvertedIndex, TermId};
use super::snapshot::{Reader, SnapshotError, Writer};
use super::tag_list::TagList;
use super::term_set::TermSet;
use crate::card::AgentCard;

/// Shortest shared beginning that makes two stems one word ("defin" and "definit",
/// "reserv" and "reservat"): the English stemmer leaves such pairs apart.
const MIN_SHARED_STEM: usize = 5;

/// What every card's JSON shares, as Baton writes it (keys, the usual constants): LZ4 refers
/// back into it as if it came before each card, so the ~500 bytes of structure a 1.3 KB card
/// repeats cost a few bytes each instead of a third of the compressed card. Changing it is
/// free (the compressed cards live only in memory), but it must not change while they do.
const JSON_DICTIONARY: &[u8] = br#"{"id":"","name":"","description":"","url":"http://127.0.0.1:","version":"1.0.0","capabilities":{"streaming":false,"pushNotifications":false},"defaultInputModes":["text/plain"],"defaultOutputModes":["text/plain"],"skills":[{"id":"","name":"","description":"","tags":["",""],"examples":["",""],"inputs":[{"name":"","description":"","required":true,"type":"string"}]}],"price_per_call_usd":0.0,"rating":0.0,"rating_count":0,"protocol":"a2a"}"#;

/// A card made ready to enter the catalog, built without any lock held.
pub struct PreparedCard {
    id: String,
    /// The card's JSON, LZ4-compressed against `JSON_DICTIONARY`: what the directory keeps
    /// of the card itself, in its `CardFile`.
    body: Vec<u8>,
    rating: f64,
    price: f64,
    tags: Vec<String>,
    fields: AnalyzedFields,
    /// The store's revision of the card, when known (`store::revision`).
    revision: Option<i64>,
}

impl PreparedCard {
    /// Serializes and analyzes `card`.
    pub fn new(card: &AgentCard, analysis: &mut Analysis<'_>) -> Result<Self, serde_json::Error> {
        Ok(Self::analyzed(card, serde_json::to_string(card)?, analysis))
    }

    /// Parses and analyzes a card's JSON as the store keeps it, keeping that JSON.
    pub fn from_json(json: String, analysis: &mut Analysis<'_>) -> Result<Self, serde_json::Error> {
        let card: AgentCard = serde_json::from_str(&json)?;
        Ok(Self::analyzed(&card, json, analysis))
    }

    fn analyzed(card: &AgentCard, json: String, analysis: &mut Analysis<'_>) -> Self {
        let mut analyze = |text: &str, field: Field| analysis.add(text, field);
        analyze(&card.name, Field::Name);
        analyze(&card.description, Field::Description);
        for skill in &card.skills {
            analyze(&skill.name, Field::Skills);
            analyze(&skill.description, Field::Skills);
            for tag in &skill.tags {
                analyze(tag, Field::Tags);
            }
            for example in &skill.examples {
                analyze(example, Field::Examples);
            }
            // What a skill's inputs say ("Coin ticker, e.g. BTC or ETH") is example-level
            // evidence: "What's BTC at?" names this agent's kind of value.
            for input in &skill.inputs {
                analyze(&input.description, Field::Examples);
            }
        }
        PreparedCard {
            id: card.id.clone(),
            body: lz4_flex::block::compress_prepend_size_with_dict(
                json.as_bytes(),
                JSON_DICTIONARY,
            ),
            rating: card.rating,
            price: card.price_per_call_usd,
            tags: card
                .skills
                .iter()
                .flat_map(|s| s.tags.iter().cloned())
                .collect(),
            fields: analysis.finish(),
            revision: None,
        }
    }

    /// Records the store's revision of the card: the write it came from, so a snapshot taken
    /// with it knows it current.
    pub fn set_revision(&mut self, revision: Option<i64>) {
        self.revision = revision;
    }

    /// The compressed body, to be kept (`Catalog::keep`) before the card enters the catalog.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A prepared card's body already written to a `CardFile`: done before the directory's write
/// lock is taken, so the lock is held only to splice.
pub struct KeptBody {
    file: Arc<CardFile>,
    at: BodyRef,
}

/// One card in the catalog.
pub struct Entry {
    pub id: Box<str>,
    /// Changes with every upsert of the id, so a parsed copy cached before it is not served.
    pub generation: u64,
    body: BodyRef,
    pub rating: f64,
    pub price: f64,
    /// The skills' tags as given: the search API's capability filter compares them.
    pub tags: TagList,
    /// What the card says it does (name, description, skills, tags).
    own: TermSet,
    /// What its examples and inputs mention.
    examples: TermSet,
    /// Its analyzed tags.
    tag_terms: TermSet,
    /// The store's revision of the card when it entered (`None`: unknown, so a start-up from a
    /// snapshot reloads it).
    pub revision: Option<i64>,
}

impl Entry {
    /// Writes the entry (all but its body, whose length goes here and bytes in the snapshot's
    /// bodies section) for a snapshot.
    fn encode(&self, w: &mut Writer) {
        w.bytes(self.id.as_bytes());
        match self.revision {
            Some(revision) => {
                w.u8(1);
                w.i64(revision);
            }
            None => w.u8(0),
        }
        w.f64(self.rating);
        w.f64(self.price);
        self.tags.encode(w);
        self.own.encode(w);
        self.examples.encode(w);
        self.tag_terms.encode(w);
        w.varint(self.body.len() as u64);
    }

    /// Reads an entry `encode` wrote, with its body's length; the body is placed later.
    fn decode(r: &mut Reader<'_>, terms: usize) -> Result<(Self, usize), SnapshotError> {
        let id: Box<str> = r.str()?.into();
        let revision = match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            _ => return Err(SnapshotError::Malformed("revision flag")),
        };
        let entry = Entry {
            id,
            generation: 0,
            body: BodyRef::default(),
            rating: r.f64()?,
            price: r.f64()?,
            tags: TagList::decode(r)?,
            own: TermSet::decode(r, terms)?,
            examples: TermSet::decode(r, terms)?,
            tag_terms: TermSet::decode(r, terms)?,
            revision,
        };
        let body = usize::try_from(r.varint()?).map_err(|_| SnapshotError::Truncated)?;
        Ok((entry, body))
    }
}

impl Entry {
    /// Whether the card says it does one of `terms` (sorted term ids).
    pub fn says_any(&self, terms: &[TermId]) -> bool {
        self.own.contains_any(terms)
    }

    /// Whether the card's examples or inputs mention one of `terms`.
    pub fn mentions_any(&self, terms: &[TermId]) -> bool {
        self.examples.contains_any(terms)
    }
}

/// How many cards use a term, per role: the directory's vocabularies are the terms with a
/// count above zero, kept without looking at every card again.
#[derive(Default, Clone, Copy)]
struct TermCounts {
    /// Cards that say they do it.
    own: u32,
    /// Cards that mention it anywhere.
    mentioned: u32,
    /// Cards with it as an analyzed skill tag.
    tags: u32,
}

impl TermCounts {
    fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(self.own));
        w.varint(u64::from(self.mentioned));
        w.varint(u64::from(self.tags));
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(TermCounts {
            own: r.varint_u32()?,
            mentioned: r.varint_u32()?,
            tags: r.varint_u32()?,
        })
    }
}

/// Every card, by id and by slot, with the index and the vocabularies.
#[derive(Default)]
pub struct Catalog {
    slots: BTreeMap<Box<str>, CardSlot>,
    entries: Vec<Option<Entry>>,
    free: Vec<CardSlot>,
    index: InvertedIndex,
    counts: Vec<TermCounts>,
    /// Every term some card mentions, sorted, for finding a word's other forms.
    known: BTreeMap<Box<str>, TermId>,
    generations: u64,
    /// The cards' bodies; replaced by a compacted copy when most of it is garbage, which is why
    /// a `KeptBody` names the file it was written to.
    bodies: Arc<CardFile>,
}

/// The catalog's size in the terms an operator reads at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub cards: usize,
    pub terms: usize,
    pub postings: usize,
    pub postings_bytes: usize,
    /// The live cards' bodies in the card file (on disk, not in memory).
    pub body_bytes: u64,
}

/// Garbage in the card file below this is never compacted: rewriting costs more than it gives.
const COMPACTION_FLOOR: u64 = 16 << 20;

impl Catalog {
    /// How many cards.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The card with this id.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        let slot = *self.slots.get(id)?;
        self.at(slot)
    }

    /// The card in `slot`.
    pub fn at(&self, slot: CardSlot) -> Option<&Entry> {
        self.entries.get(slot as usize)?.as_ref()
    }

    /// Writes prepared cards' bodies to the current card file, in one write: the part of an
    /// upsert that touches the disk, done under the read lock (or none) by the caller.
    pub fn keep(
        file: &Arc<CardFile>,
        cards: &[PreparedCard],
    ) -> Result<Vec<KeptBody>, CardFileError> {
        let joined: Vec<u8> = cards.iter().flat_map(|c| c.body.iter().copied()).collect();
        let all = file.append(&joined)?;
        let mut offset = 0;
        Ok(cards
            .iter()
            .map(|c| {
                let at = all.slice(offset, c.body.len());
                offset += c.body.len();
                KeptBody {
                    file: file.clone(),
                    at,
                }
            })
            .collect())
    }

    /// The dictionary the bodies are compressed against: a snapshot records its fingerprint,
    /// since bodies compressed against another would not read back.
    pub fn dictionary() -> &'static [u8] {
        JSON_DICTIONARY
    }

    /// Writes the whole catalog for a snapshot (`snapshot.rs` frames it): the index, the
    /// per-term counts, per slot its entry or a free mark, then every entry's body back to
    /// back, read from the card file.
    pub fn encode(&self, w: &mut Writer) -> Result<(), SnapshotError> {
        self.index.encode(w);
        for counts in &self.counts {
            counts.encode(w);
        }
        w.varint(self.entries.len() as u64);
        for entry in &self.entries {
            match entry {
                Some(entry) => {
                    w.u8(1);
                    entry.encode(w);
                }
                None => w.u8(0),
            }
        }
        for entry in self.entries.iter().flatten() {
            w.raw(&self.bodies.read(entry.body)?);
        }
        Ok(())
    }

    /// The live cards' bodies' total size: what the snapshot's header announces.
    pub fn body_bytes(&self) -> u64 {
        self.entries
            .iter()
            .flatten()
            .map(|entry| entry.body.len() as u64)
            .sum()
    }

    /// Reads a catalog `encode` wrote, up to its bodies (`total` bytes, which `bodies` has
    /// written to a card file, all of them under the one ref it returns): rebuilds the id map,
    /// the free slots and the known words.
    pub fn decode(
        r: &mut Reader<'_>,
        total: usize,
        bodies: impl FnOnce() -> Result<(Arc<CardFile>, BodyRef), SnapshotError>,
    ) -> Result<Catalog, SnapshotError> {
        let index = InvertedIndex::decode(r)?;
        let terms = index.term_count();
        let mut counts = Vec::with_capacity(terms);
        for _ in 0..terms {
            counts.push(TermCounts::decode(r)?);
        }
        let slots = r.count(1)?;
        if slots < index.slot_count() || slots > CardSlot::MAX as usize {
            return Err(SnapshotError::Malformed("fewer slots than the index has"));
        }
        let mut entries: Vec<Option<Entry>> = Vec::with_capacity(slots);
        let mut body_lengths: Vec<usize> = Vec::new();
        let mut ids: Vec<(Box<str>, CardSlot)> = Vec::new();
        let mut free = Vec::new();
        for slot in 0..slots {
            let slot = CardSlot::try_from(slot).unwrap_or(CardSlot::MAX);
            match r.u8()? {
                0 => {
                    free.push(slot);
                    entries.push(None);
                }
                1 => {
                    if slot as usize >= index.slot_count() {
                        return Err(SnapshotError::Malformed("a card outside the index"));
                    }
                    let (entry, body) = Entry::decode(r, terms)?;
                    ids.push((entry.id.clone(), slot));
                    body_lengths.push(body);
                    entries.push(Some(entry));
                }
                _ => return Err(SnapshotError::Malformed("slot flag")),
            }
        }
        if index.card_count() != ids.len() as u64 {
            return Err(SnapshotError::Malformed("the index counts other cards"));
        }
        if body_lengths
            .iter()
            .try_fold(0_usize, |a, b| a.checked_add(*b))
            != Some(total)
        {
            return Err(SnapshotError::Malformed(
                "bodies disagree with their lengths",
            ));
        }
        let (bodies, all) = bodies()?;
        let mut offset = 0;
        let mut generations = 0;
        for (entry, length) in entries.iter_mut().flatten().zip(body_lengths) {
            entry.body = all.slice(offset, length);
            offset += length;
            generations += 1;
            entry.generation = generations;
        }
        let count = ids.len();
        let slots_by_id: BTreeMap<Box<str>, CardSlot> = ids.into_iter().collect();
        if slots_by_id.len() != count {
            return Err(SnapshotError::Malformed("a card id twice"));
        }
        let known: BTreeMap<Box<str>, TermId> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.mentioned > 0)
            .map(|(id, _)| {
                let id = TermId::try_from(id).unwrap_or(TermId::MAX);
                (Box::<str>::from(index.word(id)), id)
            })
            .collect();
        // Popped last first: the lowest free slot is reused first.
        free.reverse();
        Ok(Catalog {
            slots: slots_by_id,
            entries,
            free,
            index,
            counts,
            known,
            generations,
            bodies,
        })
    }

    /// The cards' ids with the revisions they entered with, in id order: what start-up compares
    /// with the store's.
    pub fn revisions(&self) -> Vec<(Box<str>, Option<i64>)> {
        self.after(None)
            .map(|e| (e.id.clone(), e.revision))
            .collect()
    }

    /// The file new bodies go to.
    pub fn bodies(&self) -> Arc<CardFile> {
        self.bodies.clone()
    }

    /// The card's JSON as it was kept (`None` would be a bug or a failing disk: logged).
    pub fn json(&self, entry: &Entry) -> Option<String> {
        let compressed = self
            .bodies
            .read(entry.body)
            .inspect_err(
                |e| tracing::error!(agent = &*entry.id, error = %e, "card body unreadable"),
            )
            .ok()?;
        let bytes =
            lz4_flex::block::decompress_size_prepended_with_dict(&compressed, JSON_DICTIONARY)
                .inspect_err(
                    |e| tracing::error!(agent = &*entry.id, error = %e, "kept card unreadable"),
                )
                .ok()?;
        String::from_utf8(bytes).ok()
    }

    /// Cards in id order, starting after `after` when given.
    pub fn after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a Entry> + 'a {
        let start = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        self.slots
            .range::<str, _>((start, Bound::Unbounded))
            .filter_map(|(_, slot)| self.at(*slot))
    }

    /// Adds or replaces a card whose body `kept` holds.
    pub fn upsert(&mut self, card: PreparedCard, kept: KeptBody) -> Result<(), CardFileError> {
        // Written before a compaction replaced the file: copied into the current one.
        let body = if Arc::ptr_eq(&kept.file, &self.bodies) {
            kept.at
        } else {
            self.bodies.append(&kept.file.read(kept.at)?)?
        };
        self.remove(&card.id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                CardSlot::try_from(self.entries.len() - 1).unwrap_or(CardSlot::MAX)
            }
        };
        let ids = self.index.add(slot, &card.fields);
        if self.counts.len() < self.index_terms() {
            self.counts
                .resize(self.index_terms(), TermCounts::default());
        }
        let [name, description, skills, tags, examples] = ids;
        let mut own: Vec<TermId> = [name, description, skills, tags.clone()].concat();
        own.sort_unstable();
        own.dedup();
        let entry = Entry {
            id: card.id.as_str().into(),
            generation: self.next_generation(),
            body,
            rating: card.rating,
            price: card.price,
            tags: TagList::new(card.tags.iter().map(String::as_str)),
            own: TermSet::from_sorted(&own),
            examples: TermSet::from_sorted(&examples),
            tag_terms: TermSet::from_sorted(&tags),
            revision: card.revision,
        };
        self.count(&entry, 1);
        self.entries[slot as usize] = Some(entry);
        self.slots.insert(card.id.into(), slot);
        Ok(())
    }

    /// Drops a card; false if it was not there.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        self.count(&entry, -1);
        self.bodies.release(entry.body);
        self.index
            .remove(slot, entry.own.iter().chain(entry.examples.iter()));
        self.free.push(slot);
        true
    }

    /// What the catalog holds, for the start-up log.
    pub fn footprint(&self) -> Footprint {
        let (postings, postings_bytes) = self.index.postings_footprint();
        Footprint {
            cards: self.len(),
            terms: self.index_terms(),
            postings,
            postings_bytes,
            body_bytes: self.bodies.size() - self.bodies.garbage(),
        }
    }

    /// Rewrites the live bodies into a new file when most of the current one is garbage (cards
    /// replaced or removed since it was made). Under the write lock: it reads and writes each
    /// live body once, about 100 ms for 100k cards, and runs only after as many bytes were
    /// replaced as are live.
    pub fn compact_bodies(&mut self) -> Result<(), CardFileError> {
        self.compact_bodies_above(COMPACTION_FLOOR)
    }

    fn compact_bodies_above(&mut self, floor: u64) -> Result<(), CardFileError> {
        if !self.bodies.wants_compaction(floor) {
            return Ok(());
        }
        let fresh = Arc::new(CardFile::new());
        for entry in self.entries.iter_mut().flatten() {
            entry.body = fresh.append(&self.bodies.read(entry.body)?)?;
        }
        tracing::info!(
            live = fresh.size(),
            freed = self.bodies.garbage(),
            "card bodies compacted"
        );
        self.bodies = fresh;
        Ok(())
    }

    /// Gives back the room the index grew into (after a bulk load).
    pub fn shrink(&mut self) {
        self.index.shrink();
        self.entries.shrink_to_fit();
    }

    /// BM25 hits for already analyzed terms and required tags, unordered.
    pub fn score(&self, terms: &[String], required_tags: &[String]) -> Vec<(CardSlot, f32)> {
        self.index.score(&IndexQuery {
            terms,
            required_tags,
        })
    }

    /// Whether some card has the analyzed `term` as a skill tag.
    pub fn is_tag(&self, term: &str) -> bool {
        self.counts_of(term).is_some_and(|c| c.tags > 0)
    }

    /// Whether some card mentions the analyzed `term` anywhere.
    pub fn is_mentioned(&self, term: &str) -> bool {
        self.counts_of(term).is_some_and(|c| c.mentioned > 0)
    }

    /// The analyzed `term` and its other forms some card mentions (one begins with the other,
    /// sharing at least `MIN_SHARED_STEM` characters), as sorted term ids.
    pub fn forms(&self, term: &str) -> Vec<TermId> {
        let mut out: Vec<TermId> = self.related(term).map(|(_, id)| id).collect();
        if let Some(id) = self.index.term_id(term) {
            out.push(id);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether some card says it does `term` or another form of it.
    pub fn is_said(&self, term: &str) -> bool {
        self.forms(term)
            .iter()
            .any(|id| self.counts.get(*id as usize).is_some_and(|c| c.own > 0))
    }

    /// The other forms of `term` that some card says it does, other than `term` itself.
    pub fn said_forms(&self, term: &str) -> Vec<String> {
        self.related(term)
            .filter(|(word, id)| {
                *word != term && self.counts.get(*id as usize).is_some_and(|c| c.own > 0)
            })
            .map(|(word, _)| word.to_owned())
            .collect()
    }

    fn related<'a>(&'a self, term: &'a str) -> impl Iterator<Item = (&'a str, TermId)> + 'a {
        let head: String = term.chars().take(MIN_SHARED_STEM).collect();
        let long_enough = head.chars().count() == MIN_SHARED_STEM;
        self.known
            .range::<str, _>((Bound::Included(head.as_str()), Bound::Unbounded))
            .take_while(move |(v, _)| long_enough && v.starts_with(&head))
            .filter(move |(v, _)| v.starts_with(term) || term.starts_with(&***v))
            .map(|(v, id)| (&**v, *id))
    }

    fn counts_of(&self, term: &str) -> Option<&TermCounts> {
        self.counts.get(self.index.term_id(term)? as usize)
    }

    fn index_terms(&self) -> usize {
        self.index.term_count()
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Adds (`delta` 1) or takes away (-1) a card's terms from the counts, keeping `known`
    /// in step when a term's mention count moves between zero and one.
    fn count(&mut self, entry: &Entry, delta: i32) {
        let step = |n: &mut u32| {
            *n = if delta > 0 {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        for id in entry.own.iter() {
            step(&mut self.counts[id as usize].own);
        }
        for id in entry.tag_terms.iter() {
            step(&mut self.counts[id as usize].tags);
        }
        let mentioned = merged(&entry.own, &entry.examples);
        for id in mentioned {
            let counts = &mut self.counts[id as usize];
            let before = counts.mentioned;
            step(&mut counts.mentioned);
            match (before, counts.mentioned) {
                (0, 1) => {
                    self.known.insert(self.index.word(id).into(), id);
                }
                (1, 0) => {
                    self.known.remove(self.index.word(id));
                }
                _ => {}
            }
        }
    }
}

/// The distinct ids of two sets.
fn merged(a: &TermSet, b: &TermSet) -> Vec<TermId> {
    let mut out: Vec<TermId> = a.iter().chain(b.iter()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::analyzer::Analyzer;

    fn card(id: &str, description: &str, example: &str) -> AgentCard {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "Agent", "url": "http://127.0.0.1:9/",
            "description": description,
            "skills": [{"id": "s", "name": "Skill", "description": "", "tags": ["lookup"],
                        "examples": [example]}]
        }))
        .expect("card")
    }

    #[test]
    fn vocabularies_follow_upserts_and_removals() {
        let analyzer = Analyzer::default();
        let mut catalog = Catalog::default();
        let prepared =
            |c: &AgentCard| PreparedCard::new(c, &mut Analysis::new(&analyzer)).expect("prepared");
        let upsert = |catalog: &mut Catalog, card: PreparedCard| {
            let kept = Catalog::keep(&catalog.bodies(), std::slice::from_ref(&card))
                .expect("kept")
                .remove(0);
            catalog.upsert(card, kept).expect("upsert");
        };
        upsert(
            &mut catalog,
            prepared(&card("a", "Definitions of words", "define cat")),
        );
        upsert(
            &mut catalog,
            prepared(&card("b", "Definitions", "weather in Oslo")),
        );
        assert!(catalog.is_said("definit"));
        assert!(catalog.is_said("defin"), "another form of a said word");
        assert!(!catalog.is_said("oslo"), "only an example mentions it");
        assert!(catalog.is_mentioned("oslo"));
        assert!(catalog.is_tag("lookup"));
        upsert(
            &mut catalog,
            prepared(&card("b", "Definitions", "weather in Paris")),
        );
        assert!(!catalog.is_mentioned("oslo"), "replaced with the card");
        assert!(catalog.is_mentioned("pari"));
        assert!(catalog.remove("a"));
        assert!(catalog.is_said("definit"), "b still says it");
        assert!(!catalog.is_mentioned("cat"));
        assert!(catalog.remove("b"));
        assert!(!catalog.remove("b"));
        assert!(!catalog.is_said("definit") && !catalog.is_tag("lookup"));
        assert!(catalog.is_empty());
        let weather = card("c", "Weather", "rain");
        upsert(&mut catalog, prepared(&weather));
        let kept = catalog
            .entry("c")
            .and_then(|e| catalog.json(e))
            .expect("kept JSON");
        assert_eq!(kept, serde_json::to_string(&weather).expect("json"));
        let before = catalog.bodies();
        assert!(before.garbage() > 0, "replaced and removed cards' bodies");
        catalog.compact_bodies_above(0).expect("compacted");
        assert!(!Arc::ptr_eq(&before, &catalog.bodies()), "a new file");
        assert_eq!(catalog.bodies().garbage(), 0);
        let kept = catalog.entry("c").and_then(|e| catalog.json(e));
        assert_eq!(kept, Some(serde_json::to_string(&weather).expect("json")));
        // A body written to the old file before the compaction is copied on upsert.
        let late = prepared(&card("d", "Late", "x"));
        let kept = Catalog::keep(&before, std::slice::from_ref(&late)).expect("kept");
        catalog
            .upsert(late, kept.into_iter().next().expect("one"))
            .expect("upsert");
        assert!(catalog.entry("d").and_then(|e| catalog.json(e)).is_some());
        assert_eq!(
            catalog.after(None).map(|e| &*e.id).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert_eq!(catalog.score(&["weather".into()], &[]).len(), 1);
    }
}
