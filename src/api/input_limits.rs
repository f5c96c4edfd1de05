//! Limits on what a client sends, beyond the body size: a prompt's and an answer's length (over
//! HTTP, the WebSocket and A2A alike), and a WebSocket message's size and rate. Each is a
//! setting (`--max-prompt-chars`, `--max-answer-chars`, `--ws-max-message-bytes`,
//! `--ws-messages-per-second`): a prompt is carried through every checkpoint of its turn and
//! into every agent call, so its length bounds what one request can make Baton store and send.

use super::AppError;
use crate::token_bucket::TokenBucket;

/// The limits as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Longest prompt, in characters (Unicode scalar values).
    pub prompt_chars: usize,
    /// Longest answer to a question, in characters.
    pub answer_chars: usize,
    /// Largest WebSocket message (and frame), in bytes.
    pub ws_message_bytes: usize,
    /// Messages a second one WebSocket may send on average, with a burst of twice that; 0: no
    /// limit.
    pub ws_messages_per_second: u32,
}

impl InputLimits {
    /// A prompt no longer than `--max-prompt-chars` (422 otherwise, naming `field`).
    pub fn check_prompt(&self, field: &str, text: &str) -> Result<(), AppError> {
        within(field, text, self.prompt_chars, "--max-prompt-chars")
    }

    /// An answer no longer than `--max-answer-chars` (422 otherwise, naming `field`).
    pub fn check_answer(&self, field: &str, text: &str) -> Result<(), AppError> {
        within(field, text, self.answer_chars, "--max-answer-chars")
    }

    /// The message rate of one WebSocket.
    pub fn ws_bucket(&self) -> TokenBucket {
        TokenBucket::new(
            self.ws_messages_per_second,
            self.ws_messages_per_second.saturating_mul(2),
        )
    }
}

fn within(field: &str, text: &str, max: usize, flag: &str) -> Result<(), AppError> {
    // A text of at most `max` bytes has at most `max` characters: counted only when longer.
    if text.len() <= max || text.chars().count() <= max {
        return Ok(());
    }
    Err(AppError::Invalid(format!(
        "{field} is longer than {max} characters, the most this server accepts ({flag})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_characters_not_bytes() {
        let limits = InputLimits {
            prompt_chars: 3,
            answer_chars: 1,
            ws_message_bytes: 1024,
            ws_messages_per_second: 1,
        };
        assert!(
            limits.check_prompt("prompt", "ééé").is_ok(),
            "6 bytes, 3 characters"
        );
        let refused = limits.check_prompt("prompt", "abcd").unwrap_err();
        assert!(
            refused.to_string().contains("--max-prompt-chars"),
            "{refused}"
        );
        assert!(limits.check_answer("response", "ab").is_err());
        assert!(limits.check_answer("response", "é").is_ok());
    }
}
