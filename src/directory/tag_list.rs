//! `TagList`: a card's skill tags as given, in one allocation (each tag's length, then its
//! bytes) rather than a boxed string per tag: three to nine tags a card were ~150 bytes with
//! the allocator's overhead, for a list the search API's capability filter only scans.

use super::snapshot::{Reader, SnapshotError, Writer, varint_u32_at};

/// Tags as given, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagList(Box<[u8]>);

impl TagList {
    /// The list of `tags`.
    pub fn new<'a>(tags: impl IntoIterator<Item = &'a str>) -> Self {
        let mut bytes = Vec::new();
        for tag in tags {
            let mut length = tag.len();
            while length >= 0x80 {
                bytes.push((length as u8 & 0x7f) | 0x80);
                length >>= 7;
            }
            bytes.push(length as u8);
            bytes.extend_from_slice(tag.as_bytes());
        }
        TagList(bytes.into_boxed_slice())
    }

    /// Writes the list for a snapshot.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }

    /// Reads a list `encode` wrote, checking each tag's length and UTF-8.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let bytes = r.bytes()?;
        let mut at: usize = 0;
        while at < bytes.len() {
            let length = varint_u32_at(bytes, &mut at)
                .ok_or(SnapshotError::Malformed("tag list cut short"))?;
            let tag = at
                .checked_add(length as usize)
                .and_then(|end| bytes.get(at..end))
                .ok_or(SnapshotError::Malformed("tag past the list's end"))?;
            std::str::from_utf8(tag).map_err(|_| SnapshotError::Malformed("tag not UTF-8"))?;
            at += tag.len();
        }
        Ok(TagList(bytes.into()))
    }

    /// The tags, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (mut length, mut shift) = (0_usize, 0_u32);
            loop {
                let (&byte, tail) = rest.split_first()?;
                rest = tail;
                length |= usize::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            let (tag, tail) = rest.split_at_checked(length)?;
            rest = tail;
            // Written from `&str`s above, so always UTF-8.
            std::str::from_utf8(tag).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_back_as_given() {
        let long = "x".repeat(300);
        let tags = ["weather", "", "Größe", long.as_str(), "a"];
        let list = TagList::new(tags);
        assert_eq!(list.iter().collect::<Vec<_>>(), tags);
        assert_eq!(TagList::new([]).iter().count(), 0);
    }
}
