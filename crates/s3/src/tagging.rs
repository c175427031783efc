//! Object tags, kept in the attributes of the file's version (attribute
//! [`TAGS`]: the tag set in the form encoding of the `x-amz-tagging`
//! header, `k1=v1&k2=v2`, sorted by key), beside the object's metadata: a
//! write with tags (PutObject's `x-amz-tagging`, CopyObject, a multipart
//! upload's creation) stores them in the commit of its bytes, and
//! PutObjectTagging and DeleteObjectTagging make a new DFS version of the
//! file with the same chunks (see `Gateway::set_attributes`).
//!
//! S3's limits, checked before anything is stored (else `InvalidTag`): at
//! most 10 tags, keys of 1 to 128 characters, values of at most 256, no key
//! twice, no key starting with `aws:`.

use dfs_proto::Attributes;
use s3s::dto::{Tag, TagSet};
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;

/// The attribute holding an object's tags (absent: none).
pub const TAGS: &str = "s3-tags";

/// Tags in one set, at most.
const MAX_TAGS: usize = 10;
/// The longest tag key, in characters.
const KEY_MAX: usize = 128;
/// The longest tag value, in characters.
const VALUE_MAX: usize = 256;

/// A tag set, sorted by key.
pub type Tags = BTreeMap<String, String>;

/// The tags of an `x-amz-tagging` header (form encoding: `k1=v1&k2`, a key
/// without `=` has an empty value); a browser form's `x-amz-tagging` field
/// may be the XML of a `Tagging` document instead.
pub fn from_header(header: &str) -> S3Result<Tags> {
    let header = header.trim();
    if header.starts_with('<') {
        return from_xml(header);
    }
    let pairs = form_urlencoded::parse(header.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    checked(pairs)
}

/// The tags of a PutObjectTagging's `TagSet`.
pub fn from_set(set: &TagSet) -> S3Result<Tags> {
    let pairs = set
        .iter()
        .map(|tag| {
            (
                tag.key.clone().unwrap_or_default(),
                tag.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    checked(pairs)
}

/// The tags of the XML of a `Tagging` document (a POST form's field).
fn from_xml(text: &str) -> S3Result<Tags> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<Tag>") {
        let end = rest[start..]
            .find("</Tag>")
            .ok_or_else(|| s3_error!(MalformedXML, "a <Tag> is not closed"))?;
        let tag = &rest[start + 5..start + end];
        let field = |name: &str| -> Option<String> {
            let open = format!("<{name}>");
            let from = tag.find(&open)? + open.len();
            let to = tag[from..].find(&format!("</{name}>"))? + from;
            Some(xml_unescape(&tag[from..to]))
        };
        let key = field("Key").ok_or_else(|| s3_error!(MalformedXML, "a <Tag> has no <Key>"))?;
        pairs.push((key, field("Value").unwrap_or_default()));
        rest = &rest[start + end + 6..];
    }
    checked(pairs)
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `pairs` as a tag set, within S3's limits (else `InvalidTag`).
fn checked(pairs: Vec<(String, String)>) -> S3Result<Tags> {
    if pairs.len() > MAX_TAGS {
        return Err(s3_error!(InvalidTag, "an object can have at most {MAX_TAGS} tags"));
    }
    let mut tags = Tags::new();
    for (key, value) in pairs {
        let length = key.chars().count();
        if length == 0 || length > KEY_MAX {
            return Err(s3_error!(InvalidTag, "a tag key is 1 to {KEY_MAX} characters"));
        }
        if value.chars().count() > VALUE_MAX {
            return Err(s3_error!(InvalidTag, "a tag value is at most {VALUE_MAX} characters"));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(s3_error!(InvalidTag, "tag keys starting with aws: are reserved"));
        }
        if tags.insert(key, value).is_some() {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(tags)
}

/// Sets `tags` as the tags in `attributes` (none: removes them).
pub fn set(attributes: &mut Attributes, tags: &Tags) {
    if tags.is_empty() {
        attributes.remove(TAGS);
        return;
    }
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(tags.iter())
        .finish();
    attributes.insert(TAGS.to_string(), text);
}

/// The tags kept in `attributes`.
pub fn of(attributes: &Attributes) -> Tags {
    attributes
        .get(TAGS)
        .map(|text| {
            form_urlencoded::parse(text.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// How many tags `attributes` keep, if any (`x-amz-tagging-count`).
pub fn count(attributes: &Attributes) -> Option<usize> {
    let count = of(attributes).len();
    (count > 0).then_some(count)
}

/// `tags` as S3's `TagSet`.
pub fn tag_set(tags: Tags) -> TagSet {
    tags.into_iter()
        .map(|(key, value)| Tag {
            key: Some(key),
            value: Some(value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_through_the_attribute_sorted_by_key() {
        let tags = from_header("foo=bar&bar&sp%20ace=a+b%26c").unwrap();
        assert_eq!(tags["bar"], "");
        assert_eq!(tags["sp ace"], "a b&c");
        let mut attributes = Attributes::new();
        set(&mut attributes, &tags);
        assert_eq!(of(&attributes), tags);
        assert_eq!(count(&attributes), Some(3));
        let keys: Vec<_> = tag_set(tags).into_iter().map(|tag| tag.key.unwrap()).collect();
        assert_eq!(keys, ["bar", "foo", "sp ace"]);
        set(&mut attributes, &Tags::new());
        assert!(attributes.is_empty());
        assert_eq!(count(&attributes), None);
    }

    #[test]
    fn a_form_field_may_be_xml() {
        let tags =
            from_header("<Tagging><TagSet><Tag><Key>0</Key><Value>a&amp;b</Value></Tag><Tag><Key>1</Key><Value>1</Value></Tag></TagSet></Tagging>")
                .unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags["0"], "a&b");
    }

    #[test]
    fn limits_are_invalid_tag() {
        let invalid = |header: &str| from_header(header).unwrap_err().code().clone();
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(invalid(&eleven.join("&")), s3s::S3ErrorCode::InvalidTag);
        assert_eq!(invalid(&format!("{}=v", "k".repeat(129))), s3s::S3ErrorCode::InvalidTag);
        assert_eq!(invalid(&format!("k={}", "v".repeat(257))), s3s::S3ErrorCode::InvalidTag);
        assert_eq!(invalid("a=1&a=2"), s3s::S3ErrorCode::InvalidTag);
        assert_eq!(invalid("aws:x=1"), s3s::S3ErrorCode::InvalidTag);
        assert_eq!(invalid("=1"), s3s::S3ErrorCode::InvalidTag);
        assert!(from_header(&format!("{}={}", "k".repeat(128), "é".repeat(256))).is_ok());
    }
}
