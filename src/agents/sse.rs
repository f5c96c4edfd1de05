//! Server-sent events from an agent: an A2A stream (`SendStreamingMessage`, `SubscribeToTask`)
//! answers with one JSON-RPC response per event, each in an event's `data`.

use serde_json::Value;

use super::AgentError;

/// Reads the events of one streamed response as they arrive; each is the JSON in an event's
/// `data` lines. Comments (keep-alives), `event:` and `id:` lines are skipped.
pub struct EventReader {
    response: reqwest::Response,
    /// Bytes received but not yet a whole event, with carriage returns taken out.
    pending: Vec<u8>,
    /// The largest event taken: the transport's response cap, per event.
    max_event_bytes: usize,
}

impl EventReader {
    /// Reads `response`'s body as events of at most `max_event_bytes` each.
    pub fn new(response: reqwest::Response, max_event_bytes: usize) -> Self {
        EventReader {
            response,
            pending: Vec::new(),
            max_event_bytes,
        }
    }

    /// The next event's data, or `None` once the agent has closed the stream.
    pub async fn next(&mut self) -> Option<Result<Value, AgentError>> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                match data_of(&block) {
                    Some(data) => {
                        return Some(serde_json::from_str(&data).map_err(AgentError::NotJson));
                    }
                    None => continue,
                }
            }
            if self.pending.len() > self.max_event_bytes {
                return Some(Err(AgentError::TooLarge(self.max_event_bytes)));
            }
            match self.response.chunk().await {
                // Lines may end in CRLF; JSON data never holds a raw carriage return.
                Ok(Some(chunk)) => self
                    .pending
                    .extend(chunk.iter().copied().filter(|b| *b != b'\r')),
                Ok(None) => return None,
                Err(e) => return Some(Err(AgentError::Transport(e))),
            }
        }
    }
}

/// The `data` lines of one event joined by line breaks; `None` for an event without data (a
/// keep-alive comment).
fn data_of(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_data_lines_are_joined_and_comments_skipped() {
        assert_eq!(
            data_of(b"id: 1\nevent: message\ndata: {\"a\":\ndata:  1}\n\n").as_deref(),
            Some("{\"a\":\n 1}")
        );
        assert_eq!(data_of(b": keep-alive\n\n"), None);
    }
}
