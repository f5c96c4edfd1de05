//! The directory's snapshot: the whole `Catalog` (index, vocabularies, every card's entry and
//! compressed body) in a versioned binary form, so a restart restores it instead of parsing,
//! analysing and splicing every card again (at 100k cards that was ~2 s and ~3.5 s of CPU).
//!
//! Layout, little-endian, written by each struct's own `encode` next to its fields:
//! magic, `FORMAT_VERSION`, `ANALYZER_VERSION`, the fingerprint of the bodies' LZ4 dictionary,
//! the bodies' total length, then the index (words; per slot the field lengths; per term and
//! field the postings' bytes), the per-term counts, per slot the entry (or a free slot), the
//! bodies back to back, and a checksum over all of it. Decoding checks every count, offset and
//! id against what it has read, so bad bytes give an error (logged, then a full load), never a
//! panic. The total up front lets decoding write the bodies to the card file on a second core
//! while this one decodes the index (at 100k cards, 72 MB of bodies beside 30 MB of index).

use std::sync::Arc;

use super::card_file::CardFile;
use super::catalog::Catalog;

/// What a Baton directory snapshot starts with.
const MAGIC: &[u8; 8] = b"BATONDIR";

/// The encoding's version: bump when any struct's `encode` changes. 2: the bodies' total moved
/// from before the bodies to the header.
pub const FORMAT_VERSION: u32 = 2;

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a directory snapshot")]
    NotASnapshot,
    #[error("snapshot format {found}, this build reads {expected}")]
    Format { found: u32, expected: u32 },
    #[error("snapshot analysed with analyzer version {found}, this build's is {expected}")]
    Analyzer { found: u32, expected: u32 },
    #[error("snapshot bodies compressed against another dictionary")]
    Dictionary,
    #[error("snapshot checksum does not match: the bytes are damaged")]
    Checksum,
    #[error("snapshot ends early")]
    Truncated,
    #[error("snapshot malformed: {0}")]
    Malformed(&'static str),
    #[error("snapshot bodies: {0}")]
    Bodies(#[from] super::card_file::CardFileError),
}

/// Encodes the catalog (the caller holds its read lock).
pub fn encode(catalog: &Catalog) -> Result<Vec<u8>, SnapshotError> {
    let mut w = Writer::default();
    w.out.extend_from_slice(MAGIC);
    w.u32(FORMAT_VERSION);
    w.u32(super::analyzer::ANALYZER_VERSION);
    w.u64(fingerprint(Catalog::dictionary()));
    w.u64(catalog.body_bytes());
    catalog.encode(&mut w)?;
    let sum = fingerprint(&w.out);
    w.u64(sum);
    Ok(w.out)
}

/// A catalog from a snapshot `encode` wrote, its bodies in a fresh card file.
pub fn decode(bytes: &[u8]) -> Result<Catalog, SnapshotError> {
    let (body, sum) = bytes
        .split_last_chunk::<8>()
        .ok_or(SnapshotError::NotASnapshot)?;
    if !body.starts_with(MAGIC) {
        return Err(SnapshotError::NotASnapshot);
    }
    if fingerprint(body) != u64::from_le_bytes(*sum) {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader::new(&body[MAGIC.len()..]);
    let format = r.u32()?;
    if format != FORMAT_VERSION {
        return Err(SnapshotError::Format {
            found: format,
            expected: FORMAT_VERSION,
        });
    }
    let analyzer = r.u32()?;
    if analyzer != super::analyzer::ANALYZER_VERSION {
        return Err(SnapshotError::Analyzer {
            found: analyzer,
            expected: super::analyzer::ANALYZER_VERSION,
        });
    }
    if r.u64()? != fingerprint(Catalog::dictionary()) {
        return Err(SnapshotError::Dictionary);
    }
    let total = usize::try_from(r.u64()?).map_err(|_| SnapshotError::Truncated)?;
    let rest = r.take(r.remaining())?;
    let split = rest
        .len()
        .checked_sub(total)
        .ok_or(SnapshotError::Truncated)?;
    let (index, bodies) = rest.split_at(split);
    std::thread::scope(|scope| {
        // The bodies go to a fresh card file on another thread while this one decodes the
        // index; `Catalog::decode` waits for them only once it has read every entry.
        let written = scope.spawn(|| {
            let file = CardFile::new();
            let all = file.append(bodies)?;
            Ok((Arc::new(file), all))
        });
        let mut r = Reader::new(index);
        let catalog = Catalog::decode(&mut r, total, || {
            written
                .join()
                .unwrap_or(Err(SnapshotError::Malformed("the body writer panicked")))
        })?;
        if !r.is_done() {
            return Err(SnapshotError::Malformed("bytes after the catalog"));
        }
        Ok(catalog)
    })
}

/// A 64-bit hash of `bytes`, eight at a time (a checksum against damage, not an adversary:
/// whoever can write the database can write any card).
fn fingerprint(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x2545_F491_4F6C_DD1D ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(eight))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^ (h >> 31)
}

/// Appends the snapshot's primitive values.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// What was written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// One byte.
    pub fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    /// Four bytes.
    pub fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Eight bytes.
    pub fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Eight bytes.
    pub fn i64(&mut self, value: i64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Eight bytes, the float's bits (so it reads back exactly).
    pub fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    /// A variable-length integer, 7 bits a byte: the many small counts and lengths.
    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    /// A length, then the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// Raw bytes, their length said elsewhere.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// Reads what `Writer` wrote, every read checked against the end.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Whether everything was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// How many bytes are left: the most elements a count read now can honestly have.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(SnapshotError::Truncated)?;
        self.at = end;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    /// Four bytes.
    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut four = [0u8; 4];
        four.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(four))
    }

    /// Eight bytes.
    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(eight))
    }

    /// Eight bytes.
    pub fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(self.u64()? as i64)
    }

    /// Eight bytes as a float's bits.
    pub fn f64(&mut self) -> Result<f64, SnapshotError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A variable-length integer.
    pub fn varint(&mut self) -> Result<u64, SnapshotError> {
        let (mut value, mut shift) = (0_u64, 0_u32);
        loop {
            let byte = self.u8()?;
            if shift > 63 {
                return Err(SnapshotError::Malformed("variable-length integer too long"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A variable-length integer that must fit a `u32`.
    pub fn varint_u32(&mut self) -> Result<u32, SnapshotError> {
        u32::try_from(self.varint()?).map_err(|_| SnapshotError::Malformed("count too large"))
    }

    /// A count of elements of at least `min_bytes` bytes each, checked against what is left.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, SnapshotError> {
        let n = usize::try_from(self.varint()?).map_err(|_| SnapshotError::Truncated)?;
        if n.saturating_mul(min_bytes.max(1)) > self.remaining() {
            return Err(SnapshotError::Truncated);
        }
        Ok(n)
    }

    /// A length, then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = usize::try_from(self.varint()?).map_err(|_| SnapshotError::Truncated)?;
        self.take(n)
    }

    /// A length, then that many bytes of UTF-8.
    pub fn str(&mut self) -> Result<&'a str, SnapshotError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| SnapshotError::Malformed("text not UTF-8"))
    }
}

/// Reads a run of 7-bit groups as a `u32` from `bytes` at `*at`, checked (for the byte forms
/// that `TermSet` and `TagList` decode): `None` when it is cut short or too long.
pub fn varint_u32_at(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let (mut value, mut shift) = (0_u64, 0_u32);
    loop {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
        shift += 7;
        // Five groups hold 32 bits; a sixth would shift a `u32` out of range when read.
        if shift > 28 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::AgentCard;
    use crate::directory::Directory;

    fn card(id: &str, words: &str) -> AgentCard {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("Agent {id}"), "url": "http://127.0.0.1:9/",
            "description": words, "rating": 3.5,
            "skills": [{"id": "s", "name": "Skill", "description": words,
                        "tags": ["lookup", words.split(' ').next().unwrap_or("x")],
                        "examples": [format!("please {words}")]}]
        }))
        .expect("card")
    }

    fn directory() -> Directory {
        let directory = Directory::new();
        let cards: Vec<AgentCard> = (0..40)
            .map(|i| {
                card(
                    &format!("a{i:02}"),
                    ["weather forecast", "currency rates", "definitions of words"][i % 3],
                )
            })
            .collect();
        directory.upsert(cards).expect("upsert");
        directory.remove("a07").expect("remove");
        directory
    }

    #[test]
    fn a_catalog_reads_back_as_it_was_and_bad_bytes_never_panic() {
        let directory = directory();
        let bytes = encode(&directory.read().expect("read")).expect("encoded");
        let restored = decode(&bytes).expect("decoded");
        assert_eq!(restored.len(), 39);
        let again = encode(&restored).expect("encoded again");
        assert!(again == bytes, "decode then encode gives the same bytes");
        let terms = ["weather".to_owned(), "rate".to_owned()];
        let mut expected = directory.read().expect("read").score(&terms, &[]);
        let mut got = restored.score(&terms, &[]);
        expected.sort_by_key(|a| a.0);
        got.sort_by_key(|a| a.0);
        assert_eq!(got, expected);

        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut damaged = bytes.clone();
        damaged[bytes.len() / 2] ^= 0x55;
        assert!(matches!(decode(&damaged), Err(SnapshotError::Checksum)));
        // Every byte changed, the checksum made to match: the decoder itself must refuse (or
        // read something consistent), never panic or leave a catalog that panics when used.
        for at in MAGIC.len()..bytes.len() - 8 {
            for flip in [0x01_u8, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= flip;
                let (body, _) = bad.split_at(bad.len() - 8);
                let sum = fingerprint(body).to_le_bytes();
                let len = bad.len();
                bad[len - 8..].copy_from_slice(&sum);
                if let Ok(mut catalog) = decode(&bad) {
                    catalog.score(&terms, &["lookup".to_owned()]);
                    let ids: Vec<String> = catalog.after(None).map(|e| e.id.to_string()).collect();
                    for id in ids.iter().take(3) {
                        catalog.remove(id);
                    }
                }
            }
        }
    }
}
