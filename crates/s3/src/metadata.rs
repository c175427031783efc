//! Object metadata, kept in the attributes of the file's version (see
//! `dfs_proto::attributes`), so that it is written in the same commit as
//! the bytes and replaced with them:
//! - `content-type`, `cache-control`, `content-disposition`,
//!   `content-encoding`, `content-language` and `expires` (an HTTP date),
//!   as the PutObject headers named them;
//! - `x-amz-meta-NAME` for each user metadata header;
//! - [`ETAG`]: the object's ETag without quotes: the hex MD5 of the bytes
//!   for a single PUT (computed while they stream), S3's multipart form for
//!   a multipart upload.
//!
//! A file written another way (`dfs put`, the mount) has no `etag`; its
//! ETag is then [`version_etag`], the MD5 of its path, version, mtime and
//! size: stable while the version lasts, changed by every write, usable for
//! If-Match.

use dfs_proto::namespace::Stat;
use dfs_proto::Attributes;
use md5::{Digest, Md5};
use s3s::dto::{ETag, Metadata, ObjectLockLegalHoldStatus, ObjectLockMode, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Result};

/// The attribute holding an object's ETag (no quotes).
pub const ETAG: &str = "etag";

/// The attribute holding an object's LastModified (milliseconds since the
/// epoch), when it is not the file's mtime: a version kept, or an object
/// whose tags were changed (a new DFS version of the same bytes).
pub const LAST_MODIFIED: &str = "s3-last-modified";

/// Attributes of a version that a copy of its bytes does not take: they
/// say what the version is (its ETag, LastModified, version id, delete marker).
/// A copy takes no lock of its source's either.
const OF_THE_VERSION: [&str; 7] = [
    ETAG,
    LAST_MODIFIED,
    "s3-version-id",
    "s3-delete-marker",
    "s3-lock-mode",
    "s3-lock-until",
    "s3-legal-hold",
];

/// The prefix of user metadata headers (and of their attributes).
const USER_PREFIX: &str = "x-amz-meta-";

const CONTENT_TYPE: &str = "content-type";
const CACHE_CONTROL: &str = "cache-control";
const CONTENT_DISPOSITION: &str = "content-disposition";
const CONTENT_ENCODING: &str = "content-encoding";
const CONTENT_LANGUAGE: &str = "content-language";
const EXPIRES: &str = "expires";

/// Room kept for [`ETAG`] when checking a request's metadata before its
/// body is read (a multipart ETag: 32 hex digits, '-', up to 5 digits).
const ETAG_ROOM: usize = 38;

/// The metadata headers of a PutObject, CopyObject (REPLACE) or
/// CreateMultipartUpload, as S3 names them.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
    /// `x-amz-tagging`: the object's tags ([`crate::tagging`]).
    pub tagging: Option<String>,
    /// `x-amz-object-lock-mode`, `-retain-until-date`, `-legal-hold`.
    pub lock_mode: Option<ObjectLockMode>,
    pub lock_until: Option<Timestamp>,
    pub legal_hold: Option<ObjectLockLegalHoldStatus>,
}

/// [`Headers`] from the fields of the same names of an s3s input.
macro_rules! headers_of {
    ($input:expr) => {
        $crate::metadata::Headers {
            content_type: $input.content_type.clone(),
            cache_control: $input.cache_control.clone(),
            content_disposition: $input.content_disposition.clone(),
            content_encoding: $crate::metadata::stored_encoding($input.content_encoding.as_deref()),
            content_language: $input.content_language.clone(),
            expires: $input.expires.clone(),
            metadata: $input.metadata.clone(),
            tagging: $input.tagging.clone(),
            lock_mode: $input.object_lock_mode.clone(),
            lock_until: $input.object_lock_retain_until_date.clone(),
            legal_hold: $input.object_lock_legal_hold_status.clone(),
        }
    };
}
pub(crate) use headers_of;

/// The Content-Encoding an object keeps: the request's without
/// `aws-chunked`, which names how the request's body was framed, not the
/// object's bytes (S3 drops it too); none if nothing else is left.
pub fn stored_encoding(header: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = header?
        .split(',')
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

impl Headers {
    /// The attributes these headers are kept as, within the limits of
    /// `dfs_proto::attributes` with room for the ETag still to come; else
    /// S3's `MetadataTooLarge` (or `InvalidArgument` for a name or value the
    /// attributes cannot hold), before any byte is stored.
    pub fn attributes(&self) -> S3Result<Attributes> {
        let mut attributes = Attributes::new();
        let standard = [
            (CONTENT_TYPE, &self.content_type),
            (CACHE_CONTROL, &self.cache_control),
            (CONTENT_DISPOSITION, &self.content_disposition),
            (CONTENT_ENCODING, &self.content_encoding),
            (CONTENT_LANGUAGE, &self.content_language),
        ];
        for (name, value) in standard {
            if let Some(value) = value {
                attributes.insert(name.to_string(), value.clone());
            }
        }
        if let Some(expires) = &self.expires {
            attributes.insert(EXPIRES.to_string(), http_date(expires)?);
        }
        for (name, value) in self.metadata.iter().flatten() {
            attributes.insert(format!("{USER_PREFIX}{}", name.to_ascii_lowercase()), value.clone());
        }
        attributes.extend(crate::gateway::lock::header_attributes(
            self.lock_mode.as_ref(),
            self.lock_until.as_ref(),
            self.legal_hold.as_ref(),
        )?);
        if let Some(header) = &self.tagging {
            crate::tagging::set(&mut attributes, &crate::tagging::from_header(header)?);
        }
        let mut with_etag = attributes.clone();
        with_etag.insert(ETAG.to_string(), "0".repeat(ETAG_ROOM));
        dfs_proto::attributes::check_attributes(&with_etag).map_err(|error| match error {
            dfs_proto::attributes::AttributesError::TooLarge(_) => s3_error!(MetadataTooLarge, "{error}"),
            _ => s3_error!(InvalidArgument, "{error}"),
        })?;
        Ok(attributes)
    }
}

fn http_date(at: &Timestamp) -> S3Result<String> {
    let mut text = Vec::new();
    at.format(TimestampFormat::HttpDate, &mut text)
        .map_err(|error| s3_error!(InvalidArgument, "Expires cannot be written as an HTTP date: {error}"))?;
    String::from_utf8(text).map_err(|error| s3_error!(InternalError, "{error}"))
}

/// The metadata of a stored object: what GET and HEAD answer.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub e_tag: Option<ETag>,
    pub headers: Headers,
}

/// The ETag of the version `stat` names: its stored [`ETAG`], else [`version_etag`].
pub fn etag_of(stat: &Stat) -> ETag {
    match stat.attributes.get(ETAG) {
        Some(etag) => ETag::Strong(etag.clone()),
        None => version_etag(stat),
    }
}

/// The ETag of a version written without one (see the module docs).
pub fn version_etag(stat: &Stat) -> ETag {
    let digest = Md5::digest(format!(
        "{}\n{}\n{}\n{}",
        stat.path, stat.version, stat.mtime_ms, stat.size
    ));
    ETag::Strong(hex::encode(digest))
}

/// The metadata kept with the version `stat` names.
pub fn stored(stat: &Stat) -> Stored {
    let attributes = &stat.attributes;
    let text = |name: &str| attributes.get(name).cloned();
    let metadata: Metadata = attributes
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix(USER_PREFIX)?.to_string(), value.clone())))
        .collect();
    Stored {
        e_tag: Some(etag_of(stat)),
        headers: Headers {
            content_type: text(CONTENT_TYPE),
            cache_control: text(CACHE_CONTROL),
            content_disposition: text(CONTENT_DISPOSITION),
            content_encoding: text(CONTENT_ENCODING),
            content_language: text(CONTENT_LANGUAGE),
            expires: attributes
                .get(EXPIRES)
                .and_then(|date| Timestamp::parse(TimestampFormat::HttpDate, date).ok()),
            metadata: (!metadata.is_empty()).then_some(metadata),
            ..Headers::default()
        },
    }
}

/// The attributes of a copy's source, as a copy with the COPY directive
/// keeps them: all but those of the version ([`OF_THE_VERSION`]: the ETag
/// comes from the copy's own bytes).
pub fn copied(stat: &Stat) -> Attributes {
    let mut attributes = stat.attributes.clone();
    for name in OF_THE_VERSION {
        attributes.remove(name);
    }
    attributes
}

/// The LastModified of the version `stat` names, in milliseconds.
pub fn last_modified_ms(stat: &Stat) -> u64 {
    stat.attributes
        .get(LAST_MODIFIED)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(stat.mtime_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_proto::namespace::EntryKind;
    use dfs_proto::DfsPath;

    fn stat(attributes: Attributes) -> Stat {
        Stat {
            path: DfsPath::parse("/buckets/b/k").unwrap(),
            kind: EntryKind::File,
            owner_uid: 2,
            owner: "ann".into(),
            mode: 0o644,
            size: 3,
            mtime_ms: 1_000,
            ctime_ms: None,
            inode: None,
            nlink: None,
            local_owner: None,
            version: 1,
            attributes,
        }
    }

    #[test]
    fn headers_round_trip_through_attributes() {
        let headers = Headers {
            content_type: Some("text/plain".into()),
            cache_control: Some("no-cache".into()),
            expires: Some(Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT").unwrap()),
            metadata: Some([("Color".to_string(), "blue".to_string())].into_iter().collect()),
            ..Headers::default()
        };
        let mut attributes = headers.attributes().unwrap();
        assert_eq!(attributes["x-amz-meta-color"], "blue");
        assert_eq!(attributes["expires"], "Wed, 21 Oct 2015 07:28:00 GMT");
        attributes.insert(ETAG.into(), "abc".into());
        let back = stored(&stat(attributes));
        assert_eq!(back.e_tag, Some(ETag::Strong("abc".into())));
        assert_eq!(back.headers.content_type.as_deref(), Some("text/plain"));
        assert_eq!(back.headers.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(back.headers.expires, headers.expires);
        assert_eq!(back.headers.metadata.unwrap()["color"], "blue");
    }

    #[test]
    fn a_version_without_a_stored_etag_has_a_stable_one_of_its_own() {
        let plain = stat(Attributes::new());
        assert_eq!(etag_of(&plain), etag_of(&plain.clone()));
        let next = Stat {
            version: 2,
            ..plain.clone()
        };
        assert_ne!(etag_of(&plain), etag_of(&next));
    }

    #[test]
    fn aws_chunked_is_how_a_body_was_sent_not_an_encoding_kept() {
        assert_eq!(stored_encoding(Some("aws-chunked")), None);
        assert_eq!(stored_encoding(Some("aws-chunked,gzip")).as_deref(), Some("gzip"));
        assert_eq!(stored_encoding(Some("gzip, AWS-Chunked")).as_deref(), Some("gzip"));
        assert_eq!(stored_encoding(Some("gzip")).as_deref(), Some("gzip"));
        assert_eq!(stored_encoding(None), None);
    }

    #[test]
    fn oversized_metadata_is_metadata_too_large() {
        let headers = Headers {
            metadata: Some([("big".to_string(), "v".repeat(8 * 1024))].into_iter().collect()),
            ..Headers::default()
        };
        let error = headers.attributes().unwrap_err();
        assert_eq!(error.code(), &s3s::S3ErrorCode::MetadataTooLarge);
    }
}
