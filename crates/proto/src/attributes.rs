//! Attributes: a small map of text kept with each version of a file (the
//! S3 gateway keeps an object's Content-Type, user metadata and MD5 there;
//! DFS gives the keys no meaning of its own).
//!
//! A write sets the map of the version it makes: the upload commit
//! ([`crate::namespace::CommitUpload::attributes`]) and `PUT /v1/files`
//! (the [`ATTRIBUTES_HEADER`] header, a JSON object). A write without
//! attributes makes a version without any; a move keeps them. They are
//! returned in [`crate::namespace::Stat::attributes`] (stat, listings,
//! layouts). [`check_attributes`] states the limits; a write over them is
//! refused (400) and stores nothing.

use std::collections::BTreeMap;

/// Name -> value, sorted by name.
pub type Attributes = BTreeMap<String, String>;

/// Request header of `PUT /v1/files`: the attributes of the version written,
/// as a JSON object of strings (UTF-8; no control characters).
pub const ATTRIBUTES_HEADER: &str = "x-dfs-attributes";

/// The most bytes of names and values together in one map (8 KiB).
pub const ATTRIBUTES_MAX_BYTES: usize = 8 * 1024;

/// The longest attribute name, in bytes.
pub const ATTRIBUTE_NAME_MAX: usize = 128;

/// Why a map of attributes cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    #[error(
        "attribute name {0:?} is not allowed: names are 1 to {ATTRIBUTE_NAME_MAX} bytes of lowercase ASCII letters, digits and !#$%&'*+-.^_`|~"
    )]
    BadName(String),
    #[error("attribute {0:?} has a control character in its value")]
    BadValue(String),
    #[error("attributes take {0} bytes (names and values); at most {ATTRIBUTES_MAX_BYTES} are allowed")]
    TooLarge(usize),
}

/// A byte allowed in a name: an HTTP header name's (RFC 9110 `tchar`), lowercase.
fn name_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Checks the limits of a map: names of 1 to [`ATTRIBUTE_NAME_MAX`] bytes
/// of lowercase header-name characters, values without control characters,
/// at most [`ATTRIBUTES_MAX_BYTES`] of names and values in all.
pub fn check_attributes(attributes: &Attributes) -> Result<(), AttributesError> {
    let mut total = 0;
    for (name, value) in attributes {
        if name.is_empty() || name.len() > ATTRIBUTE_NAME_MAX || !name.bytes().all(name_byte) {
            return Err(AttributesError::BadName(name.clone()));
        }
        if value.chars().any(char::is_control) {
            return Err(AttributesError::BadValue(name.clone()));
        }
        total += name.len() + value.len();
    }
    if total > ATTRIBUTES_MAX_BYTES {
        return Err(AttributesError::TooLarge(total));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn names_are_lowercase_header_names_and_values_have_no_control_characters() {
        assert_eq!(check_attributes(&map(&[])), Ok(()));
        assert_eq!(
            check_attributes(&map(&[("content-type", "text/plain"), ("x-amz-meta-ünï", "")])),
            Err(AttributesError::BadName("x-amz-meta-ünï".into()))
        );
        assert_eq!(check_attributes(&map(&[("x-amz-meta-a", "héllo wörld")])), Ok(()));
        for bad in ["", "Content-Type", "a b", "a:b", &"n".repeat(129)] {
            assert_eq!(
                check_attributes(&map(&[(bad, "v")])),
                Err(AttributesError::BadName(bad.into()))
            );
        }
        assert_eq!(
            check_attributes(&map(&[("a", "line\r\nx-injected: 1")])),
            Err(AttributesError::BadValue("a".into()))
        );
    }

    #[test]
    fn a_map_holds_at_most_8_kib_of_names_and_values() {
        let value = "v".repeat(ATTRIBUTES_MAX_BYTES - 1);
        assert_eq!(check_attributes(&map(&[("a", &value)])), Ok(()));
        let value = "v".repeat(ATTRIBUTES_MAX_BYTES);
        assert_eq!(
            check_attributes(&map(&[("a", &value)])),
            Err(AttributesError::TooLarge(ATTRIBUTES_MAX_BYTES + 1))
        );
    }
}
