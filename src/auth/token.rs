//! Short-lived access tokens for what a browser cannot send a header with (an `EventSource`, a
//! WebSocket): `POST /api/auth/token` mints one for the key that asks, and the streaming routes
//! take it as `?access_token=`. A token is `hex(role:owner:expires_ms).hex(HMAC-SHA256)`, signed
//! with a secret drawn at start-up and never stored, so a token dies with the process that made it
//! (a restart or another process behind the same balancer asks for a fresh one).

use std::time::Duration;

use ring::hmac;
use ring::rand::SystemRandom;

use super::hex;
use crate::access::{Access, Owner, Role};

/// How long a minted token is accepted.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The process's token secret could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the access-token secret from the system's random source")]
pub struct NoRandom;

/// Mints and checks tokens with this process's secret.
pub struct TokenSigner {
    key: hmac::Key,
}

/// A token and when it stops being accepted.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

impl TokenSigner {
    /// A signer with a fresh random secret.
    pub fn new() -> Result<TokenSigner, NoRandom> {
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).map_err(|_| NoRandom)?;
        Ok(TokenSigner { key })
    }

    /// A token naming `owner` and `role`, accepted until `now_ms + TOKEN_TTL`.
    pub fn mint(&self, owner: &Owner, role: Role, now_ms: i64) -> Minted {
        let ttl = i64::try_from(TOKEN_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now_ms.saturating_add(ttl);
        let payload = format!("{}:{owner}:{expires_at}", role.as_str());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        Minted {
            token: format!(
                "{}.{}",
                hex::encode(payload.as_bytes()),
                hex::encode(tag.as_ref())
            ),
            expires_at,
        }
    }

    /// The access `token` gives at `now_ms`: `None` unless this process signed it and it has not
    /// expired. The signature is checked (in constant time) before anything in it is believed.
    pub fn access_of(&self, token: &str, now_ms: i64) -> Option<Access> {
        let (payload, tag) = token.split_once('.')?;
        let payload = hex::decode(payload)?;
        let tag = hex::decode(tag)?;
        hmac::verify(&self.key, &payload, &tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut fields = payload.splitn(3, ':');
        let role = Role::parse(fields.next()?)?;
        let owner = Owner::parse(fields.next()?).ok()?;
        let expires_at: i64 = fields.next()?.parse().ok()?;
        (now_ms < expires_at).then_some(Access::Key { owner, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_key_until_it_expires_and_only_here() {
        let signer = TokenSigner::new().unwrap();
        let other = TokenSigner::new().unwrap();
        let alice = Owner::parse("alice").unwrap();
        let minted = signer.mint(&alice, Role::User, 1_000);
        let expected = Access::Key {
            owner: alice,
            role: Role::User,
        };
        assert_eq!(signer.access_of(&minted.token, 1_001), Some(expected));
        assert_eq!(signer.access_of(&minted.token, minted.expires_at), None);
        assert_eq!(other.access_of(&minted.token, 1_001), None);
        // A token whose payload was changed (user → admin) fails its signature.
        let (_, tag) = minted.token.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            hex::encode(format!("admin:alice:{}", minted.expires_at).as_bytes())
        );
        assert_eq!(signer.access_of(&forged, 1_001), None);
        assert_eq!(signer.access_of("garbage", 1_001), None);
    }
}
