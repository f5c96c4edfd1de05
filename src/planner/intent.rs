//! What a clause of a request is for: something to do, something the user tells (context for the
//! things to do), or politeness. "I am a Leo. What's my horoscope?" holds one task and one piece
//! of context; "Thanks!" holds neither.

use super::text::{Mood, normalize};

/// The part a clause plays in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Asks for something: a task.
    Request,
    /// Tells something about the user or the situation: context for the tasks.
    Context,
    /// Greetings, thanks, acknowledgements: nothing to do and nothing to know.
    Chatter,
}

/// Whole clauses that are only politeness.
const CHATTER: &[&str] = &[
    "thanks",
    "thank you",
    "thank you so much",
    "thanks a lot",
    "many thanks",
    "thx",
    "ty",
    "cheers",
    "hi",
    "hello",
    "hey",
    "hi there",
    "hello there",
    "hey there",
    "good morning",
    "good afternoon",
    "good evening",
    "ok",
    "okay",
    "great",
    "cool",
    "awesome",
    "perfect",
    "nice",
    "please",
    "sure",
    "yes",
    "no",
    "bye",
    "goodbye",
];

/// Words of politeness and small talk: a clause of nothing else says nothing to do ("Brilliant,
/// thank you so much! Have a lovely evening.").
const POLITE_WORDS: &[&str] = &[
    "thanks",
    "thank",
    "you",
    "so",
    "much",
    "very",
    "really",
    "a",
    "lot",
    "have",
    "lovely",
    "nice",
    "good",
    "great",
    "brilliant",
    "awesome",
    "perfect",
    "wonderful",
    "amazing",
    "fantastic",
    "excellent",
    "cool",
    "ok",
    "okay",
    "sure",
    "yes",
    "no",
    "oh",
    "ah",
    "well",
    "hi",
    "hello",
    "hey",
    "there",
    "bye",
    "goodbye",
    "cheers",
    "see",
    "ya",
    "later",
    "evening",
    "day",
    "night",
    "morning",
    "afternoon",
    "weekend",
    "appreciate",
    "it",
    "that",
    "that's",
    "helpful",
    "for",
    "the",
    "your",
    "help",
    "all",
    "take",
    "care",
    "again",
    "and",
    "also",
    "btw",
    "um",
    "hmm",
    "right",
    "alright",
    "got",
    "noted",
    "understood",
    "fine",
    "wow",
    "separately",
    "two",
    "three",
    "things",
    "first",
    "firstly",
    "second",
    "secondly",
    "finally",
    "lastly",
    "quick",
    "question",
    "questions",
    "couple",
    "of",
];

/// Pronouns that make a statement about the user or the situation.
const SUBJECTS: &[&str] = &[
    "i", "we", "my", "our", "he", "she", "they", "his", "her", "their", "it", "it's", "its", "i'm",
    "we're", "they're", "he's", "she's", "i've", "we've",
];

/// Possessives, which open a statement only together with a verb.
const POSSESSIVES: &[&str] = &["my", "our", "his", "her", "their", "its"];

/// Verbs that make a clause opening with a possessive a statement.
const VERBS_OF_BEING: &[&str] = &[
    "is", "are", "was", "were", "has", "have", "had", "will", "won't", "isn't", "wasn't",
    "arrives", "arrived", "lands", "starts", "ends", "leaves", "lives", "works", "needs",
];

/// Openings of a statement about the user or their situation.
const CONTEXT_OPENINGS: &[&str] = &[
    "i am",
    "i'm",
    "im",
    "i was",
    "i will be",
    "i'll be",
    "i have",
    "i've",
    "i had",
    "i live",
    "i work",
    "i speak",
    "i own",
    "i got",
    "i just",
    "i usually",
    "i already",
    "i prefer",
    "i was born",
    "we are",
    "we're",
    "we have",
    "we've",
    "we live",
    "we will be",
    "we'll be",
    "my",
    "our",
    "it's",
    "it is",
    "it was",
    "it'll be",
    "this is",
    "that's",
    "there's",
    "there is",
    "fyi",
    "for context",
    "btw",
    "by the way",
    "note that",
    "just so you know",
];

/// Phrases that make a statement a request after all ("I'm looking for a hotel").
const REQUEST_MARKERS: &[&str] = &[
    "looking for",
    "trying to",
    "interested in",
    "wondering",
    "curious",
    "want",
    "wanna",
    "need",
    "would like",
    "i'd",
    "we'd",
    "id",
    "i'd like",
    "like to know",
    "can you",
    "could you",
    "would you",
    "will you",
    "please",
    "help me",
    "tell me",
    "show me",
    "give me",
    "let me know",
    "find me",
    "get me",
];

/// The role of a clause. A question is always a request; a statement that opens like one about
/// the user ("I am …", "My … is …") is context unless it also asks ("I need …", "can you …").
pub fn role(text: &str, mood: Mood) -> Role {
    let words: Vec<String> = text.split_whitespace().map(normalize).collect();
    let joined = words
        .iter()
        .filter(|w| !w.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty()
        || CHATTER.contains(&joined.as_str())
        || is_thanks(&joined)
        || joined.split(' ').all(|w| POLITE_WORDS.contains(&w))
    {
        return Role::Chatter;
    }
    if mood == Mood::Question {
        return Role::Request;
    }
    let padded = format!(" {joined} ");
    // A statement whose subject is the user, someone of theirs, or the situation: "We land in
    // Oslo on Friday", "My son is obsessed with Liverpool".
    let opens_as_statement = CONTEXT_OPENINGS
        .iter()
        .any(|o| padded.starts_with(&format!(" {o} ")))
        || words.first().is_some_and(|w| {
            // "My son is …" is a statement; "its French translation" is a thing asked for.
            SUBJECTS.contains(&w.as_str())
                && (!POSSESSIVES.contains(&w.as_str())
                    || words.iter().any(|v| VERBS_OF_BEING.contains(&v.as_str())))
        });
    let asks = REQUEST_MARKERS
        .iter()
        .any(|m| padded.contains(&format!(" {m} ")));
    if opens_as_statement && !asks {
        Role::Context
    } else {
        Role::Request
    }
}

/// Whether a clause tells rather than asks, judged from its words alone: it opens with a
/// pronoun subject ("I need to be there early"), with a verb's -ing form ("Thinking of going
/// jogging"), or holds a finite verb after its first word ("Email stopped arriving this
/// morning"), and opens with neither an action nor a question word. The planner treats such a
/// clause as context when nothing in the directory fits it and the request has other tasks.
pub fn is_statement(text: &str) -> bool {
    const FINITE: &[&str] = &[
        "is", "are", "was", "were", "has", "have", "had", "keeps", "kept", "stopped", "started",
        "broke", "broken", "died", "left", "went", "got", "seems", "looks", "feels",
    ];
    const OPENERS: &[&str] = &[
        "what", "what's", "whats", "how", "when", "where", "who", "which", "why", "can", "could",
        "would", "will", "should", "is", "are", "do", "does", "did", "please", "let",
    ];
    let words: Vec<String> = text
        .split_whitespace()
        .map(normalize)
        .filter(|w| !w.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return false;
    };
    if OPENERS.contains(&first.as_str()) {
        return false;
    }
    SUBJECTS.contains(&first.as_str())
        || (first.ends_with("ing") && first.len() > 5)
        || words[1..].iter().any(|w| {
            FINITE.contains(&w.as_str()) || (w.ends_with("ed") && w.len() > 4 && w != "need")
        })
}

/// "Thanks, that helps" and "thank you for the help" are thanks, however they go on.
fn is_thanks(joined: &str) -> bool {
    let short = joined.split(" ").count() <= 8;
    short
        && (joined.starts_with("thanks")
            || joined.starts_with("thank you")
            || joined.starts_with("many thanks"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mood::{Question, Statement};

    fn assert_roles(expected: Role, cases: &[(&str, Mood)]) {
        for &(text, mood) in cases {
            assert_eq!(role(text, mood), expected, "{text:?}");
        }
    }

    #[test]
    fn statements_about_the_user_are_context() {
        assert_roles(
            Role::Context,
            &[
                ("I am a Leo", Statement),
                ("My sign is Virgo", Statement),
                ("I am travelling to Berlin next week", Statement),
                ("We have 3 kids", Statement),
            ],
        );
    }

    #[test]
    fn requests_stay_requests() {
        assert_roles(
            Role::Request,
            &[
                ("What's the weather in Paris", Question),
                ("I need a flight to Paris", Statement),
                ("I'm looking for a hotel in Rome", Statement),
                ("convert 100 USD to EUR", Statement),
                ("My sign is Virgo, what's my horoscope", Question),
                ("the latest news about AI", Statement),
            ],
        );
    }

    #[test]
    fn politeness_is_chatter() {
        assert_roles(
            Role::Chatter,
            &[
                ("Thanks!", Statement),
                ("Hi there", Statement),
                ("thank you so much for your help", Statement),
            ],
        );
    }
}
