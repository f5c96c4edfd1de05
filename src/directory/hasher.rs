//! `WordHasher`: FNV-1a for the directory's word maps (the term interner, the stem cache).
//! Their keys are short words hashed millions of times at start-up, where SipHash's
//! resistance to crafted collisions cost more than anything else: a word map is at most a few
//! hundred thousand entries, so a flood of colliding words slows only the card that sends them.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by words, hashed with FNV-1a.
pub type WordMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// 64-bit FNV-1a.
pub struct WordHasher(u64);

impl Default for WordHasher {
    fn default() -> Self {
        WordHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_again() {
        let mut map: WordMap<Box<str>, u32> = WordMap::default();
        for (i, w) in ["flight", "weather", "flights", ""].iter().enumerate() {
            map.insert((*w).into(), i as u32);
        }
        assert_eq!(map.get("flights"), Some(&2));
        assert_eq!(map.get(""), Some(&3));
        assert_eq!(map.get("flig"), None);
    }
}
