//! Who is asking, and what they may see: the owner name of an API key, its role, and the access a
//! request carries through the API to the engine. A leaf: it imports nothing of Baton's, so the
//! state (which records a thread's owner), the engine and the API all share it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name an API key is issued to (the keys file's first column): what a thread records as
/// its owner. Letters, digits, `_`, `-`, `.` and `@`, 1 to 64 of them, so it fits a log line, a
/// signed token and a file column without quoting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(String);

/// Longest owner name.
pub const MAX_OWNER_LEN: usize = 64;

/// An owner name that breaks the rules of [`Owner`].
#[derive(Debug, thiserror::Error)]
#[error("an owner name is 1 to 64 letters, digits, '_', '-', '.' or '@' (got {0:?})")]
pub struct BadOwner(pub String);

impl Owner {
    /// `name` as an owner, if it follows the rules.
    pub fn parse(name: &str) -> Result<Owner, BadOwner> {
        let usable = !name.is_empty()
            && name.len() <= MAX_OWNER_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
        if usable {
            Ok(Owner(name.to_owned()))
        } else {
            Err(BadOwner(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key may do: a user sees its own threads; an admin sees every thread and changes the
/// agent directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The keys file's and the token's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// `user` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The access one request has: everything when authentication is off, else what its key's
/// owner and role allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Authentication is off (no keys file): every thread and every change, as before keys
    /// existed; threads made so have no owner.
    Open,
    /// A request signed in with a key (or a token minted from one).
    Key { owner: Owner, role: Role },
}

impl Access {
    /// Whether this access may read or change a thread owned by `owner` (`None`: a thread made
    /// while authentication was off). Only the owner and admins may; to anyone else the thread
    /// does not exist.
    pub fn may_see(&self, owner: Option<&Owner>) -> bool {
        match self {
            Access::Open => true,
            Access::Key {
                role: Role::Admin, ..
            } => true,
            Access::Key {
                owner: mine,
                role: Role::User,
            } => owner == Some(mine),
        }
    }

    /// The owner a thread made with this access gets.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Access::Open => None,
            Access::Key { owner, .. } => Some(owner),
        }
    }

    /// Whose threads a list shows: `None` for every thread (auth off, an admin), or one owner's.
    pub fn list_filter(&self) -> Option<&Owner> {
        match self {
            Access::Key {
                owner,
                role: Role::User,
            } => Some(owner),
            _ => None,
        }
    }

    /// Whether this access may change the agent directory (register, discover, rate, remove).
    pub fn may_change_directory(&self) -> bool {
        matches!(
            self,
            Access::Open
                | Access::Key {
                    role: Role::Admin,
                    ..
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, role: Role) -> Access {
        Access::Key {
            owner: Owner::parse(name).unwrap(),
            role,
        }
    }

    #[test]
    fn owners_see_their_own_admins_all_users_nothing_else() {
        let alice = Owner::parse("alice").unwrap();
        let bob = Owner::parse("bob").unwrap();
        assert!(key("alice", Role::User).may_see(Some(&alice)));
        assert!(!key("alice", Role::User).may_see(Some(&bob)));
        assert!(!key("alice", Role::User).may_see(None));
        assert!(key("root", Role::Admin).may_see(Some(&bob)));
        assert!(key("root", Role::Admin).may_see(None));
        assert!(Access::Open.may_see(Some(&bob)));
        assert!(!key("alice", Role::User).may_change_directory());
        assert!(key("root", Role::Admin).may_change_directory());
    }

    #[test]
    fn owner_names_are_plain() {
        assert!(Owner::parse("ops-team.eu@acme_1").is_ok());
        for bad in ["", "a b", "a:b", "ünï", &"x".repeat(65)] {
            assert!(Owner::parse(bad).is_err(), "{bad:?}");
        }
    }
}
