//! Authentication: the API keys a server accepts (`--api-keys-file`, re-read on SIGHUP), the
//! short-lived tokens minted from them for browsers, and making keys (`baton keys add`). Reads
//! only `access` (who a key belongs to); the API turns a request's header or token into an
//! [`Access`] through [`Authenticator`].

pub mod hex;
pub mod keys_file;
pub mod limits;
pub mod metrics_token;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::access::Access;
pub use keys_file::{KeyFile, KeysFileError, NewKey, add_key};
pub use metrics_token::MetricsToken;
pub use token::{Minted, NoRandom, TOKEN_TTL, TokenSigner};

/// Why authentication could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    KeysFile(#[from] KeysFileError),
    #[error(transparent)]
    Random(#[from] NoRandom),
}

/// The keys a server accepts and the signer of its tokens; shared by every request.
pub struct Authenticator {
    path: PathBuf,
    /// The keys as last read. A lock rather than a swap crate: readers hold it for one
    /// comparison loop, and the only writer is the SIGHUP reload, which replaces the `Arc`.
    keys: RwLock<Arc<KeyFile>>,
    tokens: TokenSigner,
}

impl Authenticator {
    /// Reads the keys file at `path` (it must parse and hold a key) and draws a token secret.
    pub fn load(path: &Path) -> Result<Authenticator, AuthError> {
        let keys = KeyFile::read(path)?;
        Ok(Authenticator {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            tokens: TokenSigner::new()?,
        })
    }

    /// Reads the file again; on any error the previous keys stay in force. Returns how many keys
    /// are now accepted.
    pub fn reload(&self) -> Result<usize, KeysFileError> {
        let keys = KeyFile::read(&self.path)?;
        let count = keys.len();
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    /// How many keys are accepted now.
    pub fn key_count(&self) -> usize {
        self.current().len()
    }

    /// The access an API key gives, if the file holds it.
    pub fn key(&self, presented: &str) -> Option<Access> {
        self.current().access_of(presented)
    }

    /// The access a query token gives at `now_ms`, if this process minted it and it is current.
    pub fn token(&self, presented: &str, now_ms: i64) -> Option<Access> {
        self.tokens.access_of(presented, now_ms)
    }

    /// A token for `access`, or `None` for an open access (nothing to sign in as).
    pub fn mint(&self, access: &Access, now_ms: i64) -> Option<Minted> {
        match access {
            Access::Open => None,
            Access::Key { owner, role } => Some(self.tokens.mint(owner, *role, now_ms)),
        }
    }

    fn current(&self) -> Arc<KeyFile> {
        // Held only to clone the `Arc`; a poisoned lock still holds a whole key file.
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Re-reads the keys file on every SIGHUP, logging the outcome (a bad file is logged and the
    /// previous keys kept). The task ends only when aborted.
    pub fn spawn_reload_on_sighup(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let mut hangups = match signal(SignalKind::hangup()) {
                    Ok(hangups) => hangups,
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for SIGHUP: the API keys file will not be re-read");
                        return;
                    }
                };
                while hangups.recv().await.is_some() {
                    match self.reload() {
                        Ok(keys) => {
                            tracing::info!(keys, path = %self.path.display(), "API keys re-read");
                        }
                        Err(error) => {
                            tracing::error!(%error, keys = self.key_count(), "API keys file not re-read: the previous keys stay in force");
                        }
                    }
                }
            }
        })
    }
}
