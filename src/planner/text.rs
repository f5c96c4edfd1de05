//! Plain-words helpers of the rules planner: splitting a request into clauses, keywords, and
//! finding a skill's inputs (a city, an amount, currencies, a language, quoted text) in prose.

/// Words that say nothing about which agent fits.
pub const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "agent",
    "agents",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "between",
    "are",
    "as",
    "at",
    "be",
    "but",
    "by",
    "can",
    "could",
    "do",
    "does",
    "find",
    "for",
    "from",
    "get",
    "give",
    "guidance",
    "help",
    "how",
    "i",
    "i'm",
    "im",
    "in",
    "into",
    "is",
    "it",
    "its",
    "it's",
    "just",
    "know",
    "let",
    "like",
    "me",
    "my",
    "need",
    "needs",
    "not",
    "now",
    "of",
    "on",
    "or",
    "our",
    "please",
    "really",
    "show",
    "some",
    "sure",
    "tell",
    "than",
    "that",
    "the",
    "then",
    "these",
    "this",
    "those",
    "to",
    "unsure",
    "us",
    "want",
    "wants",
    "we",
    "what",
    "what's",
    "whats",
    "which",
    "who",
    "will",
    "with",
    "would",
    "you",
    "your",
    "actually",
    "instead",
    "there",
    "use",
    "using",
    "one",
    "i'd",
    "i'll",
    "i've",
    "we'd",
    "we'll",
    "you'd",
    "much",
    "many",
    "was",
    "were",
    "has",
    "have",
    "had",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "so",
    "if",
    "here",
    "very",
    "more",
    "they",
    "them",
    "he",
    "she",
    "his",
    "her",
    "him",
    "their",
    "been",
    "being",
    "kindly",
    "ok",
    "okay",
    "quickly",
    "something",
    "anything",
    "someone",
    "able",
    "possible",
    "maybe",
    "perhaps",
    "am",
    "did",
    "doing",
    "done",
    "go",
    "going",
    "wanna",
    "gonna",
    "let's",
    "lets",
    "where's",
    "how's",
    "who's",
    "when's",
    "that's",
    "there's",
    "can't",
    "don't",
    "isn't",
    "aren't",
    "won't",
    "yes",
    "no",
    "up",
    "happening",
    "happen",
    "any",
    "where",
    "when",
    "why",
    "whose",
    "whom",
];

/// Words that start a new request after "and" ("… and convert 100 USD").
pub const ACTION_WORDS: &[&str] = &[
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

/// Whether a sentence ended with a question mark: a question is a request whatever its words
/// ("My sign is Virgo, what's my horoscope?"), where a statement about the user is context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    Statement,
    Question,
}

/// A clause of a request: its words, whether "then" chained it to the one before, and the mood
/// of its sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub text: String,
    pub after_then: bool,
    pub mood: Mood,
}

/// A sentence of a request, kept with its mood because splitting drops the question mark.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    pub text: String,
    pub mood: Mood,
}

/// Opening and closing quote characters; text between them is kept whole.
const QUOTES: &[(char, char)] = &[
    ('"', '"'),
    ('\u{201c}', '\u{201d}'),
    ('\u{2018}', '\u{2019}'),
    ('\'', '\''),
];

/// The closing quote for `c` when it opens a quotation at this position: a straight single quote
/// only opens after a space or at the start (so "what's" is a word, not a quotation).
fn opening_quote(c: char, previous: Option<char>) -> Option<char> {
    let (_, close) = QUOTES.iter().find(|(open, _)| *open == c)?;
    if c == '\'' && previous.is_some_and(|p| !p.is_whitespace() && p != '(') {
        return None;
    }
    Some(*close)
}

/// Whether a scan over characters is inside a quotation.
#[derive(Default)]
struct Quotes {
    /// The quote that ends the quotation being read.
    closing: Option<char>,
}

impl Quotes {
    /// Takes the character at `i`; true when it belongs to a quotation, its quotes included. A
    /// quotation opens only where `may_open` allows and only if it closes later (a stray quote
    /// is a plain character).
    fn take(&mut self, chars: &[char], i: usize, may_open: bool) -> bool {
        let c = chars[i];
        if let Some(close) = self.closing {
            let next = chars.get(i + 1).copied();
            if c == close && (close != '\'' || next.is_none_or(|n| !n.is_alphanumeric())) {
                self.closing = None;
            }
            return true;
        }
        let previous = i.checked_sub(1).map(|p| chars[p]);
        if may_open
            && let Some(close) = opening_quote(c, previous)
            && chars[i + 1..].contains(&close)
        {
            self.closing = Some(close);
            return true;
        }
        false
    }
}

/// Splits text into sentences at `.`, `?`, `!`, `;` and line breaks, never inside quotes and
/// never inside a number or an abbreviation (a stop must be followed by a space or the end).
pub fn sentences(text: &str) -> Vec<Sentence> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quotes = Quotes::default();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        if quotes.take(&chars, i, true) {
            current.push(c);
            continue;
        }
        // After "Summarize: …" the rest is the text to work on, whatever its sentences, up to
        // a sentence that goes on with the request ("… Then proofread the summary.").
        if c == ':' && next.is_some_and(char::is_whitespace) {
            let rest: String = chars[i..].iter().collect();
            let (text, after) = split_at_next_step(&rest);
            current.push_str(text);
            push_sentence(&mut out, &current, Mood::Statement);
            current.clear();
            if let Some(after) = after {
                out.extend(sentences(after));
            }
            return out;
        }
        let ends = match c {
            '?' | '!' | ';' | '\n' => true,
            '.' => next.is_none_or(char::is_whitespace),
            _ => false,
        };
        if ends {
            let mood = if c == '?' {
                Mood::Question
            } else {
                Mood::Statement
            };
            push_sentence(&mut out, &current, mood);
            current.clear();
        } else {
            current.push(c);
        }
    }
    push_sentence(&mut out, &current, Mood::Statement);
    out
}

/// Openings of a sentence that takes the request up again after a text to work on.
const NEXT_STEPS: &[&str] = &[
    ". Then ",
    ". And then ",
    ". After that",
    ". Afterwards",
    ". Next, ",
];

/// Splits a text to work on from the request that goes on after it, if it does.
fn split_at_next_step(rest: &str) -> (&str, Option<&str>) {
    let at = NEXT_STEPS.iter().filter_map(|step| rest.find(step)).min();
    match at {
        // Keep the stop with the text; the next step starts after ". ".
        Some(at) => (&rest[..=at], rest.get(at + 2..)),
        None => (rest, None),
    }
}

fn push_sentence(out: &mut Vec<Sentence>, text: &str, mood: Mood) {
    let text = text.trim();
    if text.is_empty() {
        // "Really??" — a second mark still makes the sentence before a question.
        if mood == Mood::Question
            && let Some(last) = out.last_mut()
        {
            last.mood = Mood::Question;
        }
        return;
    }
    out.push(Sentence {
        text: text.to_owned(),
        mood,
    });
}

/// The words of a sentence, a quotation being one word (quotes included).
pub fn tokens(sentence: &str) -> Vec<String> {
    let chars: Vec<char> = sentence.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quotes = Quotes::default();
    for (i, &c) in chars.iter().enumerate() {
        // A quotation starts a word, never the middle of one.
        if quotes.take(&chars, i, current.is_empty()) {
            current.push(c);
            continue;
        }
        if c.is_whitespace() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether a token is a quotation.
pub fn is_quoted(token: &str) -> bool {
    let mut chars = token.chars();
    chars
        .next()
        .is_some_and(|c| QUOTES.iter().any(|(open, _)| *open == c))
        && token.chars().count() > 1
}

/// Splits a request into clauses: at sentence ends and semicolons, at "then", and at "and"
/// when an action word follows it (so "sales and revenue data" stays one clause).
pub fn split_clauses(prompt: &str) -> Vec<Clause> {
    split_clauses_with(prompt, &|_, _| false)
}

/// Like `split_clauses`, also splitting at "and", "plus", "as well as" or a comma wherever
/// `separate(left, right)` says the two sides ask different things.
pub fn split_clauses_with(prompt: &str, separate: &dyn Fn(&str, &str) -> bool) -> Vec<Clause> {
    let mut out = Vec::new();
    for sentence in sentences(prompt) {
        let words = tokens(&sentence.text);
        let mut current: Vec<&str> = Vec::new();
        let mut after_then = false;
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            if w.ends_with(':') && i + 1 < words.len() {
                // What follows a colon is the text to work on: never split.
                current.extend(words[i..].iter().map(String::as_str));
                break;
            }
            let lw = normalize(w);
            let is_and = matches!(lw.as_str(), "and" | "&" | "plus");
            let next_is = |k: usize, w: &str| words.get(i + k).is_some_and(|n| normalize(n) == w);
            // "as well as", "along with", "together with", and "with a …" when the two sides
            // ask different agents ("an analysis of our sales with a bar chart").
            let as_well_as = (lw == "as" && next_is(1, "well") && next_is(2, "as"))
                || (matches!(lw.as_str(), "along" | "together") && next_is(1, "with"))
                || (lw == "with"
                    && words.get(i + 1).is_some_and(|n| {
                        matches!(normalize(n).as_str(), "a" | "an" | "the" | "some")
                    }));
            let joiner_len = if lw == "as" {
                3
            } else if lw == "with" {
                1
            } else if as_well_as {
                2
            } else {
                1
            };
            let after_joiner = words.get(i + joiner_len).map(|n| normalize(n));
            let comma_before = current.last().is_some_and(|c| c.ends_with(','));
            let action_next = after_joiner
                .as_deref()
                .is_some_and(|n| ACTION_WORDS.contains(&n) || n == "then");
            let mut split = false;
            let mut skip = 0;
            if (is_and || as_well_as) && !current.is_empty() {
                let right = words[i + joiner_len..].join(" ");
                if (action_next && lw != "with") || separate(&current.join(" "), &right) {
                    split = true;
                    skip = joiner_len;
                }
            } else if lw == "then" && !current.is_empty() {
                split = true;
                skip = 1;
            } else if comma_before && !current.is_empty() && !is_and {
                let right = words[i..].join(" ");
                let left = current.join(" ");
                if (ACTION_WORDS.contains(&lw.as_str()) && current.len() > 1)
                    || separate(left.trim_end_matches(','), &right)
                {
                    split = true;
                }
            }
            if split {
                push_clause(&mut out, &current, after_then, Mood::Statement);
                current.clear();
                let chained = lw == "then" || after_joiner.as_deref() == Some("then");
                after_then = chained;
                i += skip;
                if chained && lw != "then" {
                    // "and then": the "then" goes too.
                    i += 1;
                }
                continue;
            }
            current.push(w);
            i += 1;
        }
        push_clause(&mut out, &current, after_then, sentence.mood);
    }
    out
}

fn push_clause(out: &mut Vec<Clause>, words: &[&str], after_then: bool, mood: Mood) {
    let text = words.join(" ");
    let text = text.trim_matches(|c: char| c == ',' || c.is_whitespace());
    // "Then proofread it": a sentence that opens with "then" follows the one before.
    let (text, after_then) = match text
        .strip_prefix("then ")
        .or_else(|| text.strip_prefix("Then "))
    {
        Some(rest) => (rest.trim(), true),
        None => (text, after_then),
    };
    if !text.is_empty() {
        out.push(Clause {
            text: text.to_owned(),
            after_then: after_then && !out.is_empty(),
            mood,
        });
    }
}

/// Words that coordinate a list of values.
const LIST_JOINERS: &[&str] = &["and", "or", "&"];

/// A clause that names several values of one kind in a list ("in Lima, Tokyo and Oslo", "TSLA
/// and MSFT quotes", "the A and MX records") becomes one clause per value, the list replaced by
/// that value: the same agent is asked once for each. Values are names (capitalized, not
/// opening the sentence, several words allowed) or codes (all capitals); a list needs at least
/// two and a joiner before the last. Anything else is returned as it is.
pub fn one_per_value(clause: &Clause) -> Vec<Clause> {
    let tokens = tokens(&clause.text);
    // Group the tokens into values (runs of capitalized words) and other words.
    #[derive(PartialEq)]
    enum Piece {
        Value(String),
        Word(String),
    }
    let mut pieces: Vec<Piece> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let bare = token.trim_matches(|c: char| !c.is_alphanumeric());
        let capital = bare.chars().next().is_some_and(char::is_uppercase);
        let value = capital && i > 0 && !is_quoted(token) && normalize(bare) != "i";
        match (value, pieces.last_mut()) {
            (true, Some(Piece::Value(current))) if !current.ends_with([',', ';', ':']) => {
                current.push(' ');
                current.push_str(token);
            }
            (true, _) => pieces.push(Piece::Value(token.clone())),
            (false, _) => pieces.push(Piece::Word(token.clone())),
        }
    }
    // Find a list: Value (, Value)* [,] joiner Value.
    let is_value = |p: &Piece| matches!(p, Piece::Value(_));
    let joiner =
        |p: &Piece| matches!(p, Piece::Word(w) if LIST_JOINERS.contains(&normalize(w).as_str()));
    let mut start = 0;
    while start < pieces.len() {
        // "between USD and GBP", "Florence vs Milan": a pair, not a list.
        let pair = start > 0
            && matches!(&pieces[start - 1], Piece::Word(w)
                if matches!(normalize(w).as_str(), "between" | "vs" | "versus"));
        if !is_value(&pieces[start]) || pair {
            start += 1;
            continue;
        }
        let mut members = vec![start];
        let mut at = start;
        loop {
            let comma = match &pieces[at] {
                Piece::Value(v) => v.ends_with(','),
                Piece::Word(_) => false,
            };
            if comma && at + 1 < pieces.len() && is_value(&pieces[at + 1]) {
                at += 1;
                members.push(at);
            } else if at + 2 < pieces.len() && joiner(&pieces[at + 1]) && is_value(&pieces[at + 2])
            {
                at += 2;
                members.push(at);
                break;
            } else if at + 3 < pieces.len()
                && joiner(&pieces[at + 1])
                && start > 0
                && pieces[at + 2] == pieces[start - 1]
                && is_value(&pieces[at + 3])
            {
                // "in Paris and in Amsterdam": the preposition said again.
                at += 3;
                members.push(at);
                break;
            } else {
                break;
            }
        }
        let ends_with_joiner = members.len() >= 2
            && at >= 1
            && (joiner(&pieces[at - 1]) || (at >= 2 && joiner(&pieces[at - 2])));
        if ends_with_joiner {
            let values: Vec<String> = members
                .iter()
                .filter_map(|&m| match &pieces[m] {
                    Piece::Value(v) => Some(v.trim_end_matches(',').to_owned()),
                    Piece::Word(_) => None,
                })
                .collect();
            let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
            if distinct.len() == values.len() {
                let trailing = match &pieces[at] {
                    Piece::Value(v) => v
                        .chars()
                        .rev()
                        .take_while(|c| matches!(c, '?' | '!' | '.'))
                        .collect::<String>(),
                    Piece::Word(_) => String::new(),
                };
                return values
                    .iter()
                    .map(|value| {
                        let mut words: Vec<String> = Vec::new();
                        for (i, piece) in pieces.iter().enumerate() {
                            if i == start {
                                words.push(format!(
                                    "{}{trailing}",
                                    value.trim_end_matches(['?', '!', '.'])
                                ));
                            } else if i > start && i <= at {
                                continue;
                            } else {
                                match piece {
                                    Piece::Value(v) | Piece::Word(v) => words.push(v.clone()),
                                }
                            }
                        }
                        Clause {
                            text: words.join(" "),
                            after_then: clause.after_then,
                            mood: clause.mood,
                        }
                    })
                    .collect();
            }
        }
        start = at + 1;
    }
    vec![clause.clone()]
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

/// A `task_name` from the rules planner's keywords: the first three joined by dashes. The
/// keywords are already normalized words, so this picks rather than cleans (`card::slug_with`
/// cleans a name the model wrote).
pub fn slug(keywords: &[String]) -> String {
    let s: Vec<&str> = keywords.iter().take(3).map(String::as_str).collect();
    if s.is_empty() {
        "task".to_owned()
    } else {
        s.join("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(request: &str) -> Vec<String> {
        let clause = Clause {
            text: request.to_owned(),
            after_then: false,
            mood: Mood::Statement,
        };
        one_per_value(&clause).into_iter().map(|c| c.text).collect()
    }

    #[test]
    fn a_list_of_values_becomes_one_clause_each() {
        assert_eq!(
            texts("What time is it in Lima, Cairo and Seoul?"),
            [
                "What time is it in Lima?",
                "What time is it in Cairo?",
                "What time is it in Seoul?"
            ]
        );
        assert_eq!(
            texts("Quotes for MSFT and GOOG please"),
            ["Quotes for MSFT please", "Quotes for GOOG please"]
        );
        assert_eq!(
            texts("Find Muse tickets in Paris and in Amsterdam"),
            [
                "Find Muse tickets in Paris",
                "Find Muse tickets in Amsterdam"
            ]
        );
        assert_eq!(
            texts("Tickets for Florence and the Machine"),
            ["Tickets for Florence and the Machine"]
        );
        assert_eq!(
            texts("analyze sales and revenue data"),
            ["analyze sales and revenue data"]
        );
    }

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
