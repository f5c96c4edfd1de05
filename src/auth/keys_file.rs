//! The API keys file (`--api-keys-file`): one key per line, `NAME ROLE HASH`, where `HASH` is the
//! lower-case hex SHA-256 of the key; `#` starts a comment, blank lines are skipped. The file never
//! holds a key itself, so reading it (or a backup of it) does not let anyone in.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::hex;
use crate::access::{Access, Owner, Role};

/// What every key Baton makes starts with, so a key is recognisable in a config or a leak scan.
pub const KEY_PREFIX: &str = "baton_";

/// Random bytes in a key (printed as 64 hex digits after the prefix).
const KEY_BYTES: usize = 32;

/// Why a keys file could not be read or written; the text names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read the API keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the API keys file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason} (expected `NAME ROLE SHA256-HEX`, role `user` or `admin`)")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the API keys file {0} has no key")]
    Empty(PathBuf),
    #[error("cannot draw a random key from the system")]
    Random,
    #[error(transparent)]
    Owner(#[from] crate::access::BadOwner),
}

/// One line of the file: whose key, its role, and the SHA-256 of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub owner: Owner,
    pub role: Role,
    hash: [u8; 32],
}

/// The keys a file holds, read whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    entries: Vec<KeyEntry>,
}

impl KeyFile {
    /// Reads and checks `path`: every line must parse, and at least one key must be there (an
    /// empty file would lock everyone out without saying why).
    pub fn read(path: &Path) -> Result<KeyFile, KeysFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = KeyFile::parse(path, &text)?;
        if file.entries.is_empty() {
            return Err(KeysFileError::Empty(path.to_owned()));
        }
        Ok(file)
    }

    /// The keys in `text` (read from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<KeyFile, KeysFileError> {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| KeysFileError::Line {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(bad(format!("{} fields", fields.len())));
            };
            let owner = Owner::parse(name).map_err(|e| bad(e.to_string()))?;
            let role = Role::parse(role).ok_or_else(|| bad(format!("unknown role {role:?}")))?;
            let hash = hex::decode(hash)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| bad("the hash is not 64 hex digits".to_owned()))?;
            entries.push(KeyEntry { owner, role, hash });
        }
        Ok(KeyFile { entries })
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The access `presented` gives, if it is one of the file's keys. Every entry is compared,
    /// each in constant time, so the time taken says nothing about which hash came close.
    pub fn access_of(&self, presented: &str) -> Option<Access> {
        let hash = hash_of(presented);
        let mut found = None;
        for entry in &self.entries {
            if hashes_equal(&entry.hash, &hash) && found.is_none() {
                found = Some(Access::Key {
                    owner: entry.owner.clone(),
                    role: entry.role,
                });
            }
        }
        found
    }
}

/// A freshly made key and the line that records it.
pub struct NewKey {
    /// The key itself: shown once, never stored.
    pub key: String,
    /// `NAME ROLE HASH`, as appended to the file.
    pub line: String,
}

/// Makes a key for `owner` with `role` (32 random bytes from the system) and appends only its
/// hash to `path` (created with mode 0600 if missing). Returns the key to show once.
pub fn add_key(path: &Path, owner: &Owner, role: Role) -> Result<NewKey, KeysFileError> {
    let mut bytes = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeysFileError::Random)?;
    let key = format!("{KEY_PREFIX}{}", hex::encode(&bytes));
    let line = format!("{owner} {} {}", role.as_str(), hex::encode(&hash_of(&key)));
    let write_error = |source| KeysFileError::Write {
        path: path.to_owned(),
        source,
    };
    // A file whose last line has no newline would glue the new line onto it.
    let needs_newline = match std::fs::read(path) {
        Ok(existing) => existing.last().is_some_and(|&b| b != b'\n'),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(KeysFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(write_error)?;
    let text = format!("{}{line}\n", if needs_newline { "\n" } else { "" });
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(NewKey { key, line })
}

/// The SHA-256 of a key as presented.
fn hash_of(key: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, key.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Equality of two hashes in time independent of where they differ.
fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_added_is_found_and_only_its_hash_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# team keys\nops admin ").unwrap();
        let err = KeyFile::read(&path).unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
        std::fs::write(&path, "# team keys").unwrap();
        let alice = add_key(&path, &Owner::parse("alice").unwrap(), Role::User).unwrap();
        let root = add_key(&path, &Owner::parse("root").unwrap(), Role::Admin).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&alice.key) && !text.contains(&root.key));
        assert!(text.starts_with("# team keys\nalice user "), "{text}");
        let file = KeyFile::read(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(
            file.access_of(&root.key),
            Some(Access::Key {
                owner: Owner::parse("root").unwrap(),
                role: Role::Admin
            })
        );
        assert!(file.access_of(&alice.key[..alice.key.len() - 1]).is_none());
        assert!(file.access_of("").is_none());
        assert!(alice.key.starts_with(KEY_PREFIX) && alice.key.len() == 6 + 64);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let path = Path::new("keys");
        for text in [
            "alice user 00",
            "alice owner 0000000000000000000000000000000000000000000000000000000000000000",
            "al ice user 0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let err = KeyFile::parse(path, &format!("\n{text}\n")).unwrap_err();
            assert!(err.to_string().starts_with("keys:2:"), "{err}");
        }
    }
}
