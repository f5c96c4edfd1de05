//! `TermSet`: a card's sorted term ids as the gaps between them, each a variable-length
//! integer (7 bits a byte). A card keeps three such sets for fit and removal; as plain `u32`s
//! they were 370 bytes a card, as gaps about a third of that, and reading them is a scan of a
//! few dozen bytes for the 50 hits a search judges.

use super::index::TermId;
use super::snapshot::{Reader, SnapshotError, Writer, varint_u32_at};

/// Sorted, distinct term ids, compactly.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TermSet(Box<[u8]>);

impl TermSet {
    /// The set of `ids`, sorted and distinct (any order would read back, only larger).
    pub fn from_sorted(ids: &[TermId]) -> Self {
        let mut bytes = Vec::with_capacity(ids.len() + ids.len() / 2);
        let mut previous: TermId = 0;
        for &id in ids {
            let mut gap = id.wrapping_sub(previous);
            previous = id;
            while gap >= 0x80 {
                bytes.push((gap as u8 & 0x7f) | 0x80);
                gap >>= 7;
            }
            bytes.push(gap as u8);
        }
        TermSet(bytes.into_boxed_slice())
    }

    /// The ids, in order.
    pub fn iter(&self) -> impl Iterator<Item = TermId> + '_ {
        let mut bytes = self.0.iter();
        let mut previous: TermId = 0;
        std::iter::from_fn(move || {
            let (mut gap, mut shift) = (0_u32, 0_u32);
            loop {
                let byte = *bytes.next()?;
                gap |= u32::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            previous = previous.wrapping_add(gap);
            Some(previous)
        })
    }

    /// Writes the set for a snapshot.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }

    /// Reads a set `encode` wrote, checking that every id is below `terms`.
    pub fn decode(r: &mut Reader<'_>, terms: usize) -> Result<Self, SnapshotError> {
        let bytes = r.bytes()?;
        let (mut at, mut id) = (0_usize, 0_u32);
        while at < bytes.len() {
            let gap = varint_u32_at(bytes, &mut at)
                .ok_or(SnapshotError::Malformed("term set cut short"))?;
            id = id
                .checked_add(gap)
                .filter(|id| (*id as usize) < terms)
                .ok_or(SnapshotError::Malformed("term set names an unknown term"))?;
        }
        Ok(TermSet(bytes.into()))
    }

    /// Whether one of `terms` (sorted) is in the set.
    pub fn contains_any(&self, terms: &[TermId]) -> bool {
        !terms.is_empty() && self.iter().any(|id| terms.binary_search(&id).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_read_back_as_the_ids() {
        let ids = [
            0,
            1,
            2,
            127,
            128,
            300,
            16_383,
            16_384,
            2_000_000,
            TermId::MAX,
        ];
        let set = TermSet::from_sorted(&ids);
        assert_eq!(set.iter().collect::<Vec<_>>(), ids);
        assert!(set.contains_any(&[5, 300]));
        assert!(!set.contains_any(&[5, 301]));
        assert!(!set.contains_any(&[]));
        assert_eq!(TermSet::from_sorted(&[]).iter().count(), 0);
        assert!(
            TermSet::from_sorted(&[1, 2, 3]).0.len() == 3,
            "a byte per small gap"
        );
    }
}
