//! `Postings`: one (term, field)'s cards, sorted by slot, each with how often it has the term,
//! as bytes: the gap from the previous slot shifted left once, its low bit set when a term
//! frequency other than one follows, each a variable-length integer (7 bits a byte). Postings
//! are the bulk of the index; at 100k cards a posting took 6 bytes as a `u32` slot beside a
//! `u16` count, and about 1.3 here (gaps are small, and most terms occur once in a field).
//! Scoring reads a list front to back; a card replaced or removed changes one block of the list
//! (`BLOCK`), found by binary search over the blocks' slot ranges, so it costs the same at 100k
//! cards as at 1k (decoding a whole list for it took ~13 ms a card at 100k).

use super::index::CardSlot;
use super::snapshot::{Reader as SnapshotReader, SnapshotError, Writer};

/// Postings appended to a block before a new one is started: a change in the middle of a list
/// decodes and re-encodes one block (at most `MAX_BLOCK` postings), never the whole list, so
/// replacing or removing a card costs the same whatever the directory's size.
const BLOCK: usize = 128;

/// A block that grows past this (cards inserted into its range) is split in two.
const MAX_BLOCK: usize = 2 * BLOCK;

/// Sorted card slots with their term frequencies, in blocks of consecutive slots.
#[derive(Debug, Default)]
pub struct Postings {
    blocks: Vec<Block>,
    len: u32,
}

/// A run of postings: the first and last slot it holds, and its postings as gaps from the one
/// before (the first one's gap counted from `first`, so zero).
#[derive(Debug)]
struct Block {
    first: CardSlot,
    last: CardSlot,
    len: u16,
    bytes: Vec<u8>,
}

impl Block {
    fn of(postings: &[(CardSlot, u16)]) -> Block {
        let first = postings.first().map_or(0, |p| p.0);
        let mut block = Block {
            first,
            last: first,
            len: 0,
            bytes: Vec::with_capacity(postings.len() + postings.len() / 4),
        };
        for &(slot, tf) in postings {
            block.push(slot, tf);
        }
        block
    }

    /// Appends a posting above `last` (or the first one).
    fn push(&mut self, slot: CardSlot, tf: u16) {
        let from = if self.len == 0 { self.first } else { self.last };
        encode(&mut self.bytes, slot - from, tf);
        self.last = slot;
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = (CardSlot, u16)> + '_ {
        let mut reader = Reader {
            bytes: &self.bytes,
            at: 0,
        };
        let mut slot = self.first;
        std::iter::from_fn(move || {
            let (gap, tf) = reader.next()?;
            slot += gap;
            Some((slot, tf))
        })
    }

    /// The block with `rest` appended: the encoded postings after its first, as a snapshot's
    /// stream has them (its `last` and `len` already counted).
    fn with_copied(mut self, rest: &[u8]) -> Block {
        self.bytes.reserve_exact(rest.len());
        self.bytes.extend_from_slice(rest);
        self
    }

    fn decoded(&self) -> Vec<(CardSlot, u16)> {
        self.iter().collect()
    }
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
        match self.blocks.last_mut() {
            None => self.blocks.push(Block::of(&[(slot, tf)])),
            // New cards usually take the highest slot: an append.
            Some(last) if slot > last.last => {
                if usize::from(last.len) < BLOCK {
                    last.push(slot, tf);
                } else {
                    self.blocks.push(Block::of(&[(slot, tf)]));
                }
            }
            Some(_) => {
                // A reused (freed) slot: into the first block whose range reaches it.
                let i = self.blocks.partition_point(|b| b.last < slot);
                let mut postings = self.blocks[i].decoded();
                let Err(at) = postings.binary_search_by_key(&slot, |p| p.0) else {
                    return;
                };
                postings.insert(at, (slot, tf));
                if postings.len() > MAX_BLOCK {
                    let (low, high) = postings.split_at(postings.len() / 2);
                    self.blocks.splice(i..=i, [Block::of(low), Block::of(high)]);
                } else {
                    self.blocks[i] = Block::of(&postings);
                }
            }
        }
        self.len += 1;
    }

    /// Takes the card in `slot` out, giving the room back when it was the last.
    pub fn remove(&mut self, slot: CardSlot) {
        let i = self.blocks.partition_point(|b| b.last < slot);
        let Some(block) = self.blocks.get(i).filter(|b| b.first <= slot) else {
            return;
        };
        let mut postings = block.decoded();
        let Ok(at) = postings.binary_search_by_key(&slot, |p| p.0) else {
            return;
        };
        postings.remove(at);
        if postings.is_empty() {
            self.blocks.remove(i);
        } else {
            self.blocks[i] = Block::of(&postings);
        }
        self.len -= 1;
        if self.len == 0 {
            *self = Postings::default();
        }
    }

    /// Gives back the room the list grew into.
    pub fn shrink(&mut self) {
        for block in &mut self.blocks {
            block.bytes.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
    }

    /// The list's size in bytes, blocks' own fields included.
    pub fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.bytes.len() + std::mem::size_of::<Block>())
            .sum()
    }

    /// The cards and their term frequencies, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (CardSlot, u16)> + '_ {
        self.blocks.iter().flat_map(Block::iter)
    }

    /// Calls `visit` with each card and its term frequency, by slot: what scoring walks, as
    /// plain loops over each block's bytes (a one-byte posting, the common case, is read without
    /// the general varint path), where `iter`'s nested iterators cost a third of a search.
    pub fn for_each(&self, mut visit: impl FnMut(CardSlot, u16)) {
        for block in &self.blocks {
            let mut reader = Reader {
                bytes: &block.bytes,
                at: 0,
            };
            let mut slot = block.first;
            while let Some(&byte) = reader.bytes.get(reader.at) {
                let (gap, tf) = if byte & 0x81 == 0 {
                    reader.at += 1;
                    (CardSlot::from(byte >> 1), 1)
                } else {
                    match reader.next() {
                        Some(posting) => posting,
                        None => break,
                    }
                };
                slot += gap;
                visit(slot, tf);
            }
        }
    }

    /// The highest slot listed (0 when none).
    fn last(&self) -> CardSlot {
        self.blocks.last().map_or(0, |b| b.last)
    }
}

impl Postings {
    /// Writes the list for a snapshot: count, highest slot, then every posting as one run of
    /// gaps from zero (the blocks are rebuilt on reading).
    pub fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(self.len));
        w.varint(u64::from(self.last()));
        let mut stream = Vec::with_capacity(self.bytes());
        let mut previous = 0;
        for (slot, tf) in self.iter() {
            encode(&mut stream, slot - previous, tf);
            previous = slot;
        }
        w.bytes(&stream);
    }

    /// Reads a list `encode` wrote, checking every posting: slots rising, below `slots`, and
    /// the count and highest slot as written (scoring indexes by slot, so nothing unchecked
    /// may reach it).
    pub fn decode(r: &mut SnapshotReader<'_>, slots: usize) -> Result<Self, SnapshotError> {
        let len = r.varint_u32()?;
        let last = r.varint_u32()?;
        let bytes = r.bytes()?;
        let mut reader = Reader { bytes, at: 0 };
        let mut out = Postings::default();
        let (mut count, mut slot) = (0_u32, 0_u32);
        // Blocks are cut from the stream as they are: within a block each posting's gap is the
        // stream's, so its bytes are copied; only a block's first posting is written again (its
        // gap counted from itself, zero).
        let mut block: Option<(Block, usize)> = None;
        while reader.at < bytes.len() {
            let start = reader.at;
            let (gap, tf) = reader
                .next()
                .ok_or(SnapshotError::Malformed("posting cut short"))?;
            if count > 0 && gap == 0 {
                return Err(SnapshotError::Malformed("postings out of order"));
            }
            slot = slot
                .checked_add(gap)
                .filter(|s| (*s as usize) < slots)
                .ok_or(SnapshotError::Malformed("posting past the last slot"))?;
            match &mut block {
                Some((open, _)) if usize::from(open.len) < BLOCK => {
                    open.last = slot;
                    open.len += 1;
                }
                _ => {
                    if let Some((full, from)) = block.take() {
                        out.blocks.push(full.with_copied(&bytes[from..start]));
                    }
                    block = Some((Block::of(&[(slot, tf)]), reader.at));
                }
            }
            count += 1;
        }
        if let Some((last, from)) = block {
            out.blocks.push(last.with_copied(&bytes[from..]));
        }
        out.len = count;
        if count != len || (len > 0 && slot != last) || (len == 0 && last != 0) {
            return Err(SnapshotError::Malformed(
                "postings disagree with their count",
            ));
        }
        Ok(out)
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
        let data: usize = postings.blocks.iter().map(|b| b.bytes.len()).sum();
        assert_eq!(data, postings.len(), "gap 3, frequency 1: one byte");
    }

    /// Appends make full blocks; inserts into their middle split them; every change leaves the
    /// blocks in order, disjoint and bounded.
    #[test]
    fn blocks_stay_ordered_bounded_and_split_when_filled() {
        let mut postings = Postings::default();
        let mut model: BTreeMap<CardSlot, u16> = BTreeMap::new();
        for slot in (0..20_000).step_by(2) {
            postings.insert(slot, 1);
            model.insert(slot, 1);
        }
        assert_eq!(postings.blocks.len(), 10_000 / BLOCK + 1);
        // Odd slots into one region, enough to split its block several times.
        for slot in (1001..3001).step_by(2) {
            postings.insert(slot, 3);
            model.insert(slot, 3);
        }
        for slot in (0..20_000).step_by(7) {
            postings.remove(slot);
            model.remove(&slot);
        }
        let check = |p: &Postings| {
            for pair in p.blocks.windows(2) {
                assert!(pair[0].last < pair[1].first, "blocks disjoint, in order");
            }
            for block in &p.blocks {
                assert!(block.len > 0 && usize::from(block.len) <= MAX_BLOCK);
                assert_eq!(block.iter().count(), usize::from(block.len));
                assert_eq!(block.iter().last().map(|p| p.0), Some(block.last));
                assert_eq!(block.iter().next().map(|p| p.0), Some(block.first));
            }
        };
        check(&postings);
        assert_eq!(
            postings.iter().collect::<Vec<_>>(),
            model.iter().map(|(s, t)| (*s, *t)).collect::<Vec<_>>()
        );
        assert_eq!(postings.len(), model.len());
        let mut visited = Vec::new();
        postings.for_each(|slot, tf| visited.push((slot, tf)));
        assert_eq!(visited, postings.iter().collect::<Vec<_>>());

        // Through a snapshot: the same postings, cut into full blocks, still changeable.
        let mut w = Writer::default();
        postings.encode(&mut w);
        let written = w.into_bytes();
        let mut read =
            Postings::decode(&mut SnapshotReader::new(&written), 30_000).expect("reads back");
        check(&read);
        assert!(
            read.blocks[..read.blocks.len() - 1]
                .iter()
                .all(|b| usize::from(b.len) == BLOCK)
        );
        assert_eq!(
            read.iter().collect::<Vec<_>>(),
            postings.iter().collect::<Vec<_>>()
        );
        assert_eq!(read.len(), postings.len());
        // 14 was removed above (a multiple of 7), 1003 was inserted and kept.
        read.insert(14, 9);
        read.remove(1003);
        model.insert(14, 9);
        model.remove(&1003);
        check(&read);
        assert_eq!(
            read.iter().collect::<Vec<_>>(),
            model.iter().map(|(s, t)| (*s, *t)).collect::<Vec<_>>()
        );
        assert!(
            Postings::decode(&mut SnapshotReader::new(&written), 19_000).is_err(),
            "a slot past the last is refused"
        );
    }
}
