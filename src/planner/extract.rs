//! Finding a skill input's value in the user's words, guided by what the input says of itself:
//! its name, type, description, allowed values and examples ("The stock ticker symbol, e.g.
//! AAPL"). The input's *kind* (a number, a place, a code, a language, free text, …) decides how
//! its value looks and where in a sentence it sits; no input is recognised by one agent's name.

use serde_json::Value;

use super::text::{self, STOPWORDS};
use crate::card::{AgentCard, AgentSkill, SkillInput};

/// What Baton knows about one input of a skill, from wherever the card declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputSpec {
    pub name: String,
    pub description: String,
    pub required: bool,
    /// The declared type (`string`, `integer`, `number`, `boolean`), when the card gives one.
    pub value_type: Option<String>,
    /// Allowed values (a JSON Schema `enum`), when the card gives them.
    pub choices: Vec<String>,
    /// Example values from the schema or the description ("e.g. AAPL").
    pub examples: Vec<String>,
}

impl InputSpec {
    /// The spec of `input`, with the type and allowed values from the card's REST parameters or
    /// MCP schema when there are any.
    pub fn of(card: &AgentCard, skill: &AgentSkill, input: &SkillInput) -> Self {
        let mut spec = InputSpec {
            name: input.name.clone(),
            description: input.description.clone(),
            required: input.required,
            value_type: input.value_type.as_ref().map(|t| t.to_ascii_lowercase()),
            ..InputSpec::default()
        };
        if let Some(parameter) = skill
            .id
            .strip_prefix("endpoint-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| card.endpoints.get(i))
            .and_then(|e| e.parameters.iter().find(|p| p.name == input.name))
        {
            spec.value_type = Some(parameter.param_type.to_ascii_lowercase());
        }
        if let Some(property) = skill
            .input_schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(&input.name))
        {
            if let Some(t) = property.get("type").and_then(Value::as_str) {
                spec.value_type = Some(t.to_ascii_lowercase());
            }
            if let Some(values) = property.get("enum").and_then(Value::as_array) {
                spec.choices = values.iter().filter_map(scalar).collect();
            }
            if let Some(values) = property.get("examples").and_then(Value::as_array) {
                spec.examples = values.iter().filter_map(scalar).collect();
            }
            if let Some(value) = property.get("example").and_then(scalar) {
                spec.examples.push(value);
            }
        }
        spec.examples.extend(examples_in(&spec.description));
        if spec.choices.is_empty() {
            spec.choices = choices_in(&spec.description);
        }
        spec
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// "e.g. AAPL", "for example Paris", "such as 'kg'", "like 2024-05-01" → the example values.
fn examples_in(description: &str) -> Vec<String> {
    let low = description.to_ascii_lowercase();
    let mut out = Vec::new();
    for marker in [
        "e.g.",
        "e.g",
        "eg.",
        "for example",
        "for instance",
        "such as",
        "like",
    ] {
        let Some(at) = find_word(&low, marker) else {
            continue;
        };
        let rest = description
            .get(at + marker.len()..)
            .unwrap_or("")
            .trim_start_matches([',', ':', ' ']);
        for part in rest
            .split([',', ')', ';'])
            .flat_map(|p| p.split(" or "))
            .take(3)
        {
            let value = part
                .trim()
                .trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c == '.')
                .trim();
            if !value.is_empty() && value.split_whitespace().count() <= 3 {
                out.push(value.to_owned());
            }
        }
        break;
    }
    out
}

/// "one of: bar, line, pie" or "(walking|driving)" in a description → the allowed values.
fn choices_in(description: &str) -> Vec<String> {
    let low = description.to_ascii_lowercase();
    // A description that is itself a list of single words: "driving, walking, cycling or transit".
    // "Record type: A, AAAA, MX or TXT": the list after a label.
    let list = description.split(" (").next().unwrap_or("");
    let list = list.rsplit_once(": ").map_or(list, |(_, after)| after);
    let items: Vec<String> = list
        .split(',')
        .flat_map(|p| p.split(" or "))
        .map(|p| p.trim().trim_end_matches('.').to_owned())
        .collect();
    if items.len() >= 3
        && items.iter().all(|p| {
            !p.is_empty()
                && !p.contains(' ')
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
    {
        return items;
    }
    if let Some(at) = low.find("one of") {
        let rest = description
            .get(at + "one of".len()..)
            .unwrap_or("")
            .trim_start_matches([':', ' ']);
        let list: Vec<String> = rest
            .split([',', '|', '/'])
            .flat_map(|p| p.split(" or "))
            .map(|p| {
                p.trim()
                    .trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
                    .to_owned()
            })
            .filter(|p| !p.is_empty() && p.split_whitespace().count() <= 2)
            .collect();
        if list.len() >= 2 {
            return list;
        }
    }
    if let (Some(open), Some(close)) = (description.find('('), description.find(')'))
        && open < close
    {
        let inner = &description[open + 1..close];
        if inner.contains('|') {
            return inner
                .split('|')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
        }
    }
    Vec::new()
}

/// Where a place input sits in a trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// Where the user starts ("from Paris").
    From,
    /// Where the user goes ("to Rome").
    To,
    /// Any place named ("in Oslo", "for Lisbon").
    Any,
}

/// Which side of a conversion a currency or unit input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// What is converted ("100 USD", "from km"), or the only one a skill takes.
    From,
    /// What it is converted into ("to EUR", "in miles", "how many dollars").
    To,
}

/// Which part of an input's spec a kind is read from: some words ("name", "time") say the kind
/// only in the input's name, where a description uses them loosely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    InName,
    InDescription,
}

/// How an input's value looks and where it sits in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// One of the allowed values.
    Choice,
    Number,
    Currency(Side),
    Language,
    Date,
    Time,
    Place(Leg),
    /// A short upper-case code: a ticker symbol, an airport or currency code.
    Code,
    /// A reference with digits: a tracking number, an order id.
    Identifier,
    Email,
    Url,
    /// An IP address ("203.0.113.45", "2001:db8::1").
    Ip,
    /// A domain or host name ("mail.example.org").
    Domain,
    /// A unit of measure.
    Unit(Side),
    /// Free text to work on (to translate, summarize, …).
    Text,
    /// What the request is about ("news about Rust": Rust).
    Topic,
    /// Which data to work on ("sales data").
    Dataset,
    /// A proper name of some kind the card does not explain ("e.g. Aries").
    Named,
    /// Nothing says what it looks like: only an explicit `name: value` fills it.
    Other,
}

impl Kind {
    /// Kinds whose value has a recognisable shape; a bare answer to a question about an input
    /// of any other kind is taken as its value.
    pub fn is_typed(&self) -> bool {
        matches!(
            self,
            Kind::Choice
                | Kind::Number
                | Kind::Currency(_)
                | Kind::Language
                | Kind::Email
                | Kind::Url
                | Kind::Ip
                | Kind::Domain
        )
    }
}

const TO_WORDS: &[&str] = &[
    "to",
    "target",
    "dest",
    "destination",
    "into",
    "output",
    "arrival",
];
const FROM_WORDS: &[&str] = &["from", "source", "base", "origin", "departure", "start"];

/// The kind of an input, from its name first, then its type, its description and its examples.
pub fn kind(spec: &InputSpec) -> Kind {
    if !spec.choices.is_empty() {
        return Kind::Choice;
    }
    let name = name_words(&spec.name);
    // An example with an unmistakable shape ("e.g. alex@example.com") says more than a word
    // that only names a person or a thing.
    let example_kind = spec.examples.first().map(|e| kind_of_example(e));
    let strong_example = example_kind
        .clone()
        .filter(|k| matches!(k, Kind::Email | Kind::Url | Kind::Date));
    if let Some(kind) = kind_from_words(&name, Said::InName) {
        return match (kind, strong_example) {
            (Kind::Named | Kind::Topic, Some(example)) => example,
            (kind, _) => kind,
        };
    }
    if let Some(example) = strong_example {
        return example;
    }
    if matches!(
        spec.value_type.as_deref(),
        Some("integer" | "int" | "number" | "float" | "double")
    ) {
        return Kind::Number;
    }
    let description: Vec<String> = spec
        .description
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some(kind) = kind_from_words(&description, Said::InDescription) {
        return kind;
    }
    example_kind.unwrap_or(Kind::Other)
}

fn kind_from_words(words: &[String], said: Said) -> Option<Kind> {
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let to = has(TO_WORDS);
    let from = has(FROM_WORDS);
    let side = if to { Side::To } else { Side::From };
    if said == Said::InName
        && has(&[
            "name",
            "sign",
            "person",
            "company",
            "team",
            "artist",
            "brand",
            "recipient",
            "recipients",
            "attendees",
            "participants",
            "invitees",
            "title",
            "movie",
            "film",
            "book",
            "song",
            "album",
            "show",
            "player",
            "contact",
            "attendee",
            "assignee",
            "author",
            "user",
            "who",
        ])
    {
        return Some(Kind::Named);
    }
    if has(&["currency", "currencies"]) {
        return Some(Kind::Currency(side));
    }
    if has(&["language", "languages", "lang", "locale"]) {
        return Some(Kind::Language);
    }
    if has(&["email", "e-mail"]) && !has(&["recipient", "who", "person", "contact"]) {
        return Some(Kind::Email);
    }
    if has(&["url", "link", "webpage", "href"]) {
        return Some(Kind::Url);
    }
    if has(&["ip", "ipv4", "ipv6"]) {
        return Some(Kind::Ip);
    }
    if has(&["domain", "hostname", "host", "website", "fqdn"]) {
        return Some(Kind::Domain);
    }
    if has(&["date", "day", "checkin", "checkout", "birthday"]) {
        return Some(Kind::Date);
    }
    if said == Said::InName && has(&["time", "hour"]) {
        return Some(Kind::Time);
    }
    if has(&["unit", "units"]) {
        return Some(Kind::Unit(side));
    }
    if has(&[
        "location",
        "city",
        "place",
        "destination",
        "origin",
        "address",
        "country",
        "region",
        "town",
        "airport",
        "venue",
        "where",
    ]) {
        let leg = if from {
            Leg::From
        } else if to {
            Leg::To
        } else {
            Leg::Any
        };
        return Some(Kind::Place(leg));
    }
    if has(&["symbol", "ticker", "tickers"]) {
        return Some(Kind::Code);
    }
    if has(&[
        "tracking",
        "id",
        "reference",
        "confirmation",
        "isbn",
        "sku",
        "invoice",
        "serial",
    ]) {
        return Some(Kind::Identifier);
    }
    if has(&[
        "amount",
        "quantity",
        "count",
        "number",
        "num",
        "price",
        "age",
        "guests",
        "people",
        "adults",
        "children",
        "nights",
        "limit",
        "total",
        "weight",
        "height",
        "distance",
        "budget",
        "year",
        "years",
        "percent",
        "percentage",
        "n",
    ]) || (said == Said::InName && has(&["value", "days", "size", "max", "min"]))
    {
        return Some(Kind::Number);
    }
    if has(&[
        "text",
        "content",
        "message",
        "body",
        "document",
        "passage",
        "sentence",
        "phrase",
        "paragraph",
        "article",
        "prompt",
    ]) {
        return Some(Kind::Text);
    }
    if has(&[
        "topic",
        "query",
        "subject",
        "keyword",
        "keywords",
        "search",
        "term",
        "q",
        "question",
        "category",
        "word",
        "ingredient",
        "ingredients",
        "dish",
        "genre",
    ]) {
        return Some(Kind::Topic);
    }
    if has(&["dataset", "data", "table", "spreadsheet"]) {
        return Some(Kind::Dataset);
    }
    None
}

fn kind_of_example(example: &str) -> Kind {
    let e = example.trim();
    if is_email(e) {
        return Kind::Email;
    }
    if e.starts_with("http://") || e.starts_with("https://") {
        return Kind::Url;
    }
    if is_ip(e) {
        return Kind::Ip;
    }
    if is_domain(e) {
        return Kind::Domain;
    }
    let letters: Vec<char> = e.chars().filter(|c| c.is_alphabetic()).collect();
    let digits = e.chars().filter(char::is_ascii_digit).count();
    if looks_like_date(e) {
        Kind::Date
    } else if digits > 0 && letters.is_empty() {
        Kind::Number
    } else if digits > 0 {
        Kind::Identifier
    } else if !letters.is_empty()
        && letters.len() <= 6
        && letters.iter().all(|c| c.is_uppercase())
        && !e.contains(' ')
    {
        Kind::Code
    } else if e.chars().next().is_some_and(char::is_uppercase) {
        Kind::Named
    } else {
        Kind::Topic
    }
}

/// `from_currency` → ["from", "currency"]; `targetLanguage` → ["target", "language"].
fn name_words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// How far a source of words may be trusted for an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The task's own words: every way of finding the value applies.
    Task,
    /// The user's answer to the question about this very input: a bare answer is the value.
    Answer,
    /// Something the user said besides the task (context, earlier turns): only values with a
    /// recognisable shape or an explicit label.
    Context,
    /// What the task points at with a pronoun ("the news about them", "the drive there"),
    /// said elsewhere: names count as in the task's own words.
    Reference,
}

/// Finds the value of an input in `text`. `taken` are values other inputs of the same call
/// already use; `agent_word` says whether a word is one the agent uses to describe itself
/// (such a word names the work, not its argument).
pub fn find(
    spec: &InputSpec,
    kind: &Kind,
    text: &str,
    source: Source,
    taken: &[String],
    agent_word: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(v) = labelled(&spec.name, text) {
        return Some(v);
    }
    let words = Words::of(text);
    if source == Source::Reference {
        return referenced(kind, &words, taken, agent_word);
    }
    let found = match kind {
        Kind::Choice => choice(&spec.choices, text),
        Kind::Number => number(spec, &words, taken),
        Kind::Currency(side) => currency(&words, *side, taken).or_else(|| {
            // A lone currency input ("vs_currency") takes whichever currency is named.
            let lone = !name_words(&spec.name)
                .iter()
                .any(|w| FROM_WORDS.contains(&w.as_str()));
            (lone && *side == Side::From)
                .then(|| currency(&words, Side::To, taken))
                .flatten()
        }),
        Kind::Language => language(&words),
        Kind::Date => date(&words),
        Kind::Time => time(&words),
        Kind::Place(leg) => place(&words, *leg, taken, source, agent_word),
        // A code the user gave by name ("the Ethereum price"): the name is the best there is.
        Kind::Code => code(&words, taken).or_else(|| match source {
            Source::Context | Source::Reference => None,
            Source::Task | Source::Answer => (0..words.len())
                .filter(|&i| {
                    words.may_be_name(i)
                        && !is_name_part_excluded(&words, i)
                        && (words.is_proper(i)
                            || words.raw[i].ends_with("'s")
                            || !agent_word(&words.norm[i]))
                })
                .filter_map(|i| proper_name_at(&words, i))
                .find(|n| !taken.contains(n)),
        }),
        Kind::Identifier => identifier(&words, taken),
        Kind::Email => words.raw.iter().find(|w| is_email(w)).map(|w| strip(w)),
        Kind::Ip => words
            .raw
            .iter()
            .map(|w| w.trim_matches(|c: char| !c.is_ascii_hexdigit() && c != ':' && c != '.'))
            .find(|w| is_ip(w))
            .map(str::to_owned),
        Kind::Domain => words
            .raw
            .iter()
            .map(|w| {
                let w = w
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let w = w.split('/').next().unwrap_or(w);
                w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned()
            })
            .find(|w| is_domain(w)),
        Kind::Url => words
            .raw
            .iter()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .map(|w| strip(w)),
        Kind::Unit(side) => unit(&words, *side, taken),
        Kind::Text => match source {
            Source::Context | Source::Reference => quoted(&words),
            Source::Task | Source::Answer => free_text(&words, agent_word),
        },
        Kind::Topic => match source {
            Source::Context | Source::Reference => quoted(&words),
            Source::Task | Source::Answer => topic(&words, taken, agent_word),
        },
        Kind::Dataset => dataset(&words),
        Kind::Named => named(&words, taken, source, agent_word),
        Kind::Other => None,
    };
    found.or_else(|| {
        // A direct answer to the question about this input is its value, when the input has
        // no shape to check it against.
        (source == Source::Answer && !kind.is_typed()).then(|| answer_value(text, kind))?
    })
}

/// The value a pronoun of the task points at, in words said elsewhere: a name for names,
/// topics and codes, a place for places ("in Leeds" for "the drive there").
fn referenced(
    kind: &Kind,
    words: &Words,
    taken: &[String],
    agent_word: &dyn Fn(&str) -> bool,
) -> Option<String> {
    match kind {
        Kind::Place(_) => place(words, Leg::Any, taken, Source::Task, agent_word),
        Kind::Named | Kind::Topic | Kind::Code => {
            named(words, taken, Source::Task, agent_word).or_else(|| {
                // "Ethereum's price and the latest headlines about it": the name may open its
                // sentence.
                (0..words.len())
                    .filter(|&i| {
                        words.may_be_name(i)
                            && !is_name_part_excluded(words, i)
                            && !agent_word(&words.norm[i])
                    })
                    .filter_map(|i| proper_name_at(words, i))
                    .find(|n| !taken.contains(n))
            })
        }
        _ => None,
    }
}

/// Whether the task points at something said elsewhere ("them", "there", "it").
pub fn refers_elsewhere(text: &str) -> bool {
    text.split_whitespace().map(text::normalize).any(|w| {
        matches!(
            w.as_str(),
            "it" | "its"
                | "them"
                | "they"
                | "their"
                | "there"
                | "he"
                | "she"
                | "him"
                | "her"
                | "his"
        )
    })
}

fn answer_value(text: &str, kind: &Kind) -> Option<String> {
    let value = text
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_owned();
    if value.is_empty() {
        return None;
    }
    Some(match kind {
        Kind::Code if value.split_whitespace().count() == 1 => value.to_uppercase(),
        _ => value,
    })
}

/// The words of a text with what the extractors need to know about each.
struct Words {
    /// As written (a quotation is one word, quotes included).
    raw: Vec<String>,
    /// Lower case, without surrounding punctuation.
    norm: Vec<String>,
    /// Starts a sentence (so its capital letter says nothing).
    initial: Vec<bool>,
}

impl Words {
    fn of(text: &str) -> Words {
        let mut raw = Vec::new();
        let mut initial = Vec::new();
        for sentence in text::sentences(text) {
            for (i, token) in text::tokens(&sentence.text).into_iter().enumerate() {
                initial.push(i == 0);
                raw.push(token);
            }
        }
        let norm = raw.iter().map(|w| text::normalize(w)).collect();
        Words { raw, norm, initial }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    /// Capitalised in the middle of a sentence (or an all-capitals word): a name.
    fn is_proper(&self, i: usize) -> bool {
        let w = strip(&self.raw[i]);
        let Some(first) = w.chars().next() else {
            return false;
        };
        first.is_uppercase()
            && !self.initial[i]
            && self.norm[i] != "i"
            && !text::is_quoted(&self.raw[i])
    }

    /// Capitalised and neither a function word nor an action, wherever it stands: a name even
    /// when it opens the sentence ("Japan's public holidays", "Ethereum's price").
    fn may_be_name(&self, i: usize) -> bool {
        strip(&self.raw[i])
            .chars()
            .next()
            .is_some_and(char::is_uppercase)
            && !STOPWORDS.contains(&self.norm[i].as_str())
            && !text::ACTION_WORDS.contains(&self.norm[i].as_str())
    }
}

/// Surrounding punctuation removed, inner punctuation kept ("Rivoli," → "Rivoli").
fn strip(word: &str) -> String {
    word.trim_matches(|c: char| {
        !c.is_alphanumeric() && !matches!(c, '$' | '€' | '£' | '¥' | '#' | '@')
    })
    .trim_start_matches(['#'])
    .trim_end_matches("'s")
    .trim_end_matches("\u{2019}s")
    .to_owned()
}

fn find_word(haystack: &str, needle: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(at) = haystack.get(start..)?.find(needle) {
        let at = start + at;
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if boundary(before) && (boundary(after) || needle.ends_with('.')) {
            return Some(at);
        }
        start = at + needle.len();
    }
    None
}

/// `name: value`, `name = value`, `name is value` (also with the name's words spaced:
/// "ticker symbol: ACME", "my sign is Virgo").
fn labelled(name: &str, text: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets, so positions in `low` index `text` too.
    let low = text.to_ascii_lowercase();
    let words = name_words(name);
    let mut labels = vec![name.to_ascii_lowercase(), words.join(" ")];
    if words.len() > 1
        && let Some(last) = words.last()
    {
        labels.push(last.clone());
    }
    for label in labels.iter().filter(|l| l.len() >= 2) {
        let Some(at) = find_word(&low, label) else {
            continue;
        };
        let rest = text.get(at + label.len()..).unwrap_or("");
        let trimmed = rest.trim_start();
        let value = if let Some(v) = trimmed
            .strip_prefix(':')
            .or_else(|| trimmed.strip_prefix('='))
        {
            v
        } else if let Some(v) = trimmed
            .strip_prefix("is ")
            .or_else(|| trimmed.strip_prefix("Is "))
        {
            v
        } else {
            continue;
        };
        let value = value
            .split([',', ';', '\n'])
            .next()
            .unwrap_or("")
            .split(" and ")
            .next()
            .unwrap_or("")
            .trim()
            .trim_end_matches(['.', '!', '?'])
            .trim()
            .trim_matches(|c: char| c == '"' || c == '\'');
        let value = value
            .strip_prefix("a ")
            .or_else(|| value.strip_prefix("an "))
            .unwrap_or(value);
        if !value.is_empty() && value.split_whitespace().count() <= 8 {
            return Some(value.to_owned());
        }
    }
    None
}

fn choice(choices: &[String], text: &str) -> Option<String> {
    let low = text.to_lowercase();
    choices
        .iter()
        // A one-letter choice ("A" records) counts only as written, never as the article.
        .filter(|c| {
            if c.chars().count() == 1 {
                find_word(text, c).is_some()
            } else {
                find_word(&low, &c.to_lowercase()).is_some()
            }
        })
        .max_by_key(|c| c.len())
        .cloned()
}

/// Whether a word is a number written out ("two", "dozen").
pub fn is_number_word(norm: &str) -> bool {
    NUMBER_WORDS.iter().any(|(w, _)| *w == norm)
}

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("twenty", "20"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("dozen", "12"),
];

/// A number as written ("$1,250.50", "100k", "two") in plain digits.
fn as_number(raw: &str, norm: &str) -> Option<String> {
    if let Some((_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == norm) {
        return Some((*n).to_owned());
    }
    let w = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '.' && c != ',' && c != '-');
    let w = w
        .trim_start_matches(['$', '€', '£', '¥'])
        .trim_end_matches(['.', ',']);
    // "30-minute", "2-hour": the number before a unit joined by a hyphen.
    let w = match w.split_once('-') {
        Some((n, unit))
            if !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && unit.chars().all(char::is_alphabetic)
                && !unit.is_empty() =>
        {
            n
        }
        _ => w,
    };
    let (body, factor) = match w.strip_suffix(['k', 'K']) {
        Some(b) if b.chars().any(|c| c.is_ascii_digit()) => (b, 1000.0),
        _ => (w, 1.0),
    };
    let cleaned: String = body.chars().filter(|c| *c != ',').collect();
    if !cleaned
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-')
    {
        return None;
    }
    let value: f64 = cleaned.parse().ok()?;
    if factor == 1.0 {
        Some(cleaned)
    } else {
        Some(format!("{}", value * factor))
    }
}

/// Spans of time: a number followed by one is a duration.
const TIME_SPANS: &[&str] = &[
    "year", "years", "yr", "yrs", "month", "months", "week", "weeks", "day", "days", "hour",
    "hours", "minute", "minutes", "min", "mins", "second", "seconds",
];

/// Words that say what a number counts; a number followed by one of them is that quantity.
const QUANTITIES: &[&str] = &[
    "year", "years", "yr", "yrs", "month", "months", "week", "weeks", "day", "days", "hour",
    "hours", "minute", "minutes", "min", "mins", "second", "seconds", "%", "percent", "people",
    "persons", "guests", "adults", "children", "kids", "nights", "rooms", "tickets", "items",
];

/// A number for `spec`: one whose quantity word ("30 years", "4.5%") the input mentions comes
/// first; one that counts something the input does not mention is never taken.
fn number(spec: &InputSpec, words: &Words, taken: &[String]) -> Option<String> {
    let about: String = format!("{} {}", spec.name, spec.description)
        .to_lowercase()
        .replace('_', " ");
    let quantity_of = |i: usize| -> Option<String> {
        if words.raw[i]
            .trim_end_matches(['.', ',', '?', '!'])
            .ends_with('%')
        {
            return Some("%".to_owned());
        }
        if let Some((_, unit)) = words.raw[i].split_once('-')
            && unit.chars().all(char::is_alphabetic)
            && !unit.is_empty()
        {
            return Some(unit.to_lowercase());
        }
        words
            .norm
            .get(i + 1)
            .filter(|w| QUANTITIES.contains(&w.as_str()))
            .cloned()
    };
    let mentions = |quantity: &str| {
        let stem = quantity.trim_end_matches('s');
        match quantity {
            "%" | "percent" => {
                about.contains('%') || about.contains("percent") || about.contains("rate")
            }
            _ => about.contains(stem),
        }
    };
    let numbers: Vec<(String, Option<String>)> = (0..words.len())
        .filter(|&i| !looks_like_date(&words.raw[i]) && !looks_like_time(&words.norm[i]))
        .filter_map(|i| Some((as_number(&words.raw[i], &words.norm[i])?, quantity_of(i))))
        .filter(|(n, _)| !taken.contains(n))
        .collect();
    // A span of time or a percentage is a different quantity from a count ("over 30 years" is
    // no interest rate); counts of people or things may go by other names ("4 people" guests).
    let measure = |q: &str| q == "%" || q == "percent" || TIME_SPANS.contains(&q);
    numbers
        .iter()
        .find(|(_, q)| q.as_deref().is_some_and(mentions))
        .or_else(|| numbers.iter().find(|(_, q)| q.is_none()))
        .or_else(|| {
            numbers
                .iter()
                .find(|(_, q)| q.as_deref().is_some_and(|q| !measure(q)))
        })
        .map(|(n, _)| n.clone())
}

const CURRENCIES: &[(&str, &str)] = &[
    ("usd", "USD"),
    ("dollar", "USD"),
    ("dollars", "USD"),
    ("$", "USD"),
    ("eur", "EUR"),
    ("euro", "EUR"),
    ("euros", "EUR"),
    ("€", "EUR"),
    ("gbp", "GBP"),
    ("pound", "GBP"),
    ("pounds", "GBP"),
    ("£", "GBP"),
    ("jpy", "JPY"),
    ("yen", "JPY"),
    ("¥", "JPY"),
    ("chf", "CHF"),
    ("franc", "CHF"),
    ("francs", "CHF"),
    ("cad", "CAD"),
    ("aud", "AUD"),
    ("cny", "CNY"),
    ("yuan", "CNY"),
    ("rmb", "CNY"),
    ("inr", "INR"),
    ("rupee", "INR"),
    ("rupees", "INR"),
    ("sek", "SEK"),
    ("krona", "SEK"),
    ("nok", "NOK"),
    ("dkk", "DKK"),
    ("mxn", "MXN"),
    ("peso", "MXN"),
    ("pesos", "MXN"),
    ("brl", "BRL"),
    ("real", "BRL"),
    ("reais", "BRL"),
    ("krw", "KRW"),
    ("won", "KRW"),
    ("pln", "PLN"),
    ("zloty", "PLN"),
    ("try", "TRY"),
    ("lira", "TRY"),
    ("hkd", "HKD"),
    ("sgd", "SGD"),
    ("nzd", "NZD"),
    ("zar", "ZAR"),
    ("rand", "ZAR"),
    ("kronor", "SEK"),
    ("krone", "NOK"),
    ("kroner", "NOK"),
    ("koruna", "CZK"),
    ("czk", "CZK"),
    ("forint", "HUF"),
    ("huf", "HUF"),
    ("ruble", "RUB"),
    ("rubles", "RUB"),
    ("rub", "RUB"),
    ("shekel", "ILS"),
    ("shekels", "ILS"),
    ("ils", "ILS"),
    ("dirham", "AED"),
    ("dirhams", "AED"),
    ("aed", "AED"),
    ("baht", "THB"),
    ("thb", "THB"),
    ("ringgit", "MYR"),
    ("myr", "MYR"),
    ("rupiah", "IDR"),
    ("idr", "IDR"),
    ("riyal", "SAR"),
    ("sar", "SAR"),
];

/// Units of measure people write, for telling a unit conversion from a currency one.
const UNITS: &[&str] = &[
    "km",
    "kilometer",
    "kilometers",
    "kilometre",
    "kilometres",
    "mile",
    "miles",
    "mi",
    "m",
    "meter",
    "meters",
    "metre",
    "metres",
    "cm",
    "centimeters",
    "mm",
    "millimeters",
    "ft",
    "foot",
    "feet",
    "inch",
    "inches",
    "in",
    "yard",
    "yards",
    "kg",
    "kilogram",
    "kilograms",
    "kilo",
    "kilos",
    "g",
    "gram",
    "grams",
    "lb",
    "lbs",
    "ounce",
    "ounces",
    "oz",
    "ton",
    "tons",
    "tonne",
    "tonnes",
    "l",
    "liter",
    "liters",
    "litre",
    "litres",
    "ml",
    "milliliters",
    "gallon",
    "gallons",
    "quart",
    "quarts",
    "pint",
    "pints",
    "cup",
    "cups",
    "tablespoon",
    "tablespoons",
    "teaspoon",
    "teaspoons",
    "celsius",
    "fahrenheit",
    "kelvin",
    "mph",
    "kph",
    "kmh",
    "knots",
    "acre",
    "acres",
    "hectare",
    "hectares",
    "byte",
    "bytes",
    "kb",
    "mb",
    "gb",
    "tb",
    "calorie",
    "calories",
    "joule",
    "joules",
    "watt",
    "watts",
    "kw",
    "kwh",
    "horsepower",
    "hp",
];

/// The class of values a word belongs to (`currency`, `language`, `unit`, `date`), if it is
/// a well-known value: "euros" asks for work on currencies even where no card lists "euro".
pub fn value_class(raw: &str, norm: &str) -> Option<&'static str> {
    let has_digit = raw.chars().any(|c| c.is_ascii_digit());
    let bare = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != ':');
    if is_ip(bare) {
        return Some("ip");
    }
    if is_domain(&bare.to_ascii_lowercase()) && !bare.starts_with("e.g") {
        return Some("domain");
    }
    if has_digit && raw.trim_end_matches(['?', '.', '!', ',']).ends_with('%') {
        return Some("percentage");
    }
    if has_digit
        && raw
            .chars()
            .any(|c| matches!(c, '+' | '*' | '/' | '^' | '='))
        && raw
            .chars()
            .all(|c| c.is_ascii_digit() || "+-*/^=().,x ".contains(c))
    {
        return Some("arithmetic");
    }
    if is_currency_word(raw, norm) {
        Some("currency")
    } else if is_language(norm) {
        Some("language")
    } else if UNITS.contains(&norm) && norm.len() > 1 && norm != "in" {
        Some("unit")
    } else if WEEKDAYS.contains(&norm) || (MONTHS.contains(&norm) && norm != "may") {
        Some("date")
    } else if (2..=5).contains(&raw.len())
        && raw.chars().all(|c| c.is_ascii_uppercase())
        && !NOT_CODES.contains(&raw)
    {
        // Short all-capitals words in a request are mostly ticker symbols ("How is MSFT doing?").
        Some("ticker")
    } else {
        None
    }
}

/// The currency a word names: a code, a name, or a symbol stuck to an amount ("$100").
fn currency_of(raw: &str, norm: &str) -> Option<String> {
    if let Some((_, code)) = CURRENCIES.iter().find(|(k, _)| *k == norm) {
        // "try" is a verb far more often than the Turkish lira's code.
        if norm == "try" && raw != "TRY" {
            return None;
        }
        if norm == "real" && raw != "BRL" {
            return None;
        }
        return Some((*code).to_owned());
    }
    let symbol = raw.chars().find(|c| matches!(c, '$' | '€' | '£' | '¥'))?;
    CURRENCIES
        .iter()
        .find(|(k, _)| k.chars().eq(std::iter::once(symbol)))
        .map(|(_, code)| (*code).to_owned())
}

fn is_currency_word(raw: &str, norm: &str) -> bool {
    CURRENCIES.iter().any(|(k, _)| *k == norm)
        && (norm != "try" || raw == "TRY")
        && (norm != "real" || raw == "BRL")
}

fn currency(words: &Words, side: Side, taken: &[String]) -> Option<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for i in 0..words.len() {
        if let Some(code) = currency_of(&words.raw[i], &words.norm[i])
            && found.last().is_none_or(|(_, last)| *last != code)
        {
            found.push((i, code));
        }
    }
    // "to euros", "in yen", "how many dollars": the currency converted into.
    let after_to = |i: usize| {
        i > 0
            && matches!(
                words.norm[i - 1].as_str(),
                "to" | "into" | "in" | "many" | "much"
            )
    };
    if side == Side::To {
        found
            .iter()
            .find(|(i, _)| after_to(*i))
            .or_else(|| found.get(1))
            .map(|(_, c)| c.clone())
    } else {
        found
            .iter()
            .find(|(i, c)| !after_to(*i) && !taken.contains(c))
            .map(|(_, c)| c.clone())
    }
}

const LANGUAGES: &[&str] = &[
    "arabic",
    "bengali",
    "bulgarian",
    "catalan",
    "chinese",
    "croatian",
    "czech",
    "danish",
    "dutch",
    "english",
    "estonian",
    "finnish",
    "french",
    "german",
    "greek",
    "hebrew",
    "hindi",
    "hungarian",
    "icelandic",
    "indonesian",
    "irish",
    "italian",
    "japanese",
    "korean",
    "latin",
    "latvian",
    "lithuanian",
    "malay",
    "mandarin",
    "cantonese",
    "norwegian",
    "persian",
    "farsi",
    "polish",
    "portuguese",
    "romanian",
    "russian",
    "serbian",
    "slovak",
    "slovenian",
    "spanish",
    "swahili",
    "swedish",
    "tagalog",
    "thai",
    "turkish",
    "ukrainian",
    "urdu",
    "vietnamese",
    "welsh",
];

/// Whether a word names a language ("french", "japanese").
pub fn is_language(norm: &str) -> bool {
    LANGUAGES.contains(&norm)
}

fn language(words: &Words) -> Option<String> {
    // The target comes after "into"/"to"/"in" when a source language is also named.
    let at = (0..words.len())
        .filter(|&i| is_language(&words.norm[i]))
        .max_by_key(|&i| i > 0 && matches!(words.norm[i - 1].as_str(), "into" | "to" | "in"))?;
    Some(capitalize(&words.norm[at]))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// Words about when, which are never places, topics or names.
const TIME_WORDS: &[&str] = &[
    "today",
    "tomorrow",
    "tonight",
    "yesterday",
    "now",
    "currently",
    "later",
    "soon",
    "weekend",
    "week",
    "month",
    "year",
    "morning",
    "afternoon",
    "evening",
    "night",
    "lately",
    "recently",
    "right",
    "next",
    "this",
    "last",
];

fn is_time_word(norm: &str) -> bool {
    TIME_WORDS.contains(&norm) || WEEKDAYS.contains(&norm) || MONTHS.contains(&norm)
}

fn looks_like_date(raw: &str) -> bool {
    let w = raw.trim_matches(|c: char| !c.is_alphanumeric());
    let parts: Vec<&str> = w.split(['-', '/', '.']).collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn looks_like_time(norm: &str) -> bool {
    let n = norm.trim_end_matches("am").trim_end_matches("pm");
    (norm.ends_with("am") || norm.ends_with("pm") || norm.contains(':'))
        && !n.is_empty()
        && n.chars().all(|c| c.is_ascii_digit() || c == ':')
}

fn date(words: &Words) -> Option<String> {
    for i in 0..words.len() {
        let n = words.norm[i].as_str();
        if looks_like_date(&words.raw[i]) {
            return Some(strip(&words.raw[i]));
        }
        if matches!(n, "today" | "tomorrow" | "tonight" | "yesterday") {
            return Some(n.to_owned());
        }
        if matches!(n, "next" | "this" | "coming")
            && let Some(next) = words.norm.get(i + 1)
            && (WEEKDAYS.contains(&next.as_str())
                || matches!(next.as_str(), "week" | "weekend" | "month" | "year"))
        {
            return Some(format!("{n} {next}"));
        }
        if WEEKDAYS.contains(&n) {
            return Some(capitalize(n));
        }
        if MONTHS.contains(&n) && (n != "may" || words.raw[i].starts_with('M')) {
            // "May 5", "5 May", "May 5th, 2027"
            let day = |j: usize| {
                words.norm.get(j).and_then(|d| {
                    let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
                    (!digits.is_empty() && digits.len() <= 2).then_some(digits)
                })
            };
            if let Some(d) = day(i + 1) {
                return Some(format!("{} {d}", capitalize(n)));
            }
            if let Some(d) = i.checked_sub(1).and_then(day) {
                return Some(format!("{d} {}", capitalize(n)));
            }
        }
        if n == "in"
            && let (Some(count), Some(unit)) = (words.norm.get(i + 1), words.norm.get(i + 2))
            && matches!(unit.as_str(), "days" | "weeks" | "day" | "week")
            && as_number(count, count).is_some()
        {
            return Some(format!("in {count} {unit}"));
        }
    }
    None
}

fn time(words: &Words) -> Option<String> {
    for i in 0..words.len() {
        let n = words.norm[i].as_str();
        if looks_like_time(n) {
            return Some(n.to_owned());
        }
        if matches!(n, "noon" | "midnight") {
            return Some(n.to_owned());
        }
        if let Some(next) = words.norm.get(i + 1)
            && matches!(next.as_str(), "am" | "pm")
            && n.chars().all(|c| c.is_ascii_digit() || c == ':')
            && !n.is_empty()
        {
            return Some(format!("{n}{next}"));
        }
    }
    None
}

/// Words that may sit inside a place's name ("Rio de Janeiro", "Isle of Man").
const NAME_JOINERS: &[&str] = &[
    "de", "del", "da", "do", "du", "des", "di", "la", "le", "les", "of", "upon", "am", "sur",
    "van", "von", "der", "den", "el", "al", "y",
];

fn is_name_part_excluded(words: &Words, i: usize) -> bool {
    let n = words.norm[i].as_str();
    is_currency_word(&words.raw[i], n) || is_language(n) || is_time_word(n) || n == "i"
}

/// The capitalised name starting at `i` ("New York", "Rio de Janeiro").
fn proper_name_at(words: &Words, i: usize) -> Option<String> {
    let first = strip(&words.raw[i]);
    if !first.chars().next().is_some_and(char::is_uppercase) || is_name_part_excluded(words, i) {
        return None;
    }
    let mut parts = vec![first];
    let mut j = i + 1;
    while j < words.len() {
        // A comma ends a name ("in Paris, then …").
        if words.raw[j - 1].ends_with([',', ';', ':']) {
            break;
        }
        let w = strip(&words.raw[j]);
        let capital = w.chars().next().is_some_and(char::is_uppercase);
        let joiner = NAME_JOINERS.contains(&words.norm[j].as_str())
            && words
                .raw
                .get(j + 1)
                .is_some_and(|n| strip(n).chars().next().is_some_and(char::is_uppercase));
        if (capital && !is_name_part_excluded(words, j)) || joiner {
            parts.push(w);
            j += 1;
        } else {
            break;
        }
    }
    Some(parts.join(" "))
}

fn place(
    words: &Words,
    leg: Leg,
    taken: &[String],
    source: Source,
    agent_word: &dyn Fn(&str) -> bool,
) -> Option<String> {
    // Markers in order of trust: "in Cardiff" names a place more surely than "for Oppenheimer".
    let tiers: &[&[&str]] = match leg {
        Leg::From => &[&["from", "leaving", "departing"]],
        Leg::To => &[&["to", "towards", "visiting", "visit"], &["for"]],
        Leg::Any => &[
            &["in", "at", "near", "around", "visiting", "visit"],
            &["to", "for", "of"],
        ],
    };
    let taken_lower: Vec<String> = taken.iter().map(|t| t.to_lowercase()).collect();
    let free = |name: &str| {
        let n = name.to_lowercase();
        !taken_lower.contains(&n) && !agent_word(name)
    };
    let mut fallback = None;
    for markers in tiers {
        for i in 0..words.len().saturating_sub(1) {
            if !markers.contains(&words.norm[i].as_str()) {
                continue;
            }
            // "in the centre of Paris": skip a determiner.
            let mut j = i + 1;
            if matches!(words.norm[j].as_str(), "the") && j + 1 < words.len() {
                j += 1;
            }
            if let Some(name) = proper_name_at(words, j)
                && free(&name)
            {
                return Some(name);
            }
            // "weather in paris": a plain word after "in" names a place when nothing else does.
            let n = words.norm[j].as_str();
            if source == Source::Task
                && leg == Leg::Any
                && fallback.is_none()
                && words.norm[i] == "in"
                && !n.is_empty()
                && !STOPWORDS.contains(&n)
                && !is_name_part_excluded(words, j)
                && !agent_word(n)
                && n.chars().all(char::is_alphabetic)
            {
                fallback = Some(capitalize(n));
            }
        }
    }
    // "How warm is Rome in May", "Japan's public holidays": a name in the task's own words,
    // wherever it stands, unless it qualifies the noun after it ("the new Pixar movie").
    fallback.or_else(|| {
        (source == Source::Task && leg == Leg::Any)
            .then(|| {
                (0..words.len())
                    .filter(|&i| {
                        let proper =
                            words.is_proper(i) || (words.initial[i] && words.may_be_name(i));
                        proper && !agent_word(&words.norm[i])
                    })
                    .filter_map(|i| Some((i, proper_name_at(words, i)?)))
                    .find(|(i, name)| {
                        let next = i + name.split_whitespace().count();
                        let possessive = words
                            .raw
                            .get(next.saturating_sub(1))
                            .is_some_and(|w| w.ends_with("'s") || w.ends_with("\u{2019}s"));
                        let qualifies = !possessive
                            && words.norm.get(next).is_some_and(|n| {
                                !n.is_empty()
                                    && !STOPWORDS.contains(&n.as_str())
                                    && words.raw[next]
                                        .chars()
                                        .next()
                                        .is_some_and(char::is_lowercase)
                            });
                        !qualifies && free(name)
                    })
                    .map(|(_, name)| name)
            })
            .flatten()
    })
}

/// Upper-case words that are not codes.
const NOT_CODES: &[&str] = &[
    "I", "A", "OK", "AM", "PM", "TV", "ASAP", "FYI", "PS", "BTW", "PLEASE",
];

fn code(words: &Words, taken: &[String]) -> Option<String> {
    let candidates: Vec<(usize, String)> = (0..words.len())
        .filter(|&i| !text::is_quoted(&words.raw[i]))
        .filter_map(|i| {
            let raw =
                words.raw[i].trim_matches(|c: char| !c.is_alphanumeric() && c != '$' && c != '.');
            let raw = raw.trim_end_matches('.');
            let body = raw.strip_prefix('$').unwrap_or(raw);
            let letters = body.chars().filter(|c| c.is_alphabetic()).count();
            let is_code = (1..=6).contains(&letters)
                && body
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '.' || c.is_ascii_digit())
                && body.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && !NOT_CODES.contains(&body)
                && (letters >= 2 || raw.starts_with('$'));
            is_code.then(|| (i, body.to_owned()))
        })
        .filter(|(_, c)| !taken.contains(c))
        .collect();
    // A code that is not a currency wins over one that is ("convert AAPL price to USD").
    candidates
        .iter()
        .find(|(i, _)| !is_currency_word(&words.raw[*i], &words.norm[*i]))
        .or_else(|| candidates.first())
        .map(|(_, c)| c.clone())
}

fn identifier(words: &Words, taken: &[String]) -> Option<String> {
    (0..words.len())
        .filter(|&i| !text::is_quoted(&words.raw[i]))
        .map(|i| strip(&words.raw[i]))
        .filter(|w| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            digits > 0
                && w.len() >= 4
                && w.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
                && !looks_like_date(w)
        })
        .find(|w| !taken.contains(w))
}

/// An IPv4 address (four numbers up to 255) or an IPv6 one (hex groups and colons).
pub fn is_ip(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    if parts.len() == 4 {
        return parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|n| n <= 255));
    }
    word.matches(':').count() >= 2
        && word.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
        && word.chars().any(|c| c.is_ascii_hexdigit())
}

/// A domain name: labels of letters, digits and hyphens joined by dots, ending in a
/// top-level label of letters ("mail.example.org"; not "e.g." nor "3.5").
pub fn is_domain(word: &str) -> bool {
    let labels: Vec<&str> = word.split('.').collect();
    labels.len() >= 2
        && !word.contains('@')
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

fn is_email(word: &str) -> bool {
    let w = strip(word);
    let Some((user, domain)) = w.split_once('@') else {
        return false;
    };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.')
}

fn unit(words: &Words, side: Side, taken: &[String]) -> Option<String> {
    let is_unit_word = |i: usize| {
        let n = words.norm[i].as_str();
        !n.is_empty()
            && n.chars().all(|c| c.is_alphabetic() || c == '°')
            && !STOPWORDS.contains(&n)
            && !matches!(n, "to" | "into" | "in")
    };
    if side == Side::To {
        (1..words.len())
            .rev()
            .find(|&i| {
                matches!(
                    words.norm[i - 1].as_str(),
                    "to" | "into" | "in" | "many" | "much"
                ) && is_unit_word(i)
            })
            .map(|i| words.norm[i].clone())
    } else {
        (1..words.len())
            .find(|&i| {
                as_number(&words.raw[i - 1], &words.norm[i - 1]).is_some() && is_unit_word(i)
            })
            .or_else(|| (1..words.len()).find(|&i| words.norm[i - 1] == "from" && is_unit_word(i)))
            .map(|i| words.norm[i].clone())
            .filter(|u| !taken.contains(u))
    }
}

fn quoted(words: &Words) -> Option<String> {
    words
        .raw
        .iter()
        .find(|w| text::is_quoted(w))
        .map(|w| {
            let mut chars = w.chars();
            chars.next();
            chars.next_back();
            chars.as_str().trim().to_owned()
        })
        .filter(|w| !w.is_empty())
}

/// Words that make an object a reference to something not given ("my notes", "this article").
const REFERENCES: &[&str] = &[
    "my", "our", "your", "the", "this", "that", "these", "those", "his", "her", "their", "its",
    "it", "them", "some", "a", "an",
];

/// Verbs after which free text follows ("say thank you in Japanese").
const TEXT_VERBS: &[&str] = &[
    "translate",
    "say",
    "summarize",
    "summarise",
    "rewrite",
    "paraphrase",
    "proofread",
    "spellcheck",
    "correct",
    "fix",
    "simplify",
    "shorten",
    "analyze",
    "analyse",
    "classify",
    "detect",
    "write",
    "convert",
    "explain",
];

/// Free text: a quotation, what follows a colon, or the words between the verb and the target
/// ("Translate hello world into Spanish").
fn free_text(words: &Words, agent_word: &dyn Fn(&str) -> bool) -> Option<String> {
    if let Some(q) = quoted(words) {
        return Some(q);
    }
    if let Some(at) = words.raw.iter().position(|w| w.ends_with(':')) {
        let after = words.raw[at + 1..].join(" ");
        let after = after.trim();
        if !after.is_empty() {
            return Some(after.to_owned());
        }
    }
    let verb = (0..words.len()).find(|&i| {
        let n = words.norm[i].as_str();
        TEXT_VERBS.contains(&n)
            || (agent_word(n) && !STOPWORDS.contains(&n) && i + 1 < words.len() && i <= 3)
    })?;
    let mut span: Vec<&str> = Vec::new();
    let mut i = verb + 1;
    while i < words.len() {
        let n = words.norm[i].as_str();
        let next = words.norm.get(i + 1).map(String::as_str);
        // "… into Spanish", "… in French", "… from German", "… for me", "… please"
        if matches!(n, "into" | "to" | "in" | "from") && next.is_some_and(is_language) {
            break;
        }
        if (n == "for" && next == Some("me")) || n == "please" {
            break;
        }
        span.push(words.raw[i].as_str());
        i += 1;
    }
    let first = span.first().map(|w| text::normalize(w))?;
    if REFERENCES.contains(&first.as_str())
        || STOPWORDS.contains(&first.as_str()) && span.len() == 1
    {
        return None;
    }
    let value = span.join(" ");
    let value = value.trim().trim_end_matches([',', '.']).trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Prepositions after which the subject of a request follows.
const ABOUT: &[&str] = &["about", "on", "regarding", "concerning", "re"];

/// What the request is about: after "about"/"on"/…, else the words the agent does not use to
/// describe itself.
fn topic(words: &Words, taken: &[String], agent_word: &dyn Fn(&str) -> bool) -> Option<String> {
    let content = |i: usize| {
        let n = words.norm[i].as_str();
        !n.is_empty()
            && !STOPWORDS.contains(&n)
            && !is_time_word(n)
            && !taken.iter().any(|t| t.eq_ignore_ascii_case(n))
    };
    if let Some(at) = words.norm.iter().position(|w| ABOUT.contains(&w.as_str())) {
        let mut span: Vec<usize> = (at + 1..words.len()).collect();
        while span
            .first()
            .is_some_and(|&i| REFERENCES.contains(&words.norm[i].as_str()))
        {
            span.remove(0);
        }
        while span.last().is_some_and(|&i| !content(i)) {
            span.pop();
        }
        if !span.is_empty() {
            let value: Vec<String> = span.iter().map(|&i| strip(&words.raw[i])).collect();
            return Some(value.join(" "));
        }
    }
    // Else the last run of words the agent does not use for itself, joined through "and",
    // "or", "of": "Find recipes with chicken and rice" → "chicken and rice".
    let residue = |i: usize| {
        content(i)
            && !agent_word(&words.norm[i])
            && !text::ACTION_WORDS.contains(&words.norm[i].as_str())
    };
    let last = (0..words.len()).rev().find(|&i| residue(i))?;
    let mut first = last;
    loop {
        if first >= 1 && residue(first - 1) {
            first -= 1;
        } else if first >= 2
            && matches!(words.norm[first - 1].as_str(), "and" | "or" | "of" | "&")
            && residue(first - 2)
        {
            first -= 2;
        } else {
            break;
        }
    }
    // "check my meds": the user's own thing, not given here.
    if first > 0
        && matches!(
            words.norm[first - 1].as_str(),
            "my" | "our" | "your" | "his" | "her" | "their" | "this" | "that" | "these" | "those"
        )
    {
        return None;
    }
    let value: Vec<String> = (first..=last).map(|i| strip(&words.raw[i])).collect();
    let value = value.join(" ");
    (!value.is_empty()).then_some(value)
}

fn dataset(words: &Words) -> Option<String> {
    (1..words.len()).rev().find_map(|i| {
        let w = words.norm[i].as_str();
        let prev = words.norm[i - 1].as_str();
        (matches!(w, "data" | "dataset" | "numbers" | "figures")
            && !STOPWORDS.contains(&prev)
            && !prev.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{prev} {w}"))
    })
}

/// A name: "I am a Leo", "as a Virgo", then a capitalised word in the task's own words.
fn named(
    words: &Words,
    taken: &[String],
    source: Source,
    agent_word: &dyn Fn(&str) -> bool,
) -> Option<String> {
    for i in 0..words.len().saturating_sub(2) {
        let (a, b) = (words.norm[i].as_str(), words.norm[i + 1].as_str());
        let self_description = (matches!(a, "am" | "i'm" | "im" | "as") && matches!(b, "a" | "an"))
            || (a == "i'm" && i + 1 < words.len());
        if self_description {
            let at = if matches!(b, "a" | "an") {
                i + 2
            } else {
                i + 1
            };
            if at < words.len() {
                let n = words.norm[at].as_str();
                if !STOPWORDS.contains(&n) && !n.is_empty() && !is_time_word(n) {
                    return Some(capitalize(&strip(&words.raw[at])));
                }
            }
        }
    }
    if source == Source::Context {
        return None;
    }
    if let Some(q) = quoted(words) {
        return Some(q);
    }
    // "a meeting called Q3 planning", "the film titled Dune"
    for i in 0..words.len().saturating_sub(1) {
        if matches!(words.norm[i].as_str(), "called" | "named" | "titled")
            && let Some(name) = proper_name_at(words, i + 1)
        {
            return Some(name);
        }
    }
    let used: Vec<String> = taken.iter().map(|t| t.to_lowercase()).collect();
    (0..words.len())
        .filter(|&i| words.is_proper(i))
        // "roles in Manchester": a name after a place preposition is a place, not this name.
        .filter(|&i| {
            i == 0
                || !matches!(
                    words.norm[i - 1].as_str(),
                    "in" | "at" | "near" | "around" | "on"
                )
        })
        // An acronym stays a name even when the agent lists it ("in the NBA").
        .filter(|&i| {
            let acronym = strip(&words.raw[i]).chars().all(|c| c.is_ascii_uppercase());
            !is_name_part_excluded(words, i) && (acronym || !agent_word(&words.norm[i]))
        })
        .filter_map(|i| proper_name_at(words, i))
        // "Celtics" is not a second name when "Boston Celtics" is already taken.
        .find(|n| {
            let n = n.to_lowercase();
            !used
                .iter()
                .any(|u| u.contains(&n) || n.contains(u.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, description: &str) -> InputSpec {
        InputSpec {
            name: name.into(),
            description: description.into(),
            required: true,
            examples: examples_in(description),
            choices: choices_in(description),
            ..InputSpec::default()
        }
    }

    fn get(name: &str, description: &str, text: &str) -> Option<String> {
        let s = spec(name, description);
        find(&s, &kind(&s), text, Source::Task, &[], &|_| false)
    }

    #[test]
    fn kinds_come_from_names_descriptions_and_examples() {
        let cases = [
            ("symbol", "The stock ticker symbol, e.g. AAPL", Kind::Code),
            ("sign", "Your zodiac sign, e.g. Aries", Kind::Named),
            ("from_currency", "", Kind::Currency(Side::From)),
            ("destination", "", Kind::Place(Leg::To)),
            ("q", "what to look up, e.g. chicken", Kind::Topic),
            ("code", "package code, e.g. 1Z999AA1", Kind::Identifier),
            ("mode", "travel mode", Kind::Other),
            ("style", "one of: bar, line, pie", Kind::Choice),
        ];
        for (name, description, expected) in cases {
            assert_eq!(kind(&spec(name, description)), expected, "{name}");
        }
    }

    #[test]
    fn values_are_found_where_people_put_them() {
        // (input name, input description, the user's words, the value found)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "symbol",
                "The stock ticker symbol, e.g. AAPL",
                "Get the current stock quote for AAPL",
                Some("AAPL"),
            ),
            (
                "text",
                "the text to translate",
                "Translate hello world into Spanish",
                Some("hello world"),
            ),
            (
                "text",
                "the text to translate",
                "Translate my notes into French",
                None,
            ),
            (
                "text",
                "",
                "Translate 'good morning' into French",
                Some("good morning"),
            ),
            ("amount", "", "convert $1,250 to euros", Some("1250")),
            (
                "location",
                "",
                "weather in New York please",
                Some("New York"),
            ),
            (
                "location",
                "",
                "what's the weather like in paris tomorrow",
                Some("Paris"),
            ),
            ("address", "", "geocode my office address", None),
            (
                "origin",
                "",
                "Find flights from Boston to Rio de Janeiro on May 5",
                Some("Boston"),
            ),
            (
                "destination",
                "",
                "Find flights from Boston to Rio de Janeiro on May 5",
                Some("Rio de Janeiro"),
            ),
            (
                "date",
                "",
                "Find flights from Boston to Rio de Janeiro on May 5",
                Some("May 5"),
            ),
            ("sign", "zodiac sign, e.g. Aries", "I am a Leo", Some("Leo")),
            (
                "sign",
                "zodiac sign, e.g. Aries",
                "My sign is Virgo",
                Some("Virgo"),
            ),
            ("ticker", "", "quote ticker: ACME", Some("ACME")),
            (
                "tracking_number",
                "",
                "Where is my package 1Z999AA10123456784?",
                Some("1Z999AA10123456784"),
            ),
            (
                "style",
                "one of: bar, line, pie",
                "plot it as a pie chart",
                Some("pie"),
            ),
            (
                "mode",
                "travel mode",
                "directions route to the station",
                None,
            ),
        ];
        for &(name, description, text, value) in cases {
            assert_eq!(
                get(name, description, text).as_deref(),
                value,
                "{name} in {text:?}"
            );
        }
    }

    #[test]
    fn currencies_and_units_take_their_side() {
        let t = "convert 100 USD to EUR";
        assert_eq!(get("from_currency", "", t).as_deref(), Some("USD"));
        assert_eq!(get("to_currency", "", t).as_deref(), Some("EUR"));
        let t = "convert 5 km to miles";
        assert_eq!(get("from_unit", "", t).as_deref(), Some("km"));
        assert_eq!(get("to_unit", "", t).as_deref(), Some("miles"));
        assert_eq!(get("value", "", t).as_deref(), Some("5"));
    }

    #[test]
    fn topics_leave_the_agents_own_words_out() {
        let s = spec("topic", "the topic");
        let agent = |w: &str| matches!(w, "news" | "latest" | "headlines");
        assert_eq!(
            find(
                &s,
                &Kind::Topic,
                "Give me the latest news about Rust",
                Source::Task,
                &[],
                &agent
            )
            .as_deref(),
            Some("Rust")
        );
        let s = spec("ingredient", "main ingredient, e.g. chicken");
        let agent = |w: &str| matches!(w, "recipe" | "recipes");
        assert_eq!(
            find(
                &s,
                &kind(&s),
                "Find recipes with chicken and rice",
                Source::Task,
                &[],
                &agent
            )
            .as_deref(),
            Some("chicken and rice")
        );
    }
}
