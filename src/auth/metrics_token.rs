//! `--metrics-token`: the bearer token a Prometheus scraper sends to `/metrics`, separate from the
//! API keys (a scraper's config holds it, and it opens nothing but the metrics).

use std::fmt;
use std::str::FromStr;

use ring::digest;

/// The metrics token. Its `Debug` is redacted, so settings can be logged.
#[derive(Clone)]
pub struct MetricsToken(String);

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

/// A blank token: refused, since it would look like protection and be none.
#[derive(Debug, thiserror::Error)]
#[error("the metrics token must not be blank")]
pub struct BlankToken;

impl FromStr for MetricsToken {
    type Err = BlankToken;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        if token.trim().is_empty() {
            Err(BlankToken)
        } else {
            Ok(MetricsToken(token.to_owned()))
        }
    }
}

impl MetricsToken {
    /// Whether `presented` is this token, compared as SHA-256 digests in constant time (the
    /// digests have one length whatever was sent).
    pub fn accepts(&self, presented: &str) -> bool {
        let mine = digest::digest(&digest::SHA256, self.0.as_bytes());
        let theirs = digest::digest(&digest::SHA256, presented.as_bytes());
        let difference = mine
            .as_ref()
            .iter()
            .zip(theirs.as_ref())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(difference) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_itself() {
        let token: MetricsToken = "s3cret".parse().unwrap();
        assert!(token.accepts("s3cret"));
        assert!(!token.accepts("s3cre"));
        assert!(!token.accepts(""));
        assert!(" ".parse::<MetricsToken>().is_err());
    }
}
