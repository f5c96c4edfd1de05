//! The webhook signature: `X-Baton-Signature: sha256=<hex HMAC-SHA256 of the body>`, keyed by
//! `--webhook-secret`, so a receiver can tell Baton's POSTs from anyone else's.

use std::fmt;
use std::str::FromStr;

use ring::hmac;

/// The shared secret webhooks are signed with. Its `Debug` is redacted, so settings can be
/// logged.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// The key for signing.
    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.as_bytes())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// A blank secret: refused, since it would sign with an empty key and look safe.
#[derive(Debug, thiserror::Error)]
#[error("the webhook secret must not be blank")]
pub struct BlankSecret;

impl FromStr for WebhookSecret {
    type Err = BlankSecret;

    fn from_str(secret: &str) -> Result<Self, Self::Err> {
        if secret.trim().is_empty() {
            Err(BlankSecret)
        } else {
            Ok(WebhookSecret(secret.to_owned()))
        }
    }
}

/// Signs bodies with one secret (the key is derived once).
pub struct Signer {
    key: hmac::Key,
}

impl Signer {
    /// A signer keyed by `secret`.
    pub fn new(secret: &WebhookSecret) -> Self {
        Signer { key: secret.key() }
    }

    /// The `X-Baton-Signature` value for `body`: `sha256=` and the lower-case hex HMAC.
    pub fn sign(&self, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, body);
        format!("sha256={}", hex(tag.as_ref()))
    }
}

/// Lower-case hex, as receivers compare it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let signer = Signer::new(&"Jefe".parse().expect("secret"));
        assert_eq!(
            signer.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refuses_a_blank_secret_and_hides_it() {
        assert!(" ".parse::<WebhookSecret>().is_err());
        let secret: WebhookSecret = "s3cret".parse().expect("secret");
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
