//! Plain-words helpers of the rules planner: splitting a request into clauses, keywords, and
//! finding a skill's inputs (a city, an amount, currencies, a language, quoted text) in prose.

/// Words that say nothing about which agent fits.
const STOPWORDS: &[&str] = &[
    "a", "about", "agent", "agents", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "but", "by", "can", "could", "do", "does", "find", "for", "from", "get", "give",
    "guidance", "help", "how", "i", "i'm", "im", "in", "into", "is", "it", "its", "it's", "just",
    "know", "let", "like", "me", "my", "need", "needs", "not", "now", "of", "on", "or", "our",
    "please", "really", "show", "some", "sure", "tell", "than", "that", "the", "then", "these",
    "this", "those", "to", "unsure", "us", "want", "wants", "we", "what", "what's", "whats",
    "which", "who", "will", "with", "would", "you", "your", "actually", "instead", "there", "use",
    "using", "one",
];

/// Words that start a new request after "and" ("… and convert 100 USD").
const ACTION_WORDS: &[&str] = &[
    "analyze",
    "analyse",
    "book",
    "chart",
    "check",
    "compare",
    "convert",
    "create",
    "draft",
    "fetch",
    "find",
    "forecast",
    "get",
    "give",
    "how",
    "list",
    "look",
    "make",
    "plot",
    "search",
    "send",
    "show",
    "summarize",
    "summarise",
    "tell",
    "translate",
    "what",
    "what's",
    "whats",
    "when",
    "where",
    "who",
    "write",
];

/// Phrases with which a user asks to be guided rather than served.
const GUIDANCE_PHRASES: &[&str] = &[
    "guidance",
    "not sure",
    "unsure",
    "don't know",
    "dont know",
    "help me decide",
    "help me choose",
];

/// Openings with which an answer replaces the whole request.
const REDIRECTS: &[&str] = &[
    "actually",
    "instead",
    "never mind",
    "nevermind",
    "forget that",
    "forget it",
    "scratch that",
];

/// Phrases that make a clause consume the output of the clause before it.
const UPSTREAM_REFERENCES: &[&str] = &[
    " it",
    " them",
    " that",
    " the result",
    " the results",
    " those",
    " this",
];

/// A clause of a request and whether it was chained to the one before by "then".
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub text: String,
    pub after_then: bool,
}

/// Splits a request into clauses: at sentence ends and semicolons, at "then", and at "and" when
/// an action word follows it (so "sales and revenue data" stays one clause).
pub fn split_clauses(prompt: &str) -> Vec<Clause> {
    let mut out = Vec::new();
    for sentence in prompt.split(['.', '?', '!', ';', '\n']) {
        let words: Vec<&str> = sentence.split_whitespace().collect();
        let mut current: Vec<&str> = Vec::new();
        let mut after_then = false;
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let lw = normalize(w);
            let next = words.get(i + 1).map(|n| normalize(n));
            let is_and = lw == "and" || lw == "&";
            let splits_here = (is_and
                && next
                    .as_deref()
                    .is_some_and(|n| ACTION_WORDS.contains(&n) || n == "then"))
                || (lw == "then" && !current.is_empty());
            if splits_here && !current.is_empty() {
                push_clause(&mut out, &current, after_then);
                current.clear();
                after_then = lw == "then" || next.as_deref() == Some("then");
                i += if is_and && next.as_deref() == Some("then") {
                    2
                } else {
                    1
                };
                continue;
            }
            current.push(w);
            i += 1;
        }
        push_clause(&mut out, &current, after_then);
    }
    out
}

fn push_clause(out: &mut Vec<Clause>, words: &[&str], after_then: bool) {
    let text = words.join(" ");
    let text = text.trim_matches(|c: char| c == ',' || c.is_whitespace());
    if !text.is_empty() {
        out.push(Clause {
            text: text.to_owned(),
            after_then,
        });
    }
}

/// Lower-case word without surrounding punctuation.
pub fn normalize(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
}

/// The words of `text` that can say which agent fits, in order, without repeats.
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | '.' | '?' | '!' | ';' | ':' | '"' | '(' | ')')
    }) {
        let w = normalize(w);
        if w.len() < 2 || STOPWORDS.contains(&w.as_str()) || w.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The user asked to be guided (and has not been guided yet).
pub fn asks_for_guidance(text: &str) -> bool {
    let low = text.to_lowercase();
    GUIDANCE_PHRASES.iter().any(|p| low.contains(p))
}

/// The request behind an answer that starts over ("Actually, translate this"), if it is one.
pub fn redirect(answer: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets, so the phrase's length indexes the original too.
    let low = answer.trim().to_ascii_lowercase();
    let phrase = REDIRECTS.iter().find(|p| low.starts_with(*p))?;
    let rest = answer
        .trim()
        .get(phrase.len()..)?
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    (!rest.trim().is_empty()).then(|| rest.trim().to_owned())
}

/// The clause refers to what an earlier one produced ("… then summarize it").
pub fn refers_upstream(text: &str) -> bool {
    let low = format!(" {} ", text.to_lowercase());
    UPSTREAM_REFERENCES
        .iter()
        .any(|r| low.contains(&format!("{r} ")) || low.contains(&format!("{r},")))
}

/// A short slug for `task_name`: the first keywords joined by dashes.
pub fn slug(keywords: &[String]) -> String {
    let s: Vec<&str> = keywords.iter().take(3).map(String::as_str).collect();
    if s.is_empty() {
        "task".to_owned()
    } else {
        s.join("-")
    }
}

const CURRENCIES: &[(&str, &str)] = &[
    ("usd", "USD"),
    ("dollar", "USD"),
    ("dollars", "USD"),
    ("eur", "EUR"),
    ("euro", "EUR"),
    ("euros", "EUR"),
    ("gbp", "GBP"),
    ("pound", "GBP"),
    ("pounds", "GBP"),
    ("jpy", "JPY"),
    ("yen", "JPY"),
    ("chf", "CHF"),
    ("franc", "CHF"),
    ("francs", "CHF"),
    ("cad", "CAD"),
    ("aud", "AUD"),
    ("cny", "CNY"),
    ("yuan", "CNY"),
    ("inr", "INR"),
    ("rupee", "INR"),
    ("rupees", "INR"),
    ("sek", "SEK"),
    ("nok", "NOK"),
    ("mxn", "MXN"),
    ("brl", "BRL"),
];

const LANGUAGES: &[&str] = &[
    "arabic",
    "chinese",
    "dutch",
    "english",
    "french",
    "german",
    "greek",
    "hindi",
    "italian",
    "japanese",
    "korean",
    "polish",
    "portuguese",
    "russian",
    "spanish",
    "swedish",
    "turkish",
];

/// Values for well-known input names found in `text`.
pub fn extract(input: &str, text: &str) -> Option<String> {
    match input {
        "location" | "city" => location(text),
        "amount" => amount(text),
        "from_currency" => currencies(text).first().cloned(),
        "to_currency" => {
            let found = currencies(text);
            (found.len() >= 2).then(|| found[1].clone())
        }
        "target_language" | "language" => language(text),
        "text" => quoted_or_after_colon(text),
        "topic" => after_any(text, &["about", "on", "regarding"]),
        "dataset" => dataset(text),
        other => named_value(other, text),
    }
}

fn location(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if matches!(normalize(w).as_str(), "in" | "for" | "at") {
            let place: Vec<String> = words[i + 1..]
                .iter()
                .take_while(|n| n.chars().next().is_some_and(char::is_uppercase))
                .map(|n| n.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            if !place.is_empty() {
                return Some(place.join(" "));
            }
        }
    }
    None
}

/// "sales data" → "sales data": the word naming the data, with "data".
fn dataset(text: &str) -> Option<String> {
    let words: Vec<String> = text.split_whitespace().map(normalize).collect();
    words.iter().enumerate().rev().find_map(|(i, w)| {
        let prev = words.get(i.checked_sub(1)?)?;
        (matches!(w.as_str(), "data" | "dataset" | "numbers" | "figures")
            && !STOPWORDS.contains(&prev.as_str())
            && !prev.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{prev} {w}"))
    })
}

fn amount(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit() && c != '.'))
        .find(|w| {
            !w.is_empty()
                && w.chars().next().is_some_and(|c| c.is_ascii_digit())
                && w.parse::<f64>().is_ok()
        })
        .map(str::to_owned)
}

fn currencies(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split_whitespace() {
        let n = normalize(w);
        if let Some((_, code)) = CURRENCIES.iter().find(|(k, _)| *k == n)
            && out.last().map(String::as_str) != Some(code)
        {
            out.push((*code).to_owned());
        }
    }
    out
}

fn language(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(normalize)
        .find(|w| LANGUAGES.contains(&w.as_str()))
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
}

fn quoted_or_after_colon(text: &str) -> Option<String> {
    if let Some(start) = text.find('"')
        && let Some(len) = text[start + 1..].find('"')
    {
        let inner = text[start + 1..start + 1 + len].trim();
        if !inner.is_empty() {
            return Some(inner.to_owned());
        }
    }
    let (_, after) = text.split_once(':')?;
    let after = after.trim();
    (!after.is_empty()).then(|| after.to_owned())
}

fn after_any(text: &str, markers: &[&str]) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| markers.contains(&normalize(w).as_str()))?;
    let rest: Vec<&str> = words[at + 1..].to_vec();
    (!rest.is_empty()).then(|| rest.join(" ").trim_end_matches(['.', '?', '!']).to_owned())
}

fn named_value(name: &str, text: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets, so positions in `low` index `text` too.
    let low = text.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    for sep in [":", "="] {
        if let Some(at) = low.find(&format!("{name}{sep}"))
            && let Some(rest) = text.get(at + name.len() + sep.len()..)
        {
            let rest = rest.trim_start();
            let value: String = rest
                .split([',', ';', '\n'])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            if !value.is_empty() {
                return Some(value);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_and_before_an_action() {
        let c = split_clauses("What's the weather in Paris and convert 100 USD to EUR");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].text, "What's the weather in Paris");
        assert_eq!(c[1].text, "convert 100 USD to EUR");
    }

    #[test]
    fn keeps_and_between_nouns() {
        assert_eq!(split_clauses("analyze sales and revenue data").len(), 1);
    }

    #[test]
    fn then_chains_clauses() {
        let c = split_clauses("Get the latest news about AI and then summarize it");
        assert_eq!(c.len(), 2);
        assert!(c[1].after_then);
        assert!(refers_upstream(&c[1].text));
    }

    #[test]
    fn extracts_inputs() {
        let t = "convert 100 USD to EUR";
        assert_eq!(extract("amount", t).as_deref(), Some("100"));
        assert_eq!(extract("from_currency", t).as_deref(), Some("USD"));
        assert_eq!(extract("to_currency", t).as_deref(), Some("EUR"));
        assert_eq!(
            extract("location", "weather in New York please").as_deref(),
            Some("New York")
        );
        assert_eq!(
            extract("target_language", "translate hello into french").as_deref(),
            Some("French")
        );
        assert_eq!(
            extract("text", "summarize: the cat sat").as_deref(),
            Some("the cat sat")
        );
        assert_eq!(
            extract("ticker", "quote ticker: ACME").as_deref(),
            Some("ACME")
        );
        assert_eq!(extract("amount", "convert money"), None);
        assert_eq!(
            extract("dataset", "analyze data. I want to analyze sales data").as_deref(),
            Some("sales data")
        );
        assert_eq!(extract("dataset", "analyze my data"), None);
    }

    #[test]
    fn guidance_and_redirects() {
        assert!(asks_for_guidance(
            "Help me analyze data but I need guidance"
        ));
        assert!(!asks_for_guidance("analyze sales data"));
        assert_eq!(
            redirect("Actually, what's the news?").as_deref(),
            Some("what's the news?")
        );
        assert_eq!(redirect("sales data"), None);
    }

    #[test]
    fn keywords_drop_filler() {
        assert_eq!(keywords("Find me a weather agent"), vec!["weather"]);
    }
}
