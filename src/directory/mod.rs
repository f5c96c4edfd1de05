//! The agent directory: the cards Baton knows, a full-text index over them, and the ranking that
//! turns search hits into a task's agent and its fallbacks. Changes to it (register, discover,
//! rate, remove) go through `AgentDirectory` (`service.rs`), which also writes them to the store.

pub mod analysis;
pub mod analyzer;
pub mod cache;
pub mod card_file;
pub mod catalog;
pub mod hasher;
pub mod health;
pub mod index;
pub mod postings;
pub mod register;
pub mod service;
pub mod service_error;
pub mod snapshot;
pub mod snapshot_writer;
pub mod tag_list;
pub mod term_set;
pub mod trim;

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use analysis::Analysis;
use analyzer::Analyzer;
use cache::{CACHED_CARDS, CardCache};
use catalog::{Catalog, Entry, PreparedCard};
use index::{CardSlot, TermId};

use crate::card::AgentCard;
use crate::state::Candidate;
use crate::store::{CardRow, Store, snapshot_parts};
pub use service::AgentDirectory;
pub use service_error::AgentDirectoryError;

/// Failures of the in-memory directory (the store's own errors are `StoreError`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A card that cannot be written as JSON (a card with a non-finite number): refused rather
    /// than kept in a form the directory could not read back.
    #[error("card {id} cannot be kept as JSON: {source}")]
    Unwritable {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// A thread panicked while holding the named lock; the directory refuses further changes
    /// rather than work on cards it may have left half updated.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
    /// The card bodies' file could not be written or read (a full or failing disk).
    #[error(transparent)]
    Bodies(#[from] card_file::CardFileError),
    /// The directory could not be encoded as a snapshot (its bodies unreadable).
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
}

/// Why the directory could not be loaded from the store at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// How many hits one search considers before ranking trims to `max_results`.
const SEARCH_DEPTH: usize = 50;

/// Relevance within this fraction of the best hit counts as a tie, so that rating and price decide
/// between agents that fit about equally well.
const RELEVANCE_TIER: f32 = 0.1;

/// Fewer cards than this are analyzed on the calling thread: starting threads costs more.
const PARALLEL_FROM: usize = 256;

/// Cards analyzed (on every core) and then spliced in together at start-up.
const LOAD_BATCH: usize = 4096;

/// Store ids and revisions compared with a snapshot's per query at start-up.
const REVISION_BATCH: usize = 50_000;

/// Cards reloaded behind a snapshot above which a new snapshot is written right after start-up
/// (below it, within the snapshot interval, like any other change).
const RELOADED_MANY: usize = 1_000;

/// More than one stored card in this many changed behind the snapshot: loaded in full instead
/// (patching a tenth of 100k cards into a restored catalog took longer than a full load).
const RELOAD_SHARE: usize = 10;

/// `Directory::persisted` when no snapshot holds the directory as it is.
const NOT_PERSISTED: u64 = u64::MAX;

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

/// How many agent names a "nothing fits" question lists.
const SUMMARY_NAMES: usize = 12;

/// Least fit a candidate needs, as a share of what the task asks covered by the card.
pub const FIT_FLOOR: f32 = 0.3;

/// The cards in memory with their index and measured health: what the planner and the nodes
/// read on every request, so it answers without the store. Shared by `Arc` between the engine's
/// `Services` and `AgentDirectory`, which keeps it in line with the store.
pub struct Directory {
    /// Readers (every search, every planner question) share it; a change holds the write half
    /// only to splice an already analyzed card into the catalog, microseconds, so registering
    /// cards never stalls requests for long.
    catalog: RwLock<Catalog>,
    analyzer: Analyzer,
    cards: CardCache,
    health: health::HealthBook,
    /// Cards added, replaced or removed since the directory was made; moved only under the
    /// catalog's write lock, so a snapshot encoded under the read lock knows exactly which
    /// count it holds.
    changes: AtomicU64,
    /// The `changes` count the newest snapshot in the store holds (`NOT_PERSISTED`: none does):
    /// the snapshot writer writes when the two differ.
    persisted: AtomicU64,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            catalog: RwLock::new(Catalog::default()),
            analyzer: Analyzer::default(),
            cards: CardCache::new(CACHED_CARDS),
            health: health::HealthBook::default(),
            changes: AtomicU64::new(0),
            persisted: AtomicU64::new(NOT_PERSISTED),
        }
    }
}

/// How the directory came to be at start-up, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPath {
    /// Every card parsed and analysed.
    Full,
    /// Restored from the store's snapshot, with the cards changed behind it reloaded.
    Snapshot,
}

impl LoadPath {
    fn as_str(self) -> &'static str {
        match self {
            LoadPath::Full => "full",
            LoadPath::Snapshot => "snapshot",
        }
    }
}

/// What `Directory::load` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub path: LoadPath,
    /// Cards parsed and analysed (all of them on the full path).
    pub reloaded: usize,
    /// Snapshot cards no longer in the store, dropped.
    pub removed: usize,
}

/// How long the start-up's steps took, for its log line: reading the snapshot from the store,
/// decoding it, catching up with the cards written behind it (0 on the full path).
#[derive(Default)]
struct LoadPhases {
    read_ms: u64,
    decode_ms: u64,
    catch_up_ms: u64,
}

/// A snapshot encoded from the directory, with the change count it holds.
pub struct EncodedSnapshot {
    pub bytes: Vec<u8>,
    pub cards: usize,
    changes: u64,
}

/// What one search found about a card under the lock, to finish outside it.
struct Found {
    id: String,
    relevance: f32,
    fit: f32,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Directory::default()
    }

    /// Adds or replaces cards (already persisted by the caller) and indexes them.
    pub fn upsert(&self, cards: Vec<AgentCard>) -> Result<(), DirectoryError> {
        let prepared = self.prepare(cards, |card, analysis| {
            PreparedCard::new(&card, analysis).map_err(|source| DirectoryError::Unwritable {
                id: card.id.clone(),
                source,
            })
        })?;
        self.apply(prepared)
    }

    /// Loads the directory at start-up: from the store's snapshot when it has a usable one
    /// (then the cards written behind it, by revision, are loaded as in a full load and those
    /// deleted behind it dropped), else every card in full. A snapshot that does not read
    /// (damaged, another format or analyzer) is logged and ignored.
    pub async fn load(&self, store: &dyn Store) -> Result<Loaded, LoadError> {
        let started = Instant::now();
        let mut phases = LoadPhases::default();
        let stored = snapshot_parts::load(store).await;
        phases.read_ms = started.elapsed().as_millis() as u64;
        let restored = match stored {
            Ok(Some(stored)) => match snapshot::decode(&stored.bytes) {
                Ok(catalog) => {
                    phases.decode_ms = started.elapsed().as_millis() as u64 - phases.read_ms;
                    Some(catalog)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "directory snapshot not usable; loading every card");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "directory snapshot unreadable; loading every card");
                None
            }
        };
        let loaded = match restored {
            Some(catalog) => {
                *self.write()? = catalog;
                let caught_up = Instant::now();
                let loaded = self.catch_up(store).await?;
                phases.catch_up_ms = caught_up.elapsed().as_millis() as u64;
                loaded
            }
            None => Loaded {
                path: LoadPath::Full,
                reloaded: self.load_rows(store).await?,
                removed: 0,
            },
        };
        self.write()?.shrink();
        if loaded.path == LoadPath::Snapshot && loaded.reloaded + loaded.removed < RELOADED_MANY {
            // The stored snapshot holds the directory as it was before the catch-up (change
            // count 0): the cards reloaded since are written with the next one, in due time.
            self.persisted.store(0, AtomicOrdering::Relaxed);
        }
        let footprint = self.read()?.footprint();
        tracing::info!(
            path = loaded.path.as_str(),
            reloaded = loaded.reloaded,
            removed = loaded.removed,
            ms = started.elapsed().as_millis() as u64,
            snapshot_read_ms = phases.read_ms,
            snapshot_decode_ms = phases.decode_ms,
            catch_up_ms = phases.catch_up_ms,
            cards = footprint.cards,
            terms = footprint.terms,
            postings = footprint.postings,
            postings_bytes = footprint.postings_bytes,
            card_file_bytes = footprint.body_bytes,
            "directory loaded"
        );
        trim::release_free_memory();
        Ok(loaded)
    }

    /// Every stored card, parsed and analysed on every core; returns how many.
    async fn load_rows(&self, store: &dyn Store) -> Result<usize, LoadError> {
        let mut after: Option<String> = None;
        let mut loaded = 0;
        // A batch at a time: 100k cards' rows and analyzed words at once would outweigh the
        // directory itself, and the allocator would keep that peak.
        loop {
            let batch = store.agent_rows(after.as_deref(), LOAD_BATCH).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = Some(last.id.clone());
            loaded += self.apply_rows(batch)?;
        }
        Ok(loaded)
    }

    /// Parses, analyses and applies stored rows; a row that does not parse is skipped and
    /// logged, so one bad row does not keep the server down. Returns how many were applied.
    fn apply_rows(&self, rows: Vec<CardRow>) -> Result<usize, DirectoryError> {
        let prepared = self.prepare(rows, |row: CardRow, analysis| {
            let (id, revision) = (row.id, row.revision);
            Ok(PreparedCard::from_json(row.json, analysis)
                .inspect_err(|e| tracing::warn!(agent = id, error = %e, "stored card skipped"))
                .ok()
                .map(|mut card| {
                    card.set_revision(revision);
                    card
                }))
        })?;
        let prepared: Vec<PreparedCard> = prepared.into_iter().flatten().collect();
        let applied = prepared.len();
        self.apply(prepared)?;
        Ok(applied)
    }

    /// After a snapshot was restored: walks the store's ids and revisions in id order beside
    /// the snapshot's, reloads the cards that are new or written since (another revision, or
    /// none recorded) and drops those the store no longer has.
    async fn catch_up(&self, store: &dyn Store) -> Result<Loaded, LoadError> {
        let held = self.read()?.revisions();
        let mut held = held.into_iter().peekable();
        let mut stale: Vec<String> = Vec::new();
        let mut gone: Vec<Box<str>> = Vec::new();
        let mut after: Option<String> = None;
        let mut stored = 0;
        loop {
            let batch = store
                .agent_revisions(after.as_deref(), REVISION_BATCH)
                .await?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            stored += batch.len();
            for (id, revision) in batch {
                // Snapshot ids before this store id are gone from the store.
                while let Some((h, _)) = held.peek() {
                    if **h < *id {
                        if let Some((h, _)) = held.next() {
                            gone.push(h);
                        }
                    } else {
                        break;
                    }
                }
                let current = match held.peek() {
                    Some((h, r)) if **h == *id => {
                        let current = revision.is_some() && *r == revision;
                        held.next();
                        current
                    }
                    _ => false,
                };
                if !current {
                    stale.push(id);
                }
            }
        }
        gone.extend(held.map(|(h, _)| h));
        if stale.len() > stored / RELOAD_SHARE {
            // Patching this many cards into the restored catalog (each a removal and an
            // insertion into the middle of its postings) costs more than loading afresh.
            *self.write()? = Catalog::default();
            return Ok(Loaded {
                path: LoadPath::Full,
                reloaded: self.load_rows(store).await?,
                removed: 0,
            });
        }
        {
            let mut catalog = self.write()?;
            for id in &gone {
                catalog.remove(id);
            }
            self.changes
                .fetch_add(gone.len() as u64, AtomicOrdering::Relaxed);
        }
        let mut reloaded = 0;
        for ids in stale.chunks(LOAD_BATCH) {
            let rows = store.agent_rows_of(ids).await?;
            reloaded += self.apply_rows(rows)?;
        }
        Ok(Loaded {
            path: LoadPath::Snapshot,
            reloaded,
            removed: gone.len(),
        })
    }

    /// The directory encoded as a snapshot, under the catalog's read lock only: searches go
    /// on meanwhile, a change waits for the encoding.
    pub fn encode_snapshot(&self) -> Result<EncodedSnapshot, DirectoryError> {
        let catalog = self.read()?;
        let changes = self.changes.load(AtomicOrdering::Relaxed);
        let bytes = snapshot::encode(&catalog)?;
        Ok(EncodedSnapshot {
            bytes,
            cards: catalog.len(),
            changes,
        })
    }

    /// Whether a snapshot should be written as soon as the server starts: none holds this
    /// directory (it was loaded in full, or many cards were reloaded behind the snapshot).
    pub fn snapshot_due_now(&self) -> bool {
        self.persisted.load(AtomicOrdering::Relaxed) == NOT_PERSISTED
            && self.changes.load(AtomicOrdering::Relaxed) > 0
    }

    /// Whether the directory changed since the newest snapshot it knows is stored.
    pub fn changed_since_snapshot(&self) -> bool {
        self.persisted.load(AtomicOrdering::Relaxed) != self.changes.load(AtomicOrdering::Relaxed)
    }

    /// Records that `written` is stored: the directory as it was when encoded.
    pub fn snapshot_stored(&self, written: &EncodedSnapshot) {
        self.persisted
            .store(written.changes, AtomicOrdering::Relaxed);
    }

    /// Runs `each` over `items`, on every core when there are many.
    fn prepare<T, P>(
        &self,
        items: Vec<T>,
        each: impl Fn(T, &mut Analysis<'_>) -> Result<P, DirectoryError> + Sync,
    ) -> Result<Vec<P>, DirectoryError>
    where
        T: Send,
        P: Send,
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if items.len() < PARALLEL_FROM || threads < 2 {
            let mut analysis = Analysis::new(&self.analyzer);
            return items.into_iter().map(|i| each(i, &mut analysis)).collect();
        }
        let per_thread = items.len().div_ceil(threads);
        let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(per_thread).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let each = &each;
        std::thread::scope(|scope| {
            let workers: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    scope.spawn(move || {
                        // Each thread its own analysis: nothing shared per token.
                        let mut analysis = Analysis::new(&self.analyzer);
                        chunk
                            .into_iter()
                            .map(|i| each(i, &mut analysis))
                            .collect::<Result<Vec<P>, DirectoryError>>()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for worker in workers {
                match worker.join() {
                    Ok(done) => out.extend(done?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(out)
        })
    }

    /// A card analyzed for `put`: the costly half of an upsert, done before any lock.
    pub fn prepare_card(&self, card: &AgentCard) -> Result<PreparedCard, DirectoryError> {
        PreparedCard::new(card, &mut Analysis::new(&self.analyzer)).map_err(|source| {
            DirectoryError::Unwritable {
                id: card.id.clone(),
                source,
            }
        })
    }

    /// Adds or replaces a card `prepare_card` made ready (already persisted by the caller).
    pub fn put(&self, card: PreparedCard) -> Result<(), DirectoryError> {
        self.apply(vec![card])
    }

    fn apply(&self, prepared: Vec<PreparedCard>) -> Result<(), DirectoryError> {
        // The bodies go to disk before the write lock: readers wait only for the splice.
        let file = self.read()?.bodies();
        let kept = Catalog::keep(&file, &prepared)?;
        let mut catalog = self.write()?;
        let count = prepared.len() as u64;
        for (card, body) in prepared.into_iter().zip(kept) {
            catalog.upsert(card, body)?;
        }
        self.changes.fetch_add(count, AtomicOrdering::Relaxed);
        catalog.compact_bodies()?;
        Ok(())
    }

    /// Drops a card (already deleted from the store by the caller); false if it was not there.
    pub fn remove(&self, id: &str) -> Result<bool, DirectoryError> {
        let mut catalog = self.write()?;
        let removed = catalog.remove(id);
        if removed {
            self.changes.fetch_add(1, AtomicOrdering::Relaxed);
        }
        catalog.compact_bodies()?;
        Ok(removed)
    }

    /// How many cards the directory holds.
    pub fn len(&self) -> usize {
        self.catalog.read().map_or(0, |c| c.len())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cards for a search request: relevant to `query` (every card when it is blank), carrying
    /// one of `capabilities` (when any), within the price and rating bounds, best first; the
    /// `limit` of them after the first `skip`.
    pub fn find(
        &self,
        query: &str,
        capabilities: &[String],
        max_price: Option<f64>,
        min_rating: Option<f64>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Arc<AgentCard>, f32)>, DirectoryError> {
        let words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
        let wanted = |entry: &Entry| {
            (capabilities.is_empty()
                || entry
                    .tags
                    .iter()
                    .any(|t| capabilities.iter().any(|w| w.eq_ignore_ascii_case(t))))
                && max_price.is_none_or(|p| entry.price <= p)
                && min_rating.is_none_or(|r| entry.rating >= r)
        };
        let candidates: Vec<Candidate> = if words.is_empty() {
            self.read()?
                .after(None)
                .filter(|e| wanted(e))
                .map(|e| Candidate::hit(e.id.to_string(), None, 0.0, 0.0))
                .collect()
        } else {
            // Search ranks by the capabilities; the API's filter keeps only cards that have one.
            let analyzed: Vec<Vec<String>> = words.iter().map(|w| self.analyze(w)).collect();
            let found = self.found(&analyzed, capabilities)?;
            let catalog = self.read()?;
            found
                .into_iter()
                .filter(|hit| catalog.entry(&hit.id).is_some_and(&wanted))
                .map(|hit| Candidate::hit(hit.id, None, hit.relevance, hit.fit))
                .collect()
        };
        Ok(self
            .rank(candidates)
            .into_iter()
            .skip(skip)
            .take(limit)
            .filter_map(|c| Some((self.get(&c.agent_id)?, c.relevance)))
            .collect())
    }

    /// The card with this id.
    pub fn get(&self, id: &str) -> Option<Arc<AgentCard>> {
        let (generation, json) = {
            let catalog = self.catalog.read().ok()?;
            let entry = catalog.entry(id)?;
            if let Some(card) = self.cards.get(id, entry.generation) {
                return Some(card);
            }
            (entry.generation, catalog.json(entry)?)
        };
        let card = Arc::new(parse_kept(id, &json)?);
        self.cards.put(id, generation, card.clone());
        Some(card)
    }

    /// Up to `limit` cards ordered by id, after the id `after` when given: a page of the
    /// directory. Listed cards are not cached (a listing would push out the cards requests use).
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<Arc<AgentCard>> {
        let kept: Vec<(String, u64, String)> = match self.catalog.read() {
            Ok(catalog) => catalog
                .after(after)
                .take(limit)
                .filter_map(|e| Some((e.id.to_string(), e.generation, catalog.json(e)?)))
                .collect(),
            Err(_) => return Vec::new(),
        };
        kept.into_iter()
            .filter_map(
                |(id, generation, json)| match self.cards.get(&id, generation) {
                    Some(card) => Some(card),
                    None => parse_kept(&id, &json).map(Arc::new),
                },
            )
            .collect()
    }

    /// The analyzed form of words, as the index compares them.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        self.analyzer.analyze(text)
    }

    /// The keywords that some card lists as a skill tag: a task's required capabilities.
    pub fn capabilities_of(&self, keywords: &[String]) -> Vec<String> {
        let analyzed: Vec<Vec<String>> = keywords.iter().map(|k| self.analyze(k)).collect();
        let Ok(catalog) = self.catalog.read() else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for (k, terms) in keywords.iter().zip(&analyzed) {
            if terms.iter().any(|t| catalog.is_tag(t)) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// Cards relevant to `keywords` carrying one of `capabilities` (when any), unranked, each
    /// with the skill that fits the keywords best (what the planner calls).
    pub fn search(
        &self,
        keywords: &[String],
        capabilities: &[String],
    ) -> Result<Vec<Candidate>, DirectoryError> {
        let analyzed: Vec<Vec<String>> = keywords.iter().map(|k| self.analyze(k)).collect();
        let found = self.found(&analyzed, capabilities)?;
        let terms: BTreeSet<String> = analyzed.into_iter().flatten().collect();
        Ok(found
            .into_iter()
            .filter_map(|hit| {
                let card = self.get(&hit.id)?;
                let skill = self.best_skill(&card, &terms);
                Some(Candidate::hit(hit.id, skill, hit.relevance, hit.fit))
            })
            .collect())
    }

    /// The best `SEARCH_DEPTH` cards for already analyzed keywords, best first, without their
    /// cards: a search through the API ranks and pages them and reads only the page's cards.
    fn found(
        &self,
        analyzed: &[Vec<String>],
        capabilities: &[String],
    ) -> Result<Vec<Found>, DirectoryError> {
        let required: Vec<String> = capabilities.iter().flat_map(|c| self.analyze(c)).collect();
        let catalog = self.read()?;
        let mut terms: Vec<String> = analyzed.iter().flatten().cloned().collect();
        // "define" finds cards that say "definitions": the stemmer keeps those apart.
        let related: Vec<String> = analyzed
            .iter()
            .flatten()
            .flat_map(|t| catalog.said_forms(t))
            .collect();
        terms.extend(related);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let hits = catalog.score(&terms, &required);
        let hits = best_hits(hits, SEARCH_DEPTH, |slot| {
            catalog.at(slot).map_or("", |e| &*e.id)
        });
        let forms = keyword_forms(&catalog, analyzed);
        Ok(hits
            .into_iter()
            .filter_map(|(slot, relevance)| {
                let entry = catalog.at(slot)?;
                Some(Found {
                    id: entry.id.to_string(),
                    relevance,
                    fit: fit(entry, &forms),
                })
            })
            .collect())
    }

    /// Whether any card mentions `word` anywhere, examples and inputs included: such a word is
    /// kept as it is rather than read as a value of some class ("BTC" stays "BTC").
    pub fn mentions(&self, word: &str) -> bool {
        let analyzed = self.analyze(word);
        let Ok(catalog) = self.catalog.read() else {
            return false;
        };
        analyzed.iter().any(|a| catalog.is_mentioned(a))
    }

    /// Whether the card `agent_id` says it does `word` (name, description, skills or tags).
    pub fn covers(&self, agent_id: &str, word: &str) -> bool {
        let analyzed = self.analyze(word);
        let Ok(catalog) = self.catalog.read() else {
            return false;
        };
        catalog
            .entry(agent_id)
            .is_some_and(|e| analyzed.iter().any(|a| e.says_any(&catalog.forms(a))))
    }

    /// Whether any card says it does `keyword` (name, description, skills or tags).
    pub fn knows(&self, keyword: &str) -> bool {
        let analyzed = self.analyze(keyword);
        let Ok(catalog) = self.catalog.read() else {
            return false;
        };
        analyzed.iter().any(|a| catalog.is_said(a))
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
    pub fn rank(&self, candidates: Vec<Candidate>) -> Vec<Candidate> {
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
        let facts: Vec<(f64, f64)> = match self.catalog.read() {
            Ok(catalog) => candidates
                .iter()
                .map(|c| {
                    catalog
                        .entry(&c.agent_id)
                        .map_or((0.0, f64::MAX), |e| (e.rating, e.price))
                })
                .collect(),
            Err(_) => vec![(0.0, f64::MAX); candidates.len()],
        };
        // Each candidate's key once: health is a lookup, and a blank search ranks every card.
        let mut keyed: Vec<(RankKey, Candidate)> = candidates
            .into_iter()
            .zip(facts)
            .map(|(c, (rating, price))| {
                let health = self.health.of(&c.agent_id);
                let key = RankKey {
                    tier: tier(&c),
                    success: (health.success_rate * 10.0).round() as i64,
                    rating,
                    latency: (health.latency_ms / 100.0).floor() as i64,
                    price,
                };
                (key, c)
            })
            .collect();
        keyed.sort_by(|(a, ca), (b, cb)| {
            b.tier
                .cmp(&a.tier)
                .then_with(|| b.success.cmp(&a.success))
                .then_with(|| b.rating.partial_cmp(&a.rating).unwrap_or(Ordering::Equal))
                .then_with(|| a.latency.cmp(&b.latency))
                .then_with(|| a.price.partial_cmp(&b.price).unwrap_or(Ordering::Equal))
                .then_with(|| ca.agent_id.cmp(&cb.agent_id))
        });
        keyed.into_iter().map(|(_, c)| c).collect()
    }

    /// A short list of what the directory can do, for questions when nothing fits: at most
    /// `SUMMARY_NAMES` names, so a large directory does not flood the question.
    pub fn summary(&self) -> String {
        let cards = self.page(None, SUMMARY_NAMES);
        if cards.is_empty() {
            return "nothing yet (the directory is empty)".to_owned();
        }
        let names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
        let more = self.len().saturating_sub(SUMMARY_NAMES);
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

    fn read(&self) -> Result<RwLockReadGuard<'_, Catalog>, DirectoryError> {
        self.catalog
            .read()
            .map_err(|_| DirectoryError::Poisoned("directory"))
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Catalog>, DirectoryError> {
        self.catalog
            .write()
            .map_err(|_| DirectoryError::Poisoned("directory"))
    }
}

/// A candidate's ranking facts, computed once per ranking.
struct RankKey {
    tier: i64,
    success: i64,
    rating: f64,
    latency: i64,
    price: f64,
}

/// A card's JSON as the directory kept it, parsed; `None` (logged) if it no longer parses,
/// which would be a bug: the directory wrote or checked it.
fn parse_kept(id: &str, json: &str) -> Option<AgentCard> {
    serde_json::from_str(json)
        .inspect_err(|e| tracing::error!(agent = id, error = %e, "kept card does not parse"))
        .ok()
}

/// One keyword's analyzed terms, each with the term ids of its forms some card mentions.
struct KeywordForms {
    weight: f32,
    forms: Vec<Vec<TermId>>,
}

fn keyword_forms(catalog: &Catalog, keywords: &[Vec<String>]) -> Vec<KeywordForms> {
    keywords
        .iter()
        .filter(|k| !k.is_empty())
        .map(|keyword| KeywordForms {
            weight: keyword
                .iter()
                .map(|t| term_weight(t))
                .fold(0.0_f32, f32::max),
            forms: keyword.iter().map(|t| catalog.forms(t)).collect(),
        })
        .collect()
}

/// How much of what the (analyzed) keywords ask the card covers, from 0 to 1: each keyword
/// counts fully when the card says it does it (name, description, skills, tags), half when
/// only an example or an input's description mentions it, weighted by how much the word says
/// about the work. Unlike BM25 relevance this compares across requests, so a floor on it
/// refuses weak matches.
fn fit(entry: &Entry, keywords: &[KeywordForms]) -> f32 {
    let (mut covered, mut total) = (0.0_f32, 0.0_f32);
    for keyword in keywords {
        total += keyword.weight;
        if keyword.forms.iter().any(|f| entry.says_any(f)) {
            covered += keyword.weight;
        } else if keyword.forms.iter().any(|f| entry.mentions_any(f)) {
            covered += keyword.weight / 2.0;
        }
    }
    if total > 0.0 { covered / total } else { 0.0 }
}

/// The `depth` best of `hits`, best first: the higher score, then the lower id. Chosen by score
/// alone, ids compared only among the hits tied at the cut: a directory of look-alike cards
/// ties thousands of them, and an id comparison is two lookups and a string compare.
fn best_hits<'a>(
    mut hits: Vec<(CardSlot, f32)>,
    depth: usize,
    id_of: impl Fn(CardSlot) -> &'a str,
) -> Vec<(CardSlot, f32)> {
    let by_score = |a: &(CardSlot, f32), b: &(CardSlot, f32)| b.1.total_cmp(&a.1);
    if depth > 0 && hits.len() > depth {
        hits.select_nth_unstable_by(depth - 1, by_score);
        let cut = hits[depth - 1].1;
        // Every hit scoring above the cut is among the first `depth`; those at the cut may be
        // anywhere, and the lowest ids of them fill the rest.
        let mut best: Vec<(CardSlot, f32)> = hits[..depth]
            .iter()
            .filter(|h| h.1 > cut)
            .copied()
            .collect();
        let mut tied: Vec<(CardSlot, f32)> = hits.iter().filter(|h| h.1 == cut).copied().collect();
        let room = depth - best.len();
        if tied.len() > room {
            tied.select_nth_unstable_by(room - 1, |a, b| id_of(a.0).cmp(id_of(b.0)));
            tied.truncate(room);
        }
        best.extend(tied);
        hits = best;
    }
    hits.sort_by(|a, b| by_score(a, b).then_with(|| id_of(a.0).cmp(id_of(b.0))));
    hits
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_best_hits_are_those_a_full_sort_puts_first_ties_by_id() {
        // Scores from a few values, so most hits tie; ids in another order than slots.
        let ids: Vec<String> = (0..500)
            .map(|n| format!("card-{:03}", (n * 7919) % 500))
            .collect();
        let hits: Vec<(CardSlot, f32)> = (0..500_u32)
            .map(|slot| (slot, [1.5_f32, 2.25, 0.75][(slot as usize * 31) % 3]))
            .collect();
        let id_of = |slot: CardSlot| ids[slot as usize].as_str();
        let mut sorted = hits.clone();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| id_of(a.0).cmp(id_of(b.0))));
        for depth in [1, 7, 50, 166, 167, 168, 499, 500, 600] {
            let best = best_hits(hits.clone(), depth, id_of);
            assert_eq!(best, sorted[..depth.min(500)], "depth {depth}");
        }
    }

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
    fn measured_failures_and_latency_outrank_rating() {
        let directory = Directory::new();
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
        let directory = Directory::new();
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
