//! How buckets and object keys map to DFS paths.
//!
//! Bucket `NAME` is the directory `/buckets/NAME`; key `a/b/c` is the file
//! `/buckets/NAME/a/b/c`, its directories made as needed. A key ending in
//! `/` (a "folder" marker, as consoles make) is the file [`FOLDER`] in the
//! directory it names: `a/b/` is `/buckets/NAME/a/b/.s3-folder-marker`. A
//! key that cannot be a path is refused with `InvalidArgument` (see
//! [`object_path`]).

use dfs_proto::DfsPath;
use s3s::{s3_error, S3Result};

/// The directory holding every bucket.
pub const BUCKETS: &str = "/buckets";

/// The file holding the object of a key ending in `/`, in the directory
/// the key names. No key has a component of this name.
pub const FOLDER: &str = ".s3-folder-marker";

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// `/buckets/NAME`; s3s has checked the name against S3's rules.
pub fn bucket_path(bucket: &str) -> S3Result<DfsPath> {
    if bucket.is_empty() || bucket.contains('/') || bucket.starts_with('.') {
        return Err(s3_error!(
            InvalidBucketName,
            "bucket names are 3-63 of a-z, 0-9, '.' and '-'"
        ));
    }
    format!("{BUCKETS}/{bucket}")
        .parse()
        .map_err(|_| s3_error!(InvalidBucketName, "bucket names are 3-63 of a-z, 0-9, '.' and '-'"))
}

/// Why a key cannot be a DFS path, if it cannot.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("an object key cannot be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("object keys are at most {MAX_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("object keys cannot hold control characters (NUL, newline, ...)".into());
    }
    let path = key.strip_suffix('/').unwrap_or(key);
    for component in path.split('/') {
        match component {
            "" => {
                return Err(format!(
                    "key {key:?} has an empty path component ('//' or a leading '/')"
                ))
            }
            "." | ".." | FOLDER => return Err(format!("key {key:?} has a '{component}' path component")),
            _ if component.len() > 255 => return Err(format!("key {key:?} has a component over 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// `/buckets/BUCKET/KEY` (`/buckets/BUCKET/KEY/`[`FOLDER`] for a key ending
/// in `/`), or `InvalidArgument` for a key that cannot be a path.
pub fn object_path(bucket: &str, key: &str) -> S3Result<DfsPath> {
    check_key(key).map_err(|reason| s3_error!(InvalidArgument, "{reason}"))?;
    let file = match key.strip_suffix('/') {
        Some(dir) => format!("{dir}/{FOLDER}"),
        None => key.to_string(),
    };
    format!("{}/{file}", bucket_path(bucket)?)
        .parse()
        .map_err(|error| s3_error!(InvalidArgument, "key {key:?} cannot be a path: {error}"))
}

/// The gateway's tree of object versions and bucket settings (see
/// `gateway/versions.rs`): `/buckets/.versions/BUCKET/settings` and the
/// versions kept of key `K` in `/buckets/.versions/BUCKET/keys/K/`.
pub const VERSIONS: &str = "/buckets/.versions";

/// `/buckets/.versions/BUCKET`.
pub fn bucket_versions(bucket: &str) -> S3Result<DfsPath> {
    bucket_path(bucket)?;
    Ok(format!("{VERSIONS}/{bucket}").parse().expect("a valid path"))
}

/// `/buckets/.versions/BUCKET/keys/K`: the directory of the versions kept
/// of `key` (K is the key's path in the bucket, [`object_path`]'s).
pub fn versions_dir(bucket: &str, key: &str) -> S3Result<DfsPath> {
    let object = object_path(bucket, key)?;
    let relative = &object.as_str()[BUCKETS.len() + bucket.len() + 2..];
    format!("{VERSIONS}/{bucket}/keys/{relative}")
        .parse()
        .map_err(|error| s3_error!(InvalidArgument, "key {key:?} cannot be a path: {error}"))
}

/// The key whose path in its bucket is `relative` (the inverse of [`object_path`]).
pub fn key_of(relative: &str) -> String {
    match relative.strip_suffix(FOLDER) {
        Some(dir) if dir.is_empty() || dir.ends_with('/') => dir.to_string(),
        _ => relative.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_cannot_be_paths_are_refused() {
        for bad in [
            "",
            "/a",
            "a//b",
            "a/./b",
            "../a",
            "a/..",
            "a\0b",
            "a\nb",
            "/",
            "dir//",
            "a/.s3-folder-marker",
            ".s3-folder-marker/",
            &"x".repeat(1025),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "a",
            "a/b/c",
            "a-c",
            "ünïcode/ø",
            "with space",
            "a.b",
            "..a",
            "a/.b",
            "dir/",
            "a/b/",
        ] {
            assert!(check_key(good).is_ok(), "{good:?} should be accepted");
        }
        assert_eq!(object_path("bkt", "a/b").unwrap().as_str(), "/buckets/bkt/a/b");
        // A folder marker is a file in the directory it names.
        assert_eq!(
            object_path("bkt", "a/b/").unwrap().as_str(),
            "/buckets/bkt/a/b/.s3-folder-marker"
        );
        assert_eq!(
            versions_dir("bkt", "a/b/").unwrap().as_str(),
            "/buckets/.versions/bkt/keys/a/b/.s3-folder-marker"
        );
        assert_eq!(
            versions_dir("bkt", "k").unwrap().as_str(),
            "/buckets/.versions/bkt/keys/k"
        );
        for key in ["a/b/", "a", "a/b"] {
            let object = object_path("bkt", key).unwrap();
            assert_eq!(key_of(&object.as_str()["/buckets/bkt/".len()..]), key);
        }
    }
}
