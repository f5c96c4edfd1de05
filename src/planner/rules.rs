//! The default planner: deterministic, offline rules over the user's words.
//!
//! A request is re-planned from scratch after every answer (prompt + every answer so far, in
//! order), which makes the plan a pure function of the thread's state and the directory: a
//! resumed thread plans exactly as the interrupted one would have.
//!
//! What it does, in order: splits the request into sentences and clauses (at "then", at "and"
//! before an action, and wherever the two sides of "and"/a comma ask different agents for
//! different things); tells requests from context ("I am a Leo") and politeness ("Thanks!");
//! folds every answer in; makes one task per request with the words that say what it needs
//! (names and numbers are arguments, not needs); refuses candidates that cover too little of the
//! task (`directory::FIT_FLOOR`); finds each skill input's value by its kind (`extract`); and
//! writes the final response from the results (`compose`).

use std::sync::Arc;

use async_trait::async_trait;

use super::compose;
use super::extract::{self, InputSpec, Kind, Source};
use super::intent::{self, Role};
use super::text::{self, Clause, Mood};
use super::{Decision, Inputs, ParseOutcome, Planner, PlannerError, TextSource};
use crate::card::{AgentCard, AgentSkill};
use crate::directory::{Directory, FIT_FLOOR};
use crate::state::{Candidate, QuestionKind, Task, TaskId, ThreadState, Turn};

/// A candidate is kept only while its fit is at least this share of the best candidate's, so a
/// card that shares one side word with the task does not trail the one that does the work.
const RELATIVE_FIT: f32 = 0.6;

/// The least fit of an agent that does the head of the request (`head_of`).
const HEAD_FIT: f32 = 0.4;

/// Fits within one step count as equal, so the directory's ranking decides between them.
const FIT_STEP: f32 = 0.2;

/// The offline rules planner. It reads the directory to tell which words name work some agent
/// does, and to split a clause that asks two things of two different agents.
#[derive(Clone)]
pub struct RulesPlanner {
    directory: Arc<Directory>,
}

/// The request after folding in every answer: its requests, what the user told besides them,
/// and which requests were already guided.
#[derive(Debug, Default)]
struct Reading {
    requests: Vec<Clause>,
    /// Each request's words before answers about its inputs were added: what it needs (an
    /// answer like "DOGE" fills an input; it does not change which agent fits).
    needs: Vec<String>,
    context: Vec<String>,
    guided: Vec<bool>,
    /// Only politeness was said ("Thanks!").
    chatter_only: bool,
}

impl RulesPlanner {
    /// The planner holds the engine's own `Directory`, so a card registered or removed changes
    /// the next plan without a restart.
    pub fn new(directory: Arc<Directory>) -> Self {
        RulesPlanner { directory }
    }

    /// Shared with the `llm` planner, which describes the directory's agents to its model.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Clauses of `text`, split also where two sides ask different agents for different things.
    fn split(&self, text: &str) -> Vec<Clause> {
        text::split_clauses_with(text, &|left, right| self.asks_elsewhere(left, right))
    }

    /// Whether `right` asks for work of another agent than `left` does (and both fit one).
    fn asks_elsewhere(&self, left: &str, right: &str) -> bool {
        match (self.best_agent(left), self.best_agent(right)) {
            (Some(l), Some(r)) => l != r,
            _ => false,
        }
    }

    /// The agent that fits `text` best, if any fits well enough.
    fn best_agent(&self, text: &str) -> Option<String> {
        let keywords = self.task_keywords(text);
        if keywords.is_empty() {
            return None;
        }
        let capabilities = self.directory.capabilities_of(&keywords);
        let found = self.directory.search(&keywords, &capabilities).ok()?;
        let ranked = self.directory.rank(found);
        Self::fitting(ranked).into_iter().next().map(|c| c.agent_id)
    }

    /// Reads the request, folding in every answer given so far (and the last earlier turn, for
    /// an elliptical one).
    fn read(&self, state: &ThreadState, earlier: &[Turn]) -> Reading {
        let mut reading = self.reading_of(&state.prompt);
        // "And in euros?" after "What's the price of BTC?": the earlier request again, with
        // what this turn changes said last (so its values win where they compete).
        if let (Some(previous), [request]) = (earlier.last(), reading.requests.as_slice())
            && self.elliptical(&request.text)
        {
            let text = format!("{} {}", previous.prompt.trim(), request.text);
            reading.requests[0].text = text;
            reading.needs[0] = previous.prompt.clone();
        }
        for answer in &state.answers {
            // Answers to agents go back to the agents, not into the plan.
            if answer.question.kind.is_agent() {
                continue;
            }
            let target = answer
                .question
                .task_id
                .as_ref()
                .and_then(TaskId::ordinal)
                .map(|n| n - 1)
                .filter(|i| *i < reading.requests.len());
            let new_request = text::redirect(&answer.text);
            match (new_request, target) {
                (Some(request), _) => {
                    let context = std::mem::take(&mut reading.context);
                    reading = self.reading_of(&request);
                    reading.context.splice(0..0, context);
                }
                (None, None) => {
                    let context = std::mem::take(&mut reading.context);
                    let fresh = self.reading_of(&answer.text);
                    if fresh.requests.is_empty() {
                        // "I'm a Leo" answering "what would you like me to do?" adds context.
                        reading.context = context;
                        reading.context.extend(fresh.context);
                    } else {
                        reading = fresh;
                        reading.context.splice(0..0, context);
                    }
                }
                (None, Some(i)) => match answer.question.kind {
                    QuestionKind::Guidance => {
                        reading.requests[i].text =
                            format!("{}. {}", reading.requests[i].text, answer.text.trim());
                        reading.needs[i] = reading.requests[i].text.clone();
                        reading.guided[i] = true;
                    }
                    QuestionKind::MissingInput { .. } => {
                        reading.requests[i].text =
                            format!("{}. {}", reading.requests[i].text, answer.text.trim());
                    }
                    QuestionKind::Agent { .. } => {}
                    QuestionKind::NoAgent => {
                        let after_then = reading.requests[i].after_then;
                        let mut fresh = self.reading_of(&answer.text);
                        if let Some(first) = fresh.requests.first_mut() {
                            first.after_then = after_then;
                        }
                        let count = fresh.requests.len();
                        reading.needs.splice(i..=i, fresh.needs);
                        reading.requests.splice(i..=i, fresh.requests);
                        reading
                            .guided
                            .splice(i..=i, std::iter::repeat_n(false, count));
                        reading.context.extend(fresh.context);
                    }
                },
            }
        }
        reading
    }

    /// A request that only changes a value of the one before ("And in euros?", "What about
    /// Rome?"): it opens like a follow-up and asks for nothing of its own.
    fn elliptical(&self, text: &str) -> bool {
        const OPENINGS: &[&str] = &["and", "what about", "how about", "same", "now", "also"];
        let low = text.trim().to_lowercase();
        let opens = OPENINGS
            .iter()
            .any(|o| low == *o || low.starts_with(&format!("{o} ")));
        const CLASSES: &[&str] = &["currency", "unit", "language", "date", "ticker"];
        opens
            && self
                .task_keywords(text)
                .iter()
                .all(|k| CLASSES.contains(&k.as_str()))
    }

    /// The requests and context of one piece of text.
    fn reading_of(&self, text: &str) -> Reading {
        let mut reading = Reading::default();
        let mut chatter = 0;
        for clause in self.split(text) {
            match intent::role(&clause.text, clause.mood) {
                // "What time is it in Lima, Tokyo and Oslo?": one request per value.
                Role::Request => reading.requests.extend(text::one_per_value(&clause)),
                Role::Context => reading.context.push(clause.text),
                Role::Chatter => chatter += 1,
            }
        }
        // A side remark among requests ("Email stopped arriving this morning. What are the MX
        // records for bakery.io?") that no agent fits is context, not a task to ask about.
        if reading.requests.len() > 1 {
            let (side, requests): (Vec<Clause>, Vec<Clause>) =
                std::mem::take(&mut reading.requests)
                    .into_iter()
                    .partition(|c| {
                        c.mood == Mood::Statement
                            && intent::is_statement(&c.text)
                            && self.best_agent(&c.text).is_none()
                    });
            if requests.is_empty() {
                reading.requests = side;
            } else {
                reading.requests = requests;
                reading.context.extend(side.into_iter().map(|c| c.text));
            }
        }
        // A request with no word that says what to do ("Find", "Please do it") is no task.
        if reading.requests.len() > 1 {
            reading.requests.retain(|c| {
                !text::keywords(&c.text).is_empty() || text::asks_for_guidance(&c.text)
            });
        }
        reading.guided = vec![false; reading.requests.len()];
        reading.needs = reading.requests.iter().map(|c| c.text.clone()).collect();
        reading.chatter_only =
            chatter > 0 && reading.requests.is_empty() && reading.context.is_empty();
        reading
    }

    /// The words of a request that say what it needs: no filler, no numbers, no quotations, and
    /// no names the directory does not know (a city or a ticker is an argument, not a need).
    fn task_keywords(&self, text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for sentence in text::sentences(text) {
            let mut topic = false;
            let tokens = text::tokens(&sentence.text);
            for (i, token) in tokens.iter().enumerate() {
                if text::is_quoted(token) || topic {
                    continue;
                }
                // After "about …" or "…:" come the topic and the text: arguments, not needs.
                let low = text::normalize(token);
                if token.ends_with(':')
                    || matches!(low.as_str(), "about" | "regarding" | "concerning")
                {
                    topic = true;
                }
                let part = token.trim_matches(|c: char| {
                    matches!(
                        c,
                        ',' | '.' | '?' | '!' | ';' | ':' | '"' | '(' | ')' | '\''
                    )
                });
                let word = text::normalize(part);
                let word = word.strip_suffix("'s").map(str::to_owned).unwrap_or(word);
                if word.is_empty() || out.contains(&word) {
                    continue;
                }
                let known = word.len() >= 2
                    && !text::STOPWORDS.contains(&word.as_str())
                    && self.directory.knows(&word);
                // "euros", "km", "15%", "MSFT": a value of a well-known class asks for work on
                // that class, whether or not a card lists this very word.
                // "Greek yogurt", "Swedish kronor": a language before a noun is an adjective.
                let adjective = extract::is_language(&word)
                    && tokens.get(i + 1).is_some_and(|next| {
                        let n = text::normalize(next);
                        !n.is_empty()
                            && !text::STOPWORDS.contains(&n.as_str())
                            && next.chars().next().is_some_and(char::is_alphabetic)
                    });
                let stop = text::STOPWORDS.contains(&word.as_str());
                // A value some card names as it is ("e.g. BTC"); one word, not a number.
                let mentioned = !stop
                    && part.len() > 2
                    && !word.chars().any(|c| c.is_ascii_digit())
                    && self.directory.mentions(&word);
                if !known
                    && !adjective
                    && !stop
                    && let Some(class) = extract::value_class(part, &word)
                {
                    if mentioned {
                        // Some card names this very value ("e.g. BTC"): keep it as it is.
                        out.push(word);
                        continue;
                    }
                    if !out.iter().any(|w| w == class) {
                        out.push(class.to_owned());
                    }
                    continue;
                }
                if word.len() < 2
                    || text::STOPWORDS.contains(&word.as_str())
                    || word.chars().any(|c| c.is_ascii_digit())
                    || extract::is_number_word(&word)
                {
                    continue;
                }
                let capital = part.chars().next().is_some_and(char::is_uppercase);
                if capital && i > 0 && !known {
                    // A name the directory does not know is an argument ("Paris", "Dana").
                    continue;
                }
                out.push(word);
            }
        }
        out
    }

    fn guidance_question(text: &str) -> String {
        let low = text.to_lowercase();
        if low.contains("data") || low.contains("analy") {
            "What type of data are you analyzing, and what would you like to learn from it?"
                .to_owned()
        } else {
            format!(
                "Happy to guide you. What are you trying to achieve with \"{}\"?",
                text.trim()
            )
        }
    }

    /// Whether `text` points at what the request before it produces: "translate the summary"
    /// after "summarize it" (the summarizer's own word, after "the").
    fn names_output_of(&self, text: &str, before: &str) -> bool {
        let Some(agent) = self.best_agent(before) else {
            return false;
        };
        let words: Vec<String> = text.split_whitespace().map(text::normalize).collect();
        words.windows(2).any(|pair| {
            matches!(
                pair[0].as_str(),
                "the" | "this" | "that" | "these" | "those"
            ) && !text::STOPWORDS.contains(&pair[1].as_str())
                && self.directory.covers(&agent, &pair[1])
        })
    }

    /// Whether the candidate's skill has an input that takes free words (a topic, a text, a
    /// dataset): then words of the task the card does not mention may be its argument ("Define
    /// serendipity"), not a need it fails to meet.
    fn takes_free_words(&self, candidate: &Candidate) -> bool {
        let Some(card) = self.directory.get(&candidate.agent_id) else {
            return false;
        };
        let skills = skills_of(&card, candidate);
        skills.iter().any(|skill| {
            // A skill that declares no inputs reads the request as text.
            skill.inputs.is_empty()
                || skill.inputs.iter().any(|input| {
                    let kind = extract::kind(&InputSpec::of(&card, skill, input));
                    matches!(kind, Kind::Topic | Kind::Text | Kind::Dataset)
                })
        })
    }

    /// Whether one of the candidate's inputs takes the object's words as its value: "Weather
    /// Paris" (a place), not "Book me an Uber" for a table booker (no input of it is an Uber).
    fn takes_as_value(&self, candidate: &Candidate, task: &Task, object: &[String]) -> bool {
        let Some(card) = self.directory.get(&candidate.agent_id) else {
            return false;
        };
        let skills = skills_of(&card, candidate);
        let agent_word = |w: &str| self.directory.covers(&card.id, w);
        skills.iter().any(|skill| {
            skill.inputs.iter().any(|input| {
                let spec = InputSpec::of(&card, skill, input);
                let kind = extract::kind(&spec);
                // A name input would take any name ("Book me an Uber" as a meeting's title).
                if kind == Kind::Named {
                    return false;
                }
                extract::find(
                    &spec,
                    &kind,
                    &task.description,
                    Source::Task,
                    &[],
                    &agent_word,
                )
                .is_some_and(|value| {
                    let value = value.to_lowercase();
                    object.iter().any(|o| value.contains(o.as_str()))
                })
            })
        })
    }

    /// Candidates that fit well enough: the better fit first (in steps of `FIT_STEP`), the
    /// directory's ranking (relevance, measured health, rating, latency, price) within a step.
    fn fitting(ranked: Vec<Candidate>) -> Vec<Candidate> {
        let best = ranked.iter().map(|c| c.fit).fold(0.0_f32, f32::max);
        let mut kept: Vec<Candidate> = ranked
            .into_iter()
            .filter(|c| c.fit >= FIT_FLOOR && c.fit >= best * RELATIVE_FIT)
            .collect();
        let step = |c: &Candidate| (c.fit / FIT_STEP).floor() as i64;
        kept.sort_by_key(|c| std::cmp::Reverse(step(c)));
        kept
    }

    /// `Planner::parse` without the trait's future, so the `llm` planner can fall back to it
    /// in place.
    pub fn parse_now(&self, state: &ThreadState, earlier: &[Turn]) -> ParseOutcome {
        let reading = self.read(state, earlier);
        if reading.requests.is_empty() {
            if reading.chatter_only {
                // A greeting is answered, unless the directory has an agent for it (an a2a-sdk
                // "Hello World" agent says so in its card): then that agent answers.
                let keywords = text::keywords(&state.prompt);
                if !keywords.is_empty() && self.best_agent(&state.prompt).is_some() {
                    return ParseOutcome::Tasks(vec![Task {
                        id: TaskId::nth(1),
                        name: text::slug(&keywords),
                        description: state.prompt.trim().to_owned(),
                        keywords,
                        capabilities: Vec::new(),
                        depends_on: Vec::new(),
                        context: Vec::new(),
                    }]);
                }
                return ParseOutcome::Tasks(Vec::new());
            }
            return ParseOutcome::Ask {
                task_id: None,
                kind: QuestionKind::Guidance,
                question: if reading.context.is_empty() {
                    "What would you like me to do?".to_owned()
                } else {
                    format!(
                        "Noted: \"{}\". What would you like me to do?",
                        reading.context.join(" ")
                    )
                },
            };
        }
        for (i, clause) in reading.requests.iter().enumerate() {
            if text::asks_for_guidance(&clause.text) && !reading.guided[i] {
                return ParseOutcome::Ask {
                    task_id: Some(TaskId::nth(i + 1)),
                    kind: QuestionKind::Guidance,
                    question: Self::guidance_question(&clause.text),
                };
            }
        }
        let tasks = reading
            .requests
            .iter()
            .enumerate()
            .map(|(i, clause)| {
                let needs = reading.needs.get(i).unwrap_or(&clause.text);
                let mut keywords = self.task_keywords(needs);
                if keywords.is_empty() {
                    keywords = text::keywords(needs);
                }
                let depends_on = if i > 0
                    && (clause.after_then
                        || text::refers_upstream(&clause.text)
                        || self.names_output_of(&clause.text, &reading.requests[i - 1].text))
                {
                    vec![TaskId::nth(i)]
                } else {
                    Vec::new()
                };
                Task {
                    id: TaskId::nth(i + 1),
                    name: text::slug(&keywords),
                    description: clause.text.clone(),
                    keywords,
                    capabilities: Vec::new(),
                    depends_on,
                    context: reading.context.clone(),
                }
            })
            .collect();
        ParseOutcome::Tasks(tasks)
    }

    /// The candidates that fit, best first, each with its reason. A task that opens with what to
    /// do ("Buy 10 shares …", "Call a taxi …") fits an agent only half as well when the agent
    /// does not say it does that: a quote service is not a broker.
    pub fn choose_now(&self, task: &Task, ranked: Vec<Candidate>) -> Vec<Candidate> {
        let action = leading_action(&task.description).filter(|a| task.keywords.contains(a));
        let head = head_of(&task.description, &task.keywords);
        let ranked: Vec<Candidate> = ranked
            .into_iter()
            .map(|mut c| {
                // "How much protein is in a cup of cooked lentils": the words around the head
                // are its arguments; an agent that does the head fits however many there are.
                if let Some(head) = &head
                    && self.directory.covers(&c.agent_id, head)
                {
                    c.fit = c.fit.max(HEAD_FIT);
                }
                if let Some(action) = &action {
                    let covers_action = self.directory.covers(&c.agent_id, action);
                    // Doing the same kind of thing to something else is no fit either: a table
                    // booker for "Book me an Uber", unless the agent takes free words that the
                    // object could be ("Define serendipity").
                    let object = object_of(&task.description, action);
                    let covers_object = object.is_empty()
                        || object.iter().any(|o| self.directory.covers(&c.agent_id, o));
                    if !covers_object
                        && !self.takes_free_words(&c)
                        && !self.takes_as_value(&c, task, &object)
                    {
                        c.fit /= 4.0;
                    } else if !covers_action {
                        c.fit /= 3.0;
                    }
                }
                c
            })
            .collect();
        Self::fitting(ranked)
            .into_iter()
            .map(|mut c| {
                let covered: Vec<&str> = task
                    .keywords
                    .iter()
                    .filter(|k| self.directory.covers(&c.agent_id, k))
                    .map(String::as_str)
                    .collect();
                c.reason = Some(format!(
                    "covers {} of the task ({}); fit {:.2}, relevance {:.2}",
                    if covered.is_empty() {
                        "an example"
                    } else {
                        "the words"
                    },
                    covered.join(", "),
                    c.fit,
                    c.relevance
                ));
                c
            })
            .collect()
    }

    /// `Planner::arguments`, callable in place as the `llm` planner's fallback. Each input is
    /// looked for from the most specific source to the least: the answer to the question about
    /// it, the task's words, the user's context, sibling tasks, earlier turns, then what a
    /// pronoun points at.
    pub fn arguments_now(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
    ) -> Inputs {
        let text_source = TextSource::of(task);
        let agent_word = |w: &str| self.directory.covers(&card.id, w);
        let mut found = std::collections::BTreeMap::new();
        let mut taken: Vec<String> = Vec::new();
        for input in &skill.inputs {
            let spec = InputSpec::of(card, skill, input);
            let kind = extract::kind(&spec);
            let name = input.name.as_str();
            let answers: Vec<&str> = state
                .answers_for(&task.id)
                .rev()
                .filter_map(|a| match &a.question.kind {
                    QuestionKind::MissingInput { input } if input == name => Some(a.text.trim()),
                    _ => None,
                })
                .collect();
            let find = |text: &str, source: Source| {
                extract::find(&spec, &kind, text, source, &taken, &agent_word)
            };
            // A task that consumes an earlier task's output gets that output as its text; its
            // own words only name it ("count the words of that summary"), unless they quote one.
            let own = if text_source == TextSource::EarlierTasks && kind == Kind::Text {
                Source::Context
            } else {
                Source::Task
            };
            // The answer to the question about this very input is the most specific source.
            let value = answers
                .iter()
                .find_map(|a| find(a, Source::Answer))
                .or_else(|| find(&task.description, own))
                .or_else(|| task.context.iter().find_map(|c| find(c, Source::Context)))
                // "the weather and the local time in Tokyo": a place said once serves both.
                .or_else(|| {
                    state
                        .tasks
                        .iter()
                        .filter(|t| t.id != task.id)
                        .find_map(|t| find(&t.description, Source::Context))
                })
                .or_else(|| {
                    earlier.iter().rev().find_map(|turn| {
                        std::iter::once(turn.prompt.as_str())
                            .chain(turn.answers.iter().map(|a| a.text.as_str()))
                            .find_map(|t| find(t, Source::Context))
                    })
                })
                // "How did they get on?", "the drive there": what the pronoun points at.
                .or_else(|| {
                    extract::refers_elsewhere(&task.description)
                        .then(|| {
                            let siblings = state
                                .tasks
                                .iter()
                                .filter(|t| t.id != task.id)
                                .map(|t| t.description.as_str());
                            let earlier = earlier.iter().rev().map(|t| t.prompt.as_str());
                            task.context
                                .iter()
                                .map(String::as_str)
                                .chain(siblings)
                                .chain(earlier)
                                .find_map(|t| find(t, Source::Reference))
                        })
                        .flatten()
                });
            match value {
                Some(v) => {
                    taken.push(v.clone());
                    found.insert(name.to_owned(), v);
                }
                None if input.required
                    && !(kind == Kind::Text && text_source == TextSource::EarlierTasks) =>
                {
                    return Inputs::Missing {
                        input: name.to_owned(),
                        question: format!(
                            "To {} with {}, I need {}. What should it be?",
                            skill.name.to_lowercase(),
                            card.name,
                            input.description
                        ),
                    };
                }
                None => {}
            }
        }
        Inputs::Ready(found)
    }

    /// `Planner::compose`, callable in place as the `llm` planner's fallback.
    pub fn compose_now(&self, state: &ThreadState) -> String {
        compose::compose(state)
    }
}

/// Verbs that say only that something is wanted, not what is to be done.
const GENERIC_VERBS: &[&str] = &[
    "create",
    "generate",
    "produce",
    "build",
    "prepare",
    "draw",
    "design",
    "compare",
    "recommend",
    "suggest",
    "review",
    "rate",
    "rank",
    "check",
    "look",
    "make",
    "list",
    "fetch",
    "provide",
    "bring",
    "see",
    "search",
    "lookup",
    "say",
    "ask",
    "try",
    "send me",
    "remind",
];

/// Verbs a request opens with when it says what is to be done; only these make the opening
/// action rule apply ("Work out …", "Roughly what …" do not name an action the agent must do).
const IMPERATIVES: &[&str] = &[
    "book",
    "reserve",
    "buy",
    "sell",
    "order",
    "purchase",
    "pay",
    "send",
    "transfer",
    "call",
    "ring",
    "text",
    "email",
    "mail",
    "message",
    "invite",
    "schedule",
    "cancel",
    "renew",
    "subscribe",
    "unsubscribe",
    "rent",
    "hire",
    "borrow",
    "return",
    "donate",
    "play",
    "stream",
    "watch",
    "publish",
    "post",
    "tweet",
    "upload",
    "download",
    "install",
    "delete",
    "remove",
    "open",
    "close",
    "set",
    "turn",
    "start",
    "stop",
    "print",
    "scan",
    "sign",
    "apply",
    "register",
    "write",
    "draft",
    "compose",
    "translate",
    "summarize",
    "summarise",
    "convert",
    "exchange",
    "calculate",
    "compute",
    "define",
    "explain",
    "analyze",
    "analyse",
    "plot",
    "chart",
    "track",
    "trace",
    "locate",
    "navigate",
    "drive",
    "deliver",
    "ship",
    "fix",
    "repair",
    "clean",
    "cook",
    "bake",
    "grow",
    "plant",
    "water",
    "feed",
    "teach",
    "learn",
    "study",
    "practice",
    "practise",
    "proofread",
    "correct",
    "edit",
    "review",
    "rate",
    "rank",
    "compare",
    "recommend",
    "suggest",
    "plan",
    "organize",
    "organise",
    "arrange",
    "update",
    "change",
    "move",
    "sync",
    "backup",
    "restore",
    "encrypt",
    "decrypt",
    "verify",
];

/// Openings that come before the action ("please", "can you", "I'd like to").
const POLITE_OPENINGS: &[&str] = &[
    "please", "kindly", "can", "could", "would", "will", "you", "i", "i'd", "id", "we", "like",
    "to", "want", "need", "help", "me", "us", "just", "now", "ok", "okay", "hey", "hi", "so",
    "then", "also", "and",
];

/// The verb a request opens with, when it opens with one that says what to do.
fn leading_action(description: &str) -> Option<String> {
    let raw: Vec<&str> = description.split_whitespace().collect();
    let words: Vec<String> = raw
        .iter()
        .map(|w| text::normalize(w))
        .filter(|w| !w.is_empty())
        .collect();
    let first = words
        .iter()
        .find(|w| !POLITE_OPENINGS.contains(&w.as_str()))?;
    // "AAPL stock price": a code or a number is a value, never an action.
    let first_raw = raw
        .iter()
        .find(|w| text::normalize(w) == *first)
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .unwrap_or_default();
    if first_raw.len() > 1 && first_raw.chars().all(|c| c.is_ascii_uppercase())
        || first.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    let opens_with_it = words.first().is_some_and(|w| w == first)
        || words
            .iter()
            .take_while(|w| *w != first)
            .all(|w| POLITE_OPENINGS.contains(&w.as_str()));
    // An imperative is a verb's plain form: "Tracking status …", "Headlines about …" and
    // "Translation of …" open with nouns.
    let plain_form = !["ing", "ion", "ions", "ment", "ness", "s"]
        .iter()
        .any(|end| first.ends_with(end));
    (opens_with_it
        && plain_form
        && IMPERATIVES.contains(&first.as_str())
        && !GENERIC_VERBS.contains(&first.as_str())
        && !text::STOPWORDS.contains(&first.as_str()))
    .then(|| first.clone())
}

/// The words naming what `action` is done to, up to the first preposition ("Book me an Uber
/// from …" → ["uber"]; "Analyze our quarterly sales data" → ["quarterly", "sales", "data"]),
/// values read as their class ("Convert 5 km" → ["unit"]).
fn object_of(description: &str, action: &str) -> Vec<String> {
    const ENDS: &[&str] = &[
        "from", "to", "in", "at", "on", "for", "with", "into", "by", "about", "of", "and", "then",
    ];
    let tokens = text::tokens(description);
    let Some(at) = tokens.iter().position(|t| text::normalize(t) == action) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for token in &tokens[at + 1..] {
        let part = token.trim_matches(|c: char| !c.is_alphanumeric() && c != '%');
        let word = text::normalize(part);
        let word = word.strip_suffix("'s").map(str::to_owned).unwrap_or(word);
        if ENDS.contains(&word.as_str()) && !out.is_empty() {
            break;
        }
        if word.is_empty() || text::is_quoted(token) || text::STOPWORDS.contains(&word.as_str()) {
            continue;
        }
        if let Some(class) = extract::value_class(part, &word) {
            out.push(class.to_owned());
        } else if !word.chars().any(|c| c.is_ascii_digit()) && !extract::is_number_word(&word) {
            out.push(word);
        }
        if token.ends_with([',', '.', ';', ':']) {
            break;
        }
    }
    out
}

/// The head of a request: its last keyword before the first preposition that follows one
/// ("How much protein is in a cup of …" → "protein"; "Create a pie chart of …" → "chart").
/// Values read as classes ("calories" → unit) are arguments, never heads.
fn head_of(description: &str, keywords: &[String]) -> Option<String> {
    const PREPOSITIONS: &[&str] = &[
        "in", "of", "for", "with", "from", "at", "on", "to", "into", "by", "about", "near",
    ];
    let mut head: Option<String> = None;
    for token in text::tokens(description) {
        let word = text::normalize(&token);
        let word = word.strip_suffix("'s").map(str::to_owned).unwrap_or(word);
        if PREPOSITIONS.contains(&word.as_str()) && head.is_some() {
            break;
        }
        let class = extract::value_class(&token, &word).is_some();
        if keywords.contains(&word) && !class {
            head = Some(word);
        }
        if token.ends_with([',', ';', ':']) && head.is_some() {
            break;
        }
    }
    head
}

/// The skill the search matched for `candidate`, or every skill of its card when none was.
fn skills_of<'a>(card: &'a AgentCard, candidate: &Candidate) -> Vec<&'a AgentSkill> {
    match candidate.skill_id.as_deref() {
        Some(id) => card.skill(id).into_iter().collect(),
        None => card.skills.iter().collect(),
    }
}

#[async_trait]
impl Planner for RulesPlanner {
    async fn parse(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
    ) -> Result<Decision<ParseOutcome>, PlannerError> {
        Ok(Decision::offline(self.parse_now(state, earlier)))
    }

    async fn choose(
        &self,
        _state: &ThreadState,
        task: &Task,
        ranked: Vec<Candidate>,
    ) -> Result<Decision<Vec<Candidate>>, PlannerError> {
        Ok(Decision::offline(self.choose_now(task, ranked)))
    }

    async fn arguments(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
    ) -> Result<Decision<Inputs>, PlannerError> {
        Ok(Decision::offline(
            self.arguments_now(state, earlier, task, card, skill),
        ))
    }

    async fn compose(&self, state: &ThreadState) -> Result<Decision<String>, PlannerError> {
        Ok(Decision::offline(self.compose_now(state)))
    }
}
