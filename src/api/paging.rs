//! Paging for every list the API answers a page at a time (threads, agents, search, turns): the
//! `limit` parameter and the opaque cursor, read and written the same way everywhere, so a bad
//! one is the same 422 whichever list it was sent to.

use super::AppError;

/// Longest cursor accepted (hex, so twice the bytes of the position it carries).
const MAX_CURSOR_LEN: usize = 600;

/// `limit` as sent (text, so a bad value is a 422 naming it): `default` when absent, else an
/// integer from 1 to `max`.
pub fn parse_limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, AppError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            AppError::Invalid(format!(
                "limit must be an integer from 1 to {max}, got {text:?}"
            ))
        })
}

/// A position as the client sees it: opaque, its bytes in hex (URL-safe, no encoding crate).
pub fn encode_cursor(position: &str) -> String {
    position.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Reads back a position `encode_cursor` wrote; anything else is a 422 that tells the client
/// where its cursors come from (`source`: the header or field the list answers with).
pub fn decode_cursor(text: &str, source: &str) -> Result<String, AppError> {
    let bad = || AppError::Invalid(format!("cursor is not one this server gave (use {source})"));
    if !text.len().is_multiple_of(2) || text.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_anything_else_is_refused() {
        let cursor = encode_cursor("1764115200123.trip-42");
        assert_eq!(
            decode_cursor(&cursor, "next_cursor").ok().as_deref(),
            Some("1764115200123.trip-42")
        );
        for bad in ["abc", "zz", "ff", &"00".repeat(400)] {
            assert!(decode_cursor(bad, "next_cursor").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_is_an_integer_within_its_bounds() {
        assert_eq!(parse_limit(None, 20, 100).ok(), Some(20));
        assert_eq!(parse_limit(Some("100"), 20, 100).ok(), Some(100));
        for bad in ["0", "101", "-1", "ten"] {
            assert!(parse_limit(Some(bad), 20, 100).is_err(), "{bad}");
        }
    }
}
