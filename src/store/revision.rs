//! Card revisions: a random, non-zero number the store sets on every write of a card, so a
//! directory restored from a snapshot tells the cards written since (another revision) from
//! those it already holds, without comparing bodies. Random rather than counted: several
//! processes write one PostgreSQL, and none needs to agree with another on a counter.

use std::sync::atomic::{AtomicI64, Ordering};

use ring::rand::{SecureRandom, SystemRandom};

/// A fresh revision: random, never 0 (nor NULL, which means "unknown").
pub fn new_revision() -> i64 {
    let mut bytes = [0u8; 8];
    let random = match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => i64::from_le_bytes(bytes),
        // No system randomness: a per-process sequence from the clock still differs from every
        // revision this directory holds with overwhelming likelihood.
        Err(_) => fallback(),
    };
    if random == 0 { 1 } else { random }
}

fn fallback() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let step = NEXT.fetch_add(1, Ordering::Relaxed);
    super::now_ms().wrapping_mul(1_000_003).wrapping_add(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_non_zero_and_differ() {
        let a = new_revision();
        let b = new_revision();
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }
}
