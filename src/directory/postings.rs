//! `Postings`: one (term, field)'s cards, sorted by slot, each with how often it has the term,
//! as bytes: the gap from the previous slot shifted left once, its low bit set when a term
//! frequency other than one follows, each a variable-length integer (7 bits a byte). Postings
//! are the bulk of the index; at 100k cards a posting took 6 bytes as a `u32` slot beside a
//! `u16` count, and about 1.3 here (gaps are small, and most terms occur once in a field).
//! Scoring reads a list front to back, which this form serves as fast; nothing looks a slot up.

use super::index::CardSlot;
use super::snapshot::{Reader as SnapshotReader, SnapshotError, Writer};

/// Sorted card slots with their term frequencies.
#[derive(Debug, Default)]
pub struct Postings {
    bytes: Vec<u8>,
    len: u32,
    /// The highest slot listed: new cards usually take a higher one, an append.
    last: CardSlot,
}

/// A slot's neighbourhood in the list (`Postings::around`).
struct Around {
    before: CardSlot,
    found: Option<At>,
    after: Option<At>,
}

/// One decoded posting and where its bytes lie.
struct At {
    slot: CardSlot,
    start: usize,
    end: usize,
}

impl Postings {
    /// How many cards.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the card in `slot` with its term frequency; nothing if it is already listed.
    pub fn insert(&mut self, slot: CardSlot, tf: u16) {
        if self.len == 0 || slot > self.last {
            let previous = if self.len == 0 { 0 } else { self.last };
            encode(&mut self.bytes, slot - previous, tf);
            self.last = slot;
            self.len += 1;
            return;
        }
        // A reused (freed) slot: into the middle, re-encoding the gap of the one after it.
        let around = self.around(slot);
        if around.found.is_some() {
            return;
        }
        let Some(after) = around.after else {
            return; // below `last`, so some posting comes after it
        };
        let tf_after = self.tf_at(after.start);
        let mut replacement = Vec::with_capacity(8);
        encode(&mut replacement, slot - around.before, tf);
        encode(&mut replacement, after.slot - slot, tf_after);
        self.bytes.splice(after.start..after.end, replacement);
        self.len += 1;
    }

    /// Takes the card in `slot` out, giving the room back when it was the last.
    pub fn remove(&mut self, slot: CardSlot) {
        let around = self.around(slot);
        let Some(gone) = around.found else {
            return;
        };
        self.len -= 1;
        match around.after {
            Some(after) => {
                // The next one's gap now runs from the one before the removed.
                let tf_after = self.tf_at(after.start);
                let mut replacement = Vec::with_capacity(8);
                encode(&mut replacement, after.slot - around.before, tf_after);
                self.bytes.splice(gone.start..after.end, replacement);
            }
            None if self.len == 0 => *self = Postings::default(),
            None => {
                self.bytes.truncate(gone.start);
                self.last = around.before;
            }
        }
    }

    /// Where `slot` is or would go: the slot before it (0 when none), its own posting, and
    /// the posting after it.
    fn around(&self, slot: CardSlot) -> Around {
        let mut around = Around {
            before: 0,
            found: None,
            after: None,
        };
        for at in self.positions() {
            if at.slot < slot {
                around.before = at.slot;
            } else if at.slot == slot {
                around.found = Some(at);
            } else {
                around.after = Some(at);
                break;
            }
        }
        around
    }

    /// The list's size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Gives back the room the list grew into.
    pub fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// The cards and their term frequencies, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (CardSlot, u16)> + '_ {
        let mut reader = Reader {
            bytes: &self.bytes,
            at: 0,
        };
        let mut slot: CardSlot = 0;
        std::iter::from_fn(move || {
            let (gap, tf) = reader.next()?;
            slot += gap;
            Some((slot, tf))
        })
    }

    /// Each posting's slot and byte range.
    fn positions(&self) -> impl Iterator<Item = At> + '_ {
        let mut reader = Reader {
            bytes: &self.bytes,
            at: 0,
        };
        let mut slot: CardSlot = 0;
        std::iter::from_fn(move || {
            let start = reader.at;
            let (gap, _) = reader.next()?;
            slot += gap;
            Some(At {
                slot,
                start,
                end: reader.at,
            })
        })
    }

    fn tf_at(&self, start: usize) -> u16 {
        Reader {
            bytes: &self.bytes,
            at: start,
        }
        .next()
        .map_or(1, |(_, tf)| tf)
    }
}

impl Postings {
    /// Writes the list for a snapshot: count, highest slot, bytes.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(self.len));
        w.varint(u64::from(self.last));
        w.bytes(&self.bytes);
    }

    /// Reads a list `encode` wrote, checking every posting: slots rising, below `slots`, and
    /// the count and highest slot as written (scoring indexes by slot, so nothing unchecked
    /// may reach it).
    pub fn decode(r: &mut SnapshotReader<'_>, slots: usize) -> Result<Self, SnapshotError> {
        let len = r.varint_u32()?;
        let last = r.varint_u32()?;
        let bytes = r.bytes()?;
        let mut reader = Reader { bytes, at: 0 };
        let (mut count, mut slot) = (0_u32, 0_u32);
        while reader.at < bytes.len() {
            let (gap, _) = reader
                .next()
                .ok_or(SnapshotError::Malformed("posting cut short"))?;
            if count > 0 && gap == 0 {
                return Err(SnapshotError::Malformed("postings out of order"));
            }
            slot = slot
                .checked_add(gap)
                .filter(|s| (*s as usize) < slots)
                .ok_or(SnapshotError::Malformed("posting past the last slot"))?;
            count += 1;
        }
        if count != len || (len > 0 && slot != last) || (len == 0 && last != 0) {
            return Err(SnapshotError::Malformed(
                "postings disagree with their count",
            ));
        }
        Ok(Postings {
            bytes: bytes.to_vec(),
            len,
            last,
        })
    }
}

/// Appends one posting: the gap with the "frequency follows" bit, then the frequency if not 1.
fn encode(out: &mut Vec<u8>, gap: CardSlot, tf: u16) {
    let flagged = u64::from(gap) << 1 | u64::from(tf != 1);
    varint(out, flagged);
    if tf != 1 {
        varint(out, u64::from(tf));
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes postings from a position.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next posting's gap and term frequency.
    fn next(&mut self) -> Option<(CardSlot, u16)> {
        let flagged = self.varint()?;
        let gap = CardSlot::try_from(flagged >> 1).unwrap_or(CardSlot::MAX);
        let tf = if flagged & 1 == 1 {
            u16::try_from(self.varint()?).unwrap_or(u16::MAX)
        } else {
            1
        };
        Some((gap, tf))
    }

    fn varint(&mut self) -> Option<u64> {
        let (mut value, mut shift) = (0_u64, 0_u32);
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Postings against a `BTreeMap` doing the same inserts and removals, in a mixed order with
    /// gaps large and small and frequencies above one.
    #[test]
    fn behaves_as_a_sorted_map() {
        let mut postings = Postings::default();
        let mut model: BTreeMap<CardSlot, u16> = BTreeMap::new();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
        };
        for round in 0..4000 {
            let slot = if round % 7 == 0 {
                next(1 << 20) as CardSlot
            } else {
                next(300) as CardSlot
            };
            if next(3) == 0 {
                postings.remove(slot);
                model.remove(&slot);
            } else {
                let tf = if next(4) == 0 {
                    next(400) as u16 + 1
                } else {
                    1
                };
                postings.insert(slot, tf);
                model.entry(slot).or_insert(tf);
            }
            assert_eq!(postings.len(), model.len());
        }
        let listed: Vec<(CardSlot, u16)> = postings.iter().collect();
        let expected: Vec<(CardSlot, u16)> = model.into_iter().collect();
        assert_eq!(listed, expected);
        for (slot, _) in expected {
            postings.remove(slot);
        }
        assert!(postings.is_empty() && postings.iter().next().is_none());
        postings.insert(5, 2);
        assert_eq!(postings.iter().collect::<Vec<_>>(), [(5, 2)]);
    }

    #[test]
    fn a_posting_takes_about_a_byte() {
        let mut postings = Postings::default();
        for slot in (0..10_000).step_by(3) {
            postings.insert(slot, 1);
        }
        assert_eq!(
            postings.bytes.len(),
            postings.len(),
            "gap 3, frequency 1: one byte"
        );
    }
}
