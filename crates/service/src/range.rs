//! `Range: bytes=...` headers, reduced to what a chunk read (file server)
//! and a file read (`GET /v1/files`, directory service) need.
//!
//! One range per request: `bytes=a-b`, `bytes=a-` and `bytes=-n`. A header we
//! do not understand (another unit, several ranges, garbage) is ignored and
//! the whole body is sent, as RFC 9110 allows.

use std::ops::Range;

/// What to send for a `Range` header against a body of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200.
    Whole,
    /// Send these bytes with 206.
    Partial(Range<u64>),
    /// The range lies outside the body: 416.
    Unsatisfiable,
}

/// Interprets `header` (the value of `Range`, if any) for a body of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match number(last) {
            // An empty suffix, or any suffix of an empty chunk, selects nothing.
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(suffix) => RangeRequest::Partial(len.saturating_sub(suffix)..len),
            None => RangeRequest::Whole,
        },
        // `bytes=a-`: from a to the end.
        (false, true) => match number(first) {
            Some(start) if start < len => RangeRequest::Partial(start..len),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Whole,
        },
        // `bytes=a-b`: a through b inclusive, b clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start > end => RangeRequest::Whole,
            (Some(start), Some(end)) if start < len => RangeRequest::Partial(start..end.saturating_add(1).min(len)),
            (Some(_), Some(_)) => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_interpreted_like_rfc_9110() {
        use RangeRequest::*;
        let cases: &[(Option<&str>, u64, RangeRequest)] = &[
            (None, 10, Whole),
            (Some("bytes=0-3"), 10, Partial(0..4)),
            (Some("bytes=2-2"), 10, Partial(2..3)),
            (Some("bytes=5-"), 10, Partial(5..10)),
            (Some("bytes=-3"), 10, Partial(7..10)),
            (Some("bytes=-30"), 10, Partial(0..10)),
            (Some("bytes=8-100"), 10, Partial(8..10)),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=10-20"), 10, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=-5"), 0, Unsatisfiable),
            (Some("bytes=5-2"), 10, Whole),
            (Some("bytes=0-1,4-5"), 10, Whole),
            (Some("items=0-1"), 10, Whole),
            (Some("bytes=x-1"), 10, Whole),
            (Some("bytes=+1-2"), 10, Whole),
            (Some("bytes=-"), 10, Whole),
            (Some("bytes=99999999999999999999999-"), 10, Whole),
        ];
        for (header, len, expected) in cases {
            assert_eq!(&parse(*header, *len), expected, "{header:?} of {len}");
        }
    }
}
