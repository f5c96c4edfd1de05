//! Full-text search over agent cards with tantivy: an in-RAM index rebuilt from the store at
//! start-up and updated as cards are registered.

use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use super::DirectoryError;
use crate::card::AgentCard;

/// The analyzer every text field and every query goes through: words, lower case, English stems
/// (so "flights" finds "flight").
const ANALYZER: &str = "en_stem";

/// Field boosts: a tag hit says more about what an agent does than a word in its description.
const BOOSTS: [(FieldKind, f32); 5] = [
    (FieldKind::Tags, 2.0),
    (FieldKind::Name, 1.5),
    (FieldKind::Skills, 1.2),
    (FieldKind::Description, 1.0),
    (FieldKind::Examples, 0.6),
];

#[derive(Clone, Copy)]
enum FieldKind {
    Name,
    Description,
    Skills,
    Tags,
    Examples,
}

struct Fields {
    id: Field,
    name: Field,
    description: Field,
    skills: Field,
    tags: Field,
    examples: Field,
}

impl Fields {
    fn get(&self, kind: FieldKind) -> Field {
        match kind {
            FieldKind::Name => self.name,
            FieldKind::Description => self.description,
            FieldKind::Skills => self.skills,
            FieldKind::Tags => self.tags,
            FieldKind::Examples => self.examples,
        }
    }
}

/// One search hit: a card id and its BM25 score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub agent_id: String,
    pub score: f32,
}

/// Full-text search over the cards (BM25 with English stemming), held in RAM and rebuilt from the
/// store at start-up, because the directory must answer a task's search in well under a millisecond.
pub struct SearchIndex {
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    analyzer: TextAnalyzer,
}

impl SearchIndex {
    /// An empty index in RAM.
    pub fn new() -> Result<Self, DirectoryError> {
        let mut builder = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            id: builder.add_text_field("id", STRING | STORED),
            name: builder.add_text_field("name", text.clone()),
            description: builder.add_text_field("description", text.clone()),
            skills: builder.add_text_field("skills", text.clone()),
            tags: builder.add_text_field("tags", text.clone()),
            examples: builder.add_text_field("examples", text),
        };
        let index = Index::create_in_ram(builder.build());
        let analyzer = index
            .tokenizers()
            .get(ANALYZER)
            .ok_or(DirectoryError::MissingTokenizer(ANALYZER))?;
        let writer = index.writer_with_num_threads(1, 15_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            fields,
            reader,
            writer: Mutex::new(writer),
            analyzer,
        })
    }

    /// The analyzed terms of `text`, as the index sees them.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    /// Adds or replaces cards, then makes them searchable.
    pub fn upsert(&self, cards: &[&AgentCard]) -> Result<(), DirectoryError> {
        let mut writer = self.lock_writer()?;
        for card in cards {
            writer.delete_term(Term::from_field_text(self.fields.id, &card.id));
            let f = &self.fields;
            let skills = card
                .skills
                .iter()
                .map(|s| format!("{} {}", s.name, s.description))
                .collect::<Vec<_>>()
                .join(" ");
            let tags = card
                .skills
                .iter()
                .flat_map(|s| s.tags.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            // Examples, and what the inputs say of their values ("e.g. BTC or ETH").
            let examples = card
                .skills
                .iter()
                .flat_map(|s| {
                    s.examples
                        .iter()
                        .map(String::as_str)
                        .chain(s.inputs.iter().map(|i| i.description.as_str()))
                })
                .collect::<Vec<_>>()
                .join(" ");
            writer.add_document(doc!(
                f.id => card.id.as_str(),
                f.name => card.name.as_str(),
                f.description => card.description.as_str(),
                f.skills => skills,
                f.tags => tags,
                f.examples => examples,
            ))?;
        }
        writer.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Removes a card from the index.
    pub fn remove(&self, id: &str) -> Result<(), DirectoryError> {
        let mut writer = self.lock_writer()?;
        writer.delete_term(Term::from_field_text(self.fields.id, id));
        writer.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Cards matching any of `words` or of the already analyzed terms `analyzed` (BM25 over every text field, boosted per field), restricted
    /// to cards carrying at least one of `required_tags` when that list is not empty.
    pub fn search(
        &self,
        words: &[String],
        analyzed: &[String],
        required_tags: &[String],
        limit: usize,
    ) -> Result<Vec<Hit>, DirectoryError> {
        let mut terms: Vec<String> = words.iter().flat_map(|w| self.analyze(w)).collect();
        terms.extend(analyzed.iter().cloned());
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut text_clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in &terms {
            for (kind, boost) in BOOSTS {
                let query = TermQuery::new(
                    Term::from_field_text(self.fields.get(kind), term),
                    IndexRecordOption::WithFreqs,
                );
                text_clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(query), boost)),
                ));
            }
        }
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(text_clauses));
        let query: Box<dyn Query> = if required_tags.is_empty() {
            text_query
        } else {
            let tag_clauses: Vec<(Occur, Box<dyn Query>)> = required_tags
                .iter()
                .flat_map(|t| self.analyze(t))
                .map(|t| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.fields.tags, &t),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            // Cards carrying one of the tags rank higher; others still come back, because a
            // word that is some card's tag ("data") must not hide the card that fits ("data
            // engineer roles" → a job search). The planner's fit decides what is kept.
            let tag_boost: Box<dyn Query> = Box::new(BoostQuery::new(
                Box::new(BooleanQuery::new(tag_clauses)),
                1.0,
            ));
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query),
                (Occur::Should, tag_boost),
            ]))
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                hits.push(Hit {
                    agent_id: id.to_owned(),
                    score,
                });
            }
        }
        Ok(hits)
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, DirectoryError> {
        self.writer
            .lock()
            .map_err(|_| DirectoryError::Poisoned("index writer"))
    }
}
