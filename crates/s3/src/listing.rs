//! ListObjects (v1 and V2) over a sorted list of keys: S3's order is
//! lexicographic by the whole key's bytes, which a walk of the tree sorted
//! by name is not ("a-c" < "a/b", but the directory "a" sorts after "a-c"),
//! so the tree is walked in an order that is (see `walk`), a page at a time.

use crate::walk::{Item, Lister, Walk};
use dfs_client::Error as ClientError;
use dfs_proto::namespace::Stat;

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
/// The gateway pages a [`Walk`] ([`walk_page`]); this, over keys gathered
/// and sorted whole, is the tests' reference.
#[cfg(test)]
pub fn page<T>(
    keys: Vec<(String, T)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page<T> {
    let mut builder = Builder::new(prefix, delimiter, after, max);
    for (key, value) in keys {
        if builder.full_after(key, value) {
            break;
        }
    }
    builder.page
}

/// One page of what `walk` yields (see [`page`]).
pub async fn walk_page<L: Lister>(
    walk: &mut Walk<'_, L>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Result<Page<Stat>, ClientError> {
    let mut builder = Builder::new(prefix, delimiter, after, max);
    while let Some(item) = walk.next().await? {
        let full = match item {
            Item::Key(key, stat) => builder.full_after(key, stat),
            Item::Prefix(common) => builder.full_after_prefix(common),
        };
        if full {
            break;
        }
    }
    Ok(builder.page)
}

/// A page being filled, key by key in order.
struct Builder<'a, T> {
    prefix: &'a str,
    delimiter: Option<&'a str>,
    after: Option<&'a str>,
    max: usize,
    page: Page<T>,
    count: usize,
    last: Option<String>,
}

impl<'a, T> Builder<'a, T> {
    fn new(prefix: &'a str, delimiter: Option<&'a str>, after: Option<&'a str>, max: usize) -> Builder<'a, T> {
        Builder {
            prefix,
            delimiter: delimiter.filter(|d| !d.is_empty()),
            after,
            max,
            page: Page {
                objects: Vec::new(),
                prefixes: Vec::new(),
                next: None,
            },
            count: 0,
            last: None,
        }
    }

    /// Takes the next key; true once the page is full and another entry
    /// came (the page then says where the next starts).
    fn full_after(&mut self, key: String, value: T) -> bool {
        if let Some(after) = self.after {
            // A marker that is a common prefix skips everything under it.
            if key.as_str() <= after || (self.delimiter.is_some_and(|d| after.ends_with(d)) && key.starts_with(after)) {
                return false;
            }
        }
        let prefix_len = self.prefix.len();
        let common = self.delimiter.and_then(|d| {
            key[prefix_len..]
                .find(d)
                .map(|at| key[..prefix_len + at + d.len()].to_string())
        });
        match common {
            Some(common) => self.full_after_prefix(common),
            None => {
                if self.full() {
                    return true;
                }
                self.last = Some(key.clone());
                self.page.objects.push((key, value));
                false
            }
        }
    }

    /// Takes the next common prefix (see [`Builder::full_after`]).
    fn full_after_prefix(&mut self, common: String) -> bool {
        if self.page.prefixes.last() == Some(&common) {
            return false;
        }
        if self.full() {
            return true;
        }
        self.last = Some(common.clone());
        self.page.prefixes.push(common);
        false
    }

    /// Whether the page has `max` entries: then it ends where the last did.
    fn full(&mut self) -> bool {
        if self.count == self.max {
            self.page.next = self.last.clone();
            return true;
        }
        self.count += 1;
        false
    }
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
