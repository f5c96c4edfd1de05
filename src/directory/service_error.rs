//! `AgentDirectoryError`: why a directory operation was refused or failed, in terms a caller can
//! act on (the API maps each to a status code in `api/error.rs`); causes are kept as sources.

use super::DirectoryError;
use super::register::CardError;
use crate::agents::AgentError;
use crate::store::StoreError;

/// Everything `AgentDirectory` can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AgentDirectoryError {
    /// The card (registered, fetched or built from an MCP server's tools) is not one the
    /// directory can use; the reason goes back to whoever sent it.
    #[error("invalid agent card: {0}")]
    InvalidCard(#[from] CardError),
    /// `--agent-url-allow` (or the http(s) rule) refuses a URL the request or the card names.
    #[error(transparent)]
    UrlRefused(#[from] crate::agents::policy::UrlRefused),
    /// A rating outside 0..=5.
    #[error("rating must be between 0 and 5, got {0}")]
    RatingOutOfRange(f64),
    /// No card has this id.
    #[error("unknown agent {0}")]
    UnknownAgent(String),
    /// The A2A agent `discover` was pointed at did not serve a card.
    #[error("cannot read the agent card at {url}: {source}")]
    CardUnreachable {
        url: String,
        #[source]
        source: AgentError,
    },
    /// The MCP server `discover` was pointed at did not list its tools.
    #[error("cannot list the MCP tools at {url}: {source}")]
    ToolsUnreachable {
        url: String,
        #[source]
        source: AgentError,
    },
    /// The store could not keep or drop the card.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The card is stored but the in-memory index could not take it.
    #[error(transparent)]
    Index(#[from] DirectoryError),
    /// The task that runs a change to completion (whatever the caller does) panicked or was
    /// stopped by the runtime's shutdown.
    #[error("directory change interrupted: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_discovery_keeps_the_agents_error_as_its_source() {
        let error = AgentDirectoryError::CardUnreachable {
            url: "http://127.0.0.1:1".into(),
            source: AgentError::TooLarge(10),
        };
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("the agent's answer is larger than 10 bytes")
        );
        assert_eq!(
            error.to_string(),
            "cannot read the agent card at http://127.0.0.1:1: the agent's answer is larger than 10 bytes"
        );
    }
}
