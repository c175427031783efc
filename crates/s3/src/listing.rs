//! ListObjects (v1 and V2) over a sorted list of keys: S3's order is
//! lexicographic by the whole key's bytes, which a walk of the tree sorted
//! by name is not ("a-c" < "a/b", but the directory "a" sorts after "a-c"),
//! so the keys are gathered first and sorted as strings.

/// A key, prefix, delimiter or marker as S3 writes it for
/// `encoding-type=url`: form encoding, as AWS does (a space is `+`), every
/// byte but ASCII letters, digits and `-_.*/` as `%XX`.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page<T> {
    /// The objects shown, in key order.
    pub objects: Vec<(String, T)>,
    /// The common prefixes (with a delimiter), in order.
    pub prefixes: Vec<String>,
    /// Where the next page starts (after this key or prefix), if there is more.
    pub next: Option<String>,
}

/// The page of `keys` (sorted, all starting with `prefix`) that follows
/// `after`, at most `max` entries (objects and common prefixes together).
pub fn page<T>(
    keys: Vec<(String, T)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page<T> {
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        next: None,
    };
    let mut count = 0;
    let mut last: Option<String> = None;
    for (key, value) in keys {
        if let Some(after) = after {
            // A marker that is a common prefix skips everything under it.
            if key.as_str() <= after || (delimiter.is_some_and(|d| after.ends_with(d)) && key.starts_with(after)) {
                continue;
            }
        }
        let common = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|at| key[..prefix.len() + at + d.len()].to_string())
        });
        if let Some(common) = &common {
            if page.prefixes.last() == Some(common) {
                continue;
            }
        }
        if count == max {
            page.next = last;
            return page;
        }
        count += 1;
        match common {
            Some(common) => {
                last = Some(common.clone());
                page.prefixes.push(common);
            }
            None => {
                last = Some(key.clone());
                page.objects.push((key, value));
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_is_s3s_form_encoding() {
        assert_eq!(url_encode("quux ab/thud"), "quux+ab/thud");
        assert_eq!(url_encode("asdf+b"), "asdf%2Bb");
        assert_eq!(url_encode("a\nb~é*"), "a%0Ab%7E%C3%A9*");
    }

    fn keys(names: &[&str]) -> Vec<(String, ())> {
        let mut keys: Vec<_> = names.iter().map(|name| (name.to_string(), ())).collect();
        keys.sort();
        keys
    }

    fn names(page: &Page<()>) -> Vec<&str> {
        page.objects.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn order_is_by_whole_key_and_pages_follow_on() {
        let all = keys(&["a/b", "a-c", "b", "a/a/x"]);
        let first = page(all, "", None, None, 2);
        assert_eq!(names(&first), ["a-c", "a/a/x"]);
        assert_eq!(first.next.as_deref(), Some("a/a/x"));
        let second = page(keys(&["a/b", "a-c", "b", "a/a/x"]), "", None, first.next.as_deref(), 2);
        assert_eq!(names(&second), ["a/b", "b"]);
        assert_eq!(second.next, None);
    }

    #[test]
    fn delimiter_groups_common_prefixes_and_a_prefix_marker_skips_them() {
        let all = || {
            keys(&[
                "photos/2024/a.jpg",
                "photos/2024/b.jpg",
                "photos/2025/c.jpg",
                "photos/index",
                "photos/x/y",
            ])
        };
        let page1 = page(all(), "photos/", Some("/"), None, 2);
        assert_eq!(page1.prefixes, ["photos/2024/", "photos/2025/"]);
        assert!(page1.objects.is_empty());
        assert_eq!(page1.next.as_deref(), Some("photos/2025/"));
        let page2 = page(all(), "photos/", Some("/"), page1.next.as_deref(), 2);
        assert_eq!(names(&page2), ["photos/index"]);
        assert_eq!(page2.prefixes, ["photos/x/"]);
        assert_eq!(page2.next, None);
    }
}
