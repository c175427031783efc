//! The S3 operations, each run as the user whose key signed the request;
//! multipart uploads in `gateway/multipart.rs`, ACLs in `gateway/acl.rs`.

mod acl;
pub(crate) mod cors;
pub(crate) mod lock;
mod multipart;
mod tags;
pub(crate) mod versions;

use crate::body::{body_error, download, HashingReader};
use crate::listing;
use crate::metadata::{self, headers_of};
use crate::paths::{bucket_path, object_path, BUCKETS};
use crate::sessions::{Acting, Sessions};
use crate::tagging;
use crate::walk::{Bounds, Walk};
use acl::Canned;
use dfs_client::{Client, Error as ClientError, PutOptions};
use dfs_proto::namespace::{EntryKind, FileLayout, Stat};
use dfs_proto::ticket::{Role, Ticket};
use dfs_proto::{Attributes, DfsPath, ErrorCode};
use dfs_service::Verifier;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Keys in one listing page, at most (S3's limit).
const MAX_KEYS: usize = 1000;

pub struct Gateway {
    pub(crate) sessions: Arc<Sessions>,
    /// Directory service calls of the gateway itself (bucket creation and
    /// removal in `/buckets`, which users may not write).
    pub(crate) base: Client,
    pub(crate) verifier: Arc<Verifier>,
    /// Writes and deletes of one key of a bucket with versioning take
    /// turns (in this gateway), so that each keeps the version before it.
    pub(crate) key_locks: versions::KeyLocks,
    /// Buckets' versioning and object lock settings, as read lately.
    pub(crate) settings_cache: Arc<versions::SettingsCache>,
}

/// [`Gateway::gateway_client`]: `base` with a fresh admin ticket of the
/// gateway's own, sealed with the cluster key `verifier` holds.
pub(crate) fn gateway_client(base: &Client, verifier: &Verifier) -> Client {
    let now = dfs_seal::now();
    let ticket = verifier.key().seal_ticket(&Ticket {
        uid: 0,
        name: "s3-gateway".to_string(),
        roles: vec![Role::Service, Role::Admin],
        sid: dfs_seal::random_id(),
        issued_at: now,
        expires_at: now + 300,
        session_ends_at: 0,
    });
    let mut client = base.clone();
    client.set_ticket(Some(ticket));
    client
}

/// What a "not found" from the directory service means for an operation.
#[derive(Clone, Copy)]
enum Missing {
    Bucket,
    Key,
}

impl Gateway {
    async fn acting<T>(&self, request: &S3Request<T>) -> S3Result<Acting> {
        let credentials = request.credentials.as_ref().ok_or_else(|| {
            s3_error!(
                AccessDenied,
                "anonymous requests are refused: sign them with an access key"
            )
        })?;
        self.sessions.acting(&credentials.access_key).await
    }

    /// A client with a short-lived admin ticket of the gateway's own, for the
    /// one thing users may not do themselves: make and remove `/buckets/NAME`.
    fn gateway_client(&self) -> Client {
        gateway_client(&self.base, &self.verifier)
    }

    /// The S3 error for a failed call made for `acting`; `missing` says
    /// what a "not found" was (a missing key's bucket is looked for).
    async fn fail(&self, acting: &Acting, bucket: &str, missing: Missing, error: ClientError) -> S3Error {
        match error.code() {
            Some(ErrorCode::NotFound) => match missing {
                Missing::Bucket => no_such_bucket(bucket),
                Missing::Key => match self.bucket_stat(acting, bucket).await {
                    Ok(_) => s3_error!(NoSuchKey, "no such key"),
                    Err(error) => error,
                },
            },
            _ => self.error(acting, error),
        }
    }

    /// The S3 error for a failed call made for `acting`.
    fn error(&self, acting: &Acting, error: ClientError) -> S3Error {
        if error.code() == Some(ErrorCode::Unauthenticated) {
            // The key or its user was removed (or the session ended): the
            // next request asks the security service again.
            self.sessions.forget(&acting.access_key);
            return s3_error!(AccessDenied, "the access key's session ended: {error}");
        }
        plain_error(error)
    }

    /// Writes `body` to `bucket`/`key` (making its directories), as `acting`;
    /// the stat of the new version and the body's MD5.
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        mut body: HashingReader,
        condition: WriteCondition,
        mut attributes: Attributes,
        acl: Option<Canned>,
    ) -> S3Result<(Stat, [u8; 16], Option<String>)> {
        let path = object_path(bucket, key)?;
        let prepared = self.prepare_write(acting, bucket, key, condition).await?;
        let condition = prepared.condition;
        prepared.stamp(&mut attributes)?;
        let digest = body.digest_handle();
        let etag = move || {
            let etag = digest
                .get()
                .map(|digest| (metadata::ETAG.to_string(), hex::encode(digest)));
            etag.into_iter().collect()
        };
        let options = PutOptions {
            no_clobber: condition.no_clobber,
            mode: Some(acl::new_object_mode(acl)),
            attributes,
            final_attributes: Some(Arc::new(etag)),
            // The key's directories, made with a small object in its one
            // transaction (before the upload of a larger one).
            parents_below: key.contains('/').then(|| bucket_path(bucket)).transpose()?,
            ..Default::default()
        };
        let stat = match condition.client(acting).put(&path, &mut body, &options).await {
            Ok(stat) => stat,
            Err(error) => return Err(self.commit_error(acting, bucket, key, condition, error).await),
        };
        let digest = body.digest().expect("a finished upload read its body to the end");
        self.finish_write(acting, &prepared).await;
        self.apply_object_acl(acting, bucket, &stat, acl).await?;
        tracing::debug!(path = %stat.path, version = stat.version, "put an object");
        Ok((stat, digest, prepared.answer()))
    }

    /// The conditions of a write to `bucket`/`key` (PutObject,
    /// CompleteMultipartUpload), RFC 9110's for a write: `If-Match` stores
    /// only if the object exists with that ETag (`*`: any), `If-None-Match`
    /// only if it does not (`*`: if the key is absent), else
    /// `PreconditionFailed`. What was checked must still hold at the commit
    /// (the directory service's compare-and-set: the version seen, or the
    /// key still absent), so a write racing in between fails it too;
    /// nothing is stored then.
    pub(crate) async fn write_condition(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<WriteCondition> {
        if if_match.is_none() && !matches!(if_none_match, Some(ETagCondition::ETag(_))) {
            return Ok(WriteCondition {
                no_clobber: if_none_match.is_some(),
                if_version: None,
            });
        }
        let path = object_path(bucket, key)?;
        let current = match acting.client.stat(&path).await {
            Ok(stat) if stat.kind == EntryKind::File => Some(stat),
            Ok(_) => None,
            Err(error) if error.is_not_found() => {
                self.bucket_stat(acting, bucket).await?;
                None
            }
            Err(error) => return Err(self.fail(acting, bucket, Missing::Key, error).await),
        };
        let matches = |condition: &ETagCondition| match (condition, &current) {
            (_, None) => false,
            (ETagCondition::Any, Some(_)) => true,
            (ETagCondition::ETag(tag), Some(stat)) => tag.value() == metadata::etag_of(stat).value(),
        };
        if if_match.is_some_and(|condition| !matches(condition)) {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Match: the object is absent or its ETag is another"
            ));
        }
        if if_none_match.is_some_and(matches) {
            return Err(s3_error!(
                PreconditionFailed,
                "If-None-Match: the object's ETag matches"
            ));
        }
        Ok(WriteCondition {
            no_clobber: current.is_none(),
            if_version: current.map(|stat| stat.version),
        })
    }

    /// The S3 error for a write's commit (PutObject, CopyObject,
    /// CompleteMultipartUpload) that the directory service refused.
    pub(crate) async fn commit_error(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        condition: WriteCondition,
        error: ClientError,
    ) -> S3Error {
        match error.code() {
            Some(ErrorCode::AlreadyExists) if condition.no_clobber => {
                s3_error!(PreconditionFailed, "key {key:?} exists (it was absent when checked)")
            }
            // The version If-Match saw, or a part, changed since it was checked.
            Some(ErrorCode::PreconditionFailed) => {
                s3_error!(PreconditionFailed, "key {key:?}: {error}")
            }
            Some(ErrorCode::AlreadyExists | ErrorCode::Conflict) => {
                s3_error!(InvalidArgument, "key {key:?} is a directory of other keys: {error}")
            }
            _ => self.fail(acting, bucket, Missing::Bucket, error).await,
        }
    }

    /// Makes the directories of `key` (at `path`) as needed, with what the
    /// bucket's mode gives others (`inherited_dir_mode`), as a small
    /// object's write does with the object (`PutOptions::parents_below`).
    async fn make_parents(&self, acting: &Acting, bucket: &str, key: &str, path: &DfsPath) -> S3Result<()> {
        if !key.contains('/') {
            return Ok(());
        }
        let Err(error) = acting.client.make_parents_below(path, &bucket_path(bucket)?).await else {
            return Ok(());
        };
        Err(match error.code() {
            Some(ErrorCode::AlreadyExists | ErrorCode::Conflict | ErrorCode::BadRequest) => {
                s3_error!(
                    InvalidArgument,
                    "key {key:?} needs directories where an object is: {error}"
                )
            }
            _ => self.fail(acting, bucket, Missing::Bucket, error).await,
        })
    }

    /// Bytes `range` of the file `layout` describes, as a body: the chunks
    /// the range covers, fetched (and hash checked) by a task of its own and
    /// passed on as the pieces they arrived in, never copied. A failed
    /// download ends the body with an error, never early and clean.
    fn object_body(&self, acting: &Acting, layout: FileLayout, range: std::ops::Range<u64>) -> StreamingBlob {
        StreamingBlob::wrap(download(acting.client.clone(), layout, range))
    }

    /// What a lookup of an object's file found, if it is a file; else
    /// `NoSuchKey` (or `NoSuchBucket`, or the lookup's own error).
    async fn found<T>(
        &self,
        acting: &Acting,
        bucket: &str,
        lookup: Result<T, ClientError>,
        stat: impl Fn(&T) -> &Stat,
    ) -> S3Result<T> {
        match lookup {
            Ok(found) if stat(&found).kind == EntryKind::File => Ok(found),
            Ok(_) => Err(s3_error!(NoSuchKey, "no such key")),
            Err(error) => Err(self.fail(acting, bucket, Missing::Key, error).await),
        }
    }

    /// The path and stat of the object `bucket`/`key`: `NoSuchKey` if there
    /// is none (a key that cannot be a path names none), `NoSuchBucket` if
    /// the bucket is not there.
    async fn object_stat(&self, acting: &Acting, bucket: &str, key: &str) -> S3Result<(DfsPath, Stat)> {
        let path = readable_path(bucket, key)?;
        let stat = acting.client.stat(&path).await;
        let stat = self.found(acting, bucket, stat, |stat| stat).await?;
        Ok((path, stat))
    }

    /// The bucket's directory, if the caller may see it.
    async fn bucket_stat(&self, acting: &Acting, bucket: &str) -> S3Result<Stat> {
        let path = bucket_path(bucket)?;
        let stat = acting.client.stat(&path).await.map_err(|error| match error.code() {
            Some(ErrorCode::NotFound) => no_such_bucket(bucket),
            _ => self.error(acting, error),
        })?;
        if stat.kind != EntryKind::Dir {
            return Err(no_such_bucket(bucket));
        }
        if stat.owner_uid != acting.uid && stat.mode & 0o005 != 0o005 {
            return Err(s3_error!(AccessDenied, "bucket {bucket} belongs to another user"));
        }
        Ok(stat)
    }

    /// A walk of `bucket`'s keys within `bounds` (see `walk`), from the
    /// prefix's deepest directory; `None` if that cannot be a path (no
    /// keys then). Fails if the bucket is missing or not the caller's to list.
    async fn walk<'a>(&self, acting: &'a Acting, bucket: &str, bounds: Bounds) -> S3Result<Option<Walk<'a, Client>>> {
        self.bucket_stat(acting, bucket).await?;
        let base = bounds
            .prefix
            .rfind('/')
            .map_or("", |at| &bounds.prefix[..=at])
            .to_string();
        let dir = match base.strip_suffix('/') {
            Some(dir) => match object_path(bucket, dir) {
                Ok(path) => path,
                Err(_) => return Ok(None),
            },
            None => bucket_path(bucket)?,
        };
        Ok(Some(Walk::new(&acting.client, dir, base, bounds)))
    }

    /// Removes the object of `key`, in a bucket without versioning.
    async fn delete_plain(&self, acting: &Acting, bucket: &str, key: &str) -> S3Result<()> {
        let Ok(path) = object_path(bucket, key) else {
            // A key that cannot be a path names no object: deleting it succeeds.
            self.bucket_stat(acting, bucket).await?;
            return Ok(());
        };
        match acting.client.stat(&path).await {
            // Deleting a missing key succeeds; a directory is no object.
            Err(error) if error.is_not_found() => {
                self.bucket_stat(acting, bucket).await?;
                return Ok(());
            }
            Err(error) => return Err(self.fail(acting, bucket, Missing::Key, error).await),
            Ok(stat) if stat.kind == EntryKind::Dir => return Ok(()),
            Ok(_) => {}
        }
        match acting.client.remove(&path, false).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(self.fail(acting, bucket, Missing::Key, error).await),
        }
    }
}

/// [`object_path`] for a read: a key that cannot be a path names no object.
fn readable_path(bucket: &str, key: &str) -> S3Result<DfsPath> {
    object_path(bucket, key).map_err(|_| s3_error!(NoSuchKey, "no such key"))
}

/// What a request that writes a body (PutObject, a POST form upload,
/// UploadPart) says of it, besides the body.
struct BodyClaims<'a> {
    headers: &'a axum::http::HeaderMap,
    method: &'a axum::http::Method,
    /// Content-MD5 as s3s parsed it (from a header, or a form's field).
    content_md5: Option<&'a str>,
    /// Content-Length as s3s parsed it (an aws-chunked body's decoded
    /// length, when the request had a Content-Length).
    content_length: Option<i64>,
}

impl BodyClaims<'_> {
    /// `body`, read against these claims ([`HashingReader::request`]):
    /// - the MD5 of `Content-MD5`, read from the header itself (an empty
    ///   one is `InvalidDigest`, as S3 answers, where s3s sees none), else
    ///   from a form upload's field;
    /// - the declared length: Content-Length; else an aws-chunked body's
    ///   `x-amz-decoded-content-length` (sent chunked, s3s leaves the
    ///   length unset); else, for a form upload, 0 (s3s leaves an empty
    ///   file's unset); else none, which is `411 MissingContentLength`.
    fn body(&self, body: Option<s3s::dto::StreamingBlob>) -> S3Result<HashingReader> {
        use base64::Engine;
        let digest = match self.headers.get("content-md5") {
            Some(header) => Some(header.as_bytes()),
            None => self.content_md5.map(str::as_bytes),
        };
        let expected = digest
            .map(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|raw| <[u8; 16]>::try_from(raw).ok())
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not the base64 of 16 bytes"))
            })
            .transpose()?;
        let decoded = || {
            self.headers
                .get("x-amz-decoded-content-length")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i64>().ok())
        };
        let declared = self
            .content_length
            .or_else(decoded)
            .or((self.method == axum::http::Method::POST).then_some(0));
        HashingReader::request(body, expected, declared)
    }
}

fn no_such_bucket(bucket: &str) -> S3Error {
    s3_error!(NoSuchBucket, "no such bucket: {bucket}")
}

/// The S3 error for a client error with no special meaning in its operation.
fn plain_error(error: ClientError) -> S3Error {
    if let Some(refused) = body_error(&error) {
        return refused;
    }
    match error.code() {
        Some(ErrorCode::PermissionDenied) => s3_error!(AccessDenied, "{error}"),
        Some(ErrorCode::Unauthenticated) => s3_error!(AccessDenied, "{error}"),
        Some(ErrorCode::NotFound) => s3_error!(NoSuchKey, "{error}"),
        Some(ErrorCode::PreconditionFailed) => s3_error!(PreconditionFailed, "{error}"),
        Some(ErrorCode::Locked) => s3_error!(OperationAborted, "{error}"),
        Some(ErrorCode::AlreadyExists | ErrorCode::Conflict) => s3_error!(OperationAborted, "{error}"),
        Some(ErrorCode::BadRequest) => s3_error!(InvalidArgument, "{error}"),
        Some(ErrorCode::PayloadTooLarge) => s3_error!(EntityTooLarge, "{error}"),
        _ => match &error {
            ClientError::Unreachable { .. } => s3_error!(ServiceUnavailable, "{error}"),
            _ => {
                tracing::warn!(%error, "an S3 operation failed");
                s3_error!(InternalError, "{error}")
            }
        },
    }
}

/// [`Gateway::list`] with the bucket, prefix, delimiter, max-keys and
/// encoding-type fields of a listing's input, after `$after`.
macro_rules! list_of {
    ($gateway:expr, $acting:expr, $input:expr, $after:expr) => {
        $gateway
            .list(
                $acting,
                &$input.bucket,
                $input.prefix,
                $input.delimiter,
                $after,
                $input.max_keys,
                $input.encoding_type,
            )
            .await?
    };
}

/// [`check_conditions`] with the `If-*` fields of a GetObject or HeadObject input.
macro_rules! request_conditions {
    ($stat:expr, $input:expr) => {
        check_conditions(
            $stat,
            $input.if_match.as_ref(),
            $input.if_none_match.as_ref(),
            $input.if_modified_since.as_ref(),
            $input.if_unmodified_since.as_ref(),
        )
    };
}

/// GET and HEAD's conditions (RFC 9110 13.2.2 order): If-Match, else
/// If-Unmodified-Since, fail with 412; If-None-Match, else
/// If-Modified-Since, with 304. Times compare in whole seconds, as HTTP
/// dates carry them.
fn check_conditions(
    stat: &Stat,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = metadata::etag_of(stat);
    let matches = |condition: &ETagCondition| match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(tag) => tag.value() == etag.value(),
    };
    let mtime = (metadata::last_modified_ms(stat) / 1000) as i64;
    let seconds = |at: &Timestamp| time::OffsetDateTime::from(at.clone()).unix_timestamp();
    match (if_match, if_unmodified_since) {
        (Some(condition), _) if !matches(condition) => {
            return Err(s3_error!(PreconditionFailed, "If-Match: the object's ETag is another"))
        }
        (None, Some(at)) if mtime > seconds(at) => {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Unmodified-Since: the object changed since"
            ))
        }
        _ => {}
    }
    match (if_none_match, if_modified_since) {
        (Some(condition), _) if matches(condition) => Err(S3Error::new(S3ErrorCode::NotModified)),
        (None, Some(at)) if mtime <= seconds(at) => Err(S3Error::new(S3ErrorCode::NotModified)),
        _ => Ok(()),
    }
}

/// [`check_conditions`] of a copy's source (`x-amz-copy-source-if-*`): a
/// failed one is always 412, never 304.
fn check_copy_conditions(
    stat: &Stat,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    check_conditions(stat, if_match, if_none_match, if_modified_since, if_unmodified_since).map_err(|error| match error
        .code()
    {
        S3ErrorCode::NotModified => s3_error!(PreconditionFailed, "the copy source's condition failed"),
        _ => error,
    })
}

fn timestamp(mtime_ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(mtime_ms))
}

/// What a write's `If-Match` and `If-None-Match` ask of its commit (see
/// [`Gateway::write_condition`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WriteCondition {
    /// `If-None-Match: *`: the key must be absent.
    pub(crate) no_clobber: bool,
    /// `If-Match`: the version whose ETag matched, which must still be
    /// the object's at the commit.
    pub(crate) if_version: Option<u64>,
}

impl WriteCondition {
    /// The client that commits under this condition, as `acting`.
    pub(crate) fn client(&self, acting: &Acting) -> Client {
        match self.if_version {
            Some(version) => acting.client.if_version(version),
            None => acting.client.clone(),
        }
    }
}

/// The stored metadata of `stat`'s object, as the headers of a GetObject or
/// HeadObject answer `$output`, each overridden by the `response-*`
/// parameter of `$input` that names it.
macro_rules! answer_metadata {
    ($output:ident, $input:expr, $stat:expr) => {
        let stored = metadata::stored($stat);
        let headers = stored.headers;
        $output.e_tag = stored.e_tag;
        $output.content_type = $input.response_content_type.take().or(headers.content_type);
        $output.cache_control = $input.response_cache_control.take().or(headers.cache_control);
        $output.content_disposition = $input
            .response_content_disposition
            .take()
            .or(headers.content_disposition);
        $output.content_encoding = $input.response_content_encoding.take().or(headers.content_encoding);
        $output.content_language = $input.response_content_language.take().or(headers.content_language);
        $output.expires = $input.response_expires.take().or(headers.expires);
        $output.metadata = headers.metadata;
    };
}

/// `encoding-type=url`: keys and prefixes as S3 encodes them ([`listing::url_encode`]).
fn encode(value: String, url: bool) -> String {
    if url {
        listing::url_encode(&value)
    } else {
        value
    }
}

/// RGW's `allow-unordered=true` on a listing: accepted (the keys come in
/// S3's order all the same), but not with a delimiter (`InvalidArgument`,
/// as RGW).
fn check_unordered(uri: &axum::http::Uri, delimiter: Option<&str>) -> S3Result<()> {
    let unordered = uri
        .query()
        .is_some_and(|query| query.split('&').any(|pair| pair == "allow-unordered=true"));
    if unordered && delimiter.is_some_and(|delimiter| !delimiter.is_empty()) {
        return Err(s3_error!(
            InvalidArgument,
            "allow-unordered cannot be used with a delimiter"
        ));
    }
    Ok(())
}

fn max_keys_of(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

fn object_entry(key: String, stat: &Stat, url: bool) -> Object {
    Object {
        key: Some(encode(key, url)),
        size: Some(stat.size as i64),
        last_modified: Some(timestamp(metadata::last_modified_ms(stat))),
        e_tag: Some(metadata::etag_of(stat)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        owner: Some(owner_of(stat)),
        ..Default::default()
    }
}

/// The owner S3 names for a file: its DFS owner (name and uid).
fn owner_of(stat: &Stat) -> Owner {
    Owner {
        display_name: Some(stat.owner.clone()),
        id: Some(stat.owner_uid.to_string()),
    }
}

fn prefixes(page: Vec<String>, url: bool) -> Option<Vec<CommonPrefix>> {
    Some(
        page.into_iter()
            .map(|prefix| CommonPrefix {
                prefix: Some(encode(prefix, url)),
            })
            .collect(),
    )
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, request: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        // An anonymous caller owns no bucket (as RGW answers it).
        if request.credentials.is_none() {
            return Ok(S3Response::new(ListBucketsOutput {
                buckets: Some(Vec::new()),
                ..Default::default()
            }));
        }
        let acting = self.acting(&request).await?;
        let root: DfsPath = BUCKETS.parse().expect("a valid path");
        let entries = match acting.client.list(&root).await {
            Ok(listing) => listing.entries,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(self.fail(&acting, "", Missing::Bucket, error).await),
        };
        let buckets = entries
            .into_iter()
            // `.uploads` (pending multipart uploads) is no bucket.
            .filter(|entry| entry.kind == EntryKind::Dir && entry.owner_uid == acting.uid)
            .filter(|entry| !entry.path.name().is_some_and(|name| name.starts_with('.')))
            .map(|entry| Bucket {
                name: entry.path.as_str().rsplit('/').next().map(str::to_string),
                creation_date: Some(timestamp(entry.mtime_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some(acting.user.clone()),
                id: Some(acting.uid.to_string()),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(&self, request: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket.clone();
        let path = bucket_path(&bucket)?;
        let acl = Canned::of(request.input.acl.as_ref().map(|acl| acl.as_str()))?;
        let gateway = self.gateway_client();
        let root: DfsPath = BUCKETS.parse().expect("a valid path");
        match gateway.mkdir(&root, false, Some(0o755)).await {
            Ok(_) => {}
            Err(error) if error.code() == Some(ErrorCode::AlreadyExists) => {}
            Err(error) => return Err(plain_error(error)),
        }
        if let Err(error) = gateway
            .mkdir(&path, false, Some(acl.unwrap_or(Canned::Private).bucket_mode()))
            .await
        {
            if error.code() == Some(ErrorCode::AlreadyExists) {
                let owner = gateway.stat(&path).await.map_err(plain_error)?.owner_uid;
                // Like S3 in us-east-1: creating one's own bucket again succeeds.
                if owner == acting.uid {
                    return Ok(S3Response::new(CreateBucketOutput {
                        location: Some(format!("/{bucket}")),
                    }));
                }
                return Err(s3_error!(BucketAlreadyExists, "bucket {bucket} exists"));
            }
            return Err(plain_error(error));
        }
        if let Err(error) = gateway.chown(&path, &acting.user).await {
            let _ = gateway.remove(&path, false).await;
            return Err(plain_error(error));
        }
        // A new bucket: no settings read of an earlier one of its name are used.
        self.settings_cache.forget(&bucket);
        // Object lock: versioning enabled for good, and a lock configuration.
        if request.input.object_lock_enabled_for_bucket == Some(true) {
            let settings = versions::Settings {
                versioning: Some(versions::Versioning::Enabled),
                object_lock: Some(lock::LockSettings::default()),
                cors: None,
            };
            if let Err(error) = self.write_settings(&acting, &bucket, &settings).await {
                let _ = gateway.remove(&path, false).await;
                return Err(error);
            }
        }
        tracing::info!(%bucket, user = %acting.user, "created a bucket");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(&self, request: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket.clone();
        let stat = self.bucket_stat(&acting, &bucket).await?;
        if stat.owner_uid != acting.uid {
            return Err(s3_error!(AccessDenied, "bucket {bucket} belongs to another user"));
        }
        // Objects are files; directories left by deleted objects do not
        // count, but one it may not read might hold some: refused then.
        let everything = Bounds {
            skip_unreadable: false,
            ..Bounds::default()
        };
        if let Some(mut walk) = self.walk(&acting, &bucket, everything).await? {
            match walk.next().await {
                Ok(None) => {}
                Ok(Some(_)) => return Err(s3_error!(BucketNotEmpty, "bucket {bucket} holds objects")),
                Err(error) => return Err(self.fail(&acting, &bucket, Missing::Bucket, error).await),
            }
        }
        // Versions kept (and delete markers) count too.
        if self.keeps_versions(&acting, &bucket).await? {
            return Err(s3_error!(BucketNotEmpty, "bucket {bucket} keeps object versions"));
        }
        let gateway = self.gateway_client();
        match gateway.remove(&stat.path, true).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => return Err(no_such_bucket(&bucket)),
            Err(error) => return Err(plain_error(error)),
        }
        // Its pending uploads go with it.
        self.remove_bucket_uploads(&bucket).await;
        self.remove_bucket_versions(&bucket).await;
        tracing::info!(%bucket, user = %acting.user, "deleted a bucket");
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, request: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let acting = self.acting(&request).await?;
        self.bucket_stat(&acting, &request.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        request: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let acting = self.acting(&request).await?;
        self.bucket_stat(&acting, &request.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(&self, request: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let claims = BodyClaims {
            headers: &request.headers,
            method: &request.method,
            content_md5: input.content_md5.as_deref(),
            content_length: input.content_length,
        };
        let body = claims.body(input.body)?;
        let attributes = headers_of!(input).attributes()?;
        let acl = Canned::of(input.acl.as_ref().map(|acl| acl.as_str()))?;
        let condition = self
            .write_condition(
                &acting,
                &input.bucket,
                &input.key,
                input.if_match.as_ref(),
                input.if_none_match.as_ref(),
            )
            .await?;
        let (stat, digest, version_id) = self
            .store(&acting, &input.bucket, &input.key, body, condition, attributes, acl)
            .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(hex::encode(digest))),
            size: Some(stat.size as i64),
            version_id,
            ..Default::default()
        }))
    }

    async fn copy_object(&self, request: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let CopySource::Bucket {
            bucket,
            key,
            version_id: source_version,
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "copies from access points are not served"));
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == MetadataDirective::REPLACE);
        if (&**bucket, &**key) == (input.bucket.as_str(), input.key.as_str()) && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata (use the metadata directive REPLACE)"
            ));
        }
        let acl = Canned::of(input.acl.as_ref().map(|acl| acl.as_str()))?;
        object_path(bucket, key)?;
        // Paged as in GetObject.
        let layout = self
            .object_version_layout(&acting, bucket, key, source_version.as_deref())
            .await?;
        let copy_source_version_id = source_version
            .as_deref()
            .map(str::to_string)
            .or_else(|| layout.stat.attributes.get(versions::VERSION_ID).cloned());
        check_copy_conditions(
            &layout.stat,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let mut attributes = if replace {
            headers_of!(input).attributes()?
        } else {
            metadata::copied(&layout.stat)
        };
        // The tags: the source's (`COPY`, the default) or the request's (`REPLACE`).
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == TaggingDirective::REPLACE);
        let tags = match replace_tags {
            true => tagging::from_header(input.tagging.as_deref().unwrap_or_default())?,
            false => tagging::of(&layout.stat.attributes),
        };
        tagging::set(&mut attributes, &tags);
        let size = layout.stat.size;
        let body = HashingReader::new(Some(self.object_body(&acting, layout, 0..size)), None);
        let condition = WriteCondition::default();
        let (stat, digest, version_id) = self
            .store(&acting, &input.bucket, &input.key, body, condition, attributes, acl)
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            version_id,
            copy_source_version_id,
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(hex::encode(digest))),
                last_modified: Some(timestamp(stat.mtime_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn get_object(&self, request: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let acting = self.acting(&request).await?;
        let mut input = request.input;
        // The first page of the chunk list: the download asks for each next
        // one as it goes (same version), so memory does not grow with the
        // object's chunk count.
        let layout = self
            .object_version_layout(&acting, &input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        let stat = layout.stat.clone();
        request_conditions!(&stat, input)?;
        let mut parts_count = None;
        let (range, content_range) = match &input.range {
            // One part of a multipart object (from the part sizes kept with it).
            _ if input.part_number.is_some() => {
                let number = input.part_number.unwrap_or_default();
                let (range, count) = multipart::part_range(&stat.attributes, stat.size, number)?;
                parts_count = Some(count as i32);
                let header = format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), stat.size);
                (range, Some(header))
            }
            None => (0..stat.size, None),
            Some(range) => {
                let range = range
                    .check(stat.size)
                    .map_err(|_| s3_error!(InvalidRange, "the range is outside the object's {} bytes", stat.size))?;
                let header = format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), stat.size);
                (range, Some(header))
            }
        };
        let length = range.end - range.start;
        let body = self.object_body(&acting, layout, range);
        let mut output = GetObjectOutput {
            body: Some(body),
            content_length: Some(length as i64),
            content_range,
            parts_count,
            accept_ranges: Some("bytes".to_string()),
            last_modified: Some(timestamp(metadata::last_modified_ms(&stat))),
            ..Default::default()
        };
        output.tag_count = tagging::count(&stat.attributes).map(|count| count as i32);
        lock::answer_lock!(output, &stat);
        output.version_id = stat
            .attributes
            .get(versions::VERSION_ID)
            .cloned()
            .or(input.version_id.take());
        answer_metadata!(output, input, &stat);
        Ok(S3Response::new(output))
    }

    async fn head_object(&self, request: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let acting = self.acting(&request).await?;
        let mut input = request.input;
        let stat = match input.version_id.as_deref() {
            Some(id) => self.version_layout(&acting, &input.bucket, &input.key, id).await?.stat,
            None => {
                let (path, stat) = self.object_stat(&acting, &input.bucket, &input.key).await?;
                // A stat needs only to pass through the directories: another
                // user's object is shown only if its mode lets the caller read it
                // (what a read of its layout checks, as GetObject's does).
                if stat.owner_uid != acting.uid {
                    let layout = acting.client.first_layout_page(&path).await;
                    self.found(&acting, &input.bucket, layout, |layout| &layout.stat)
                        .await?;
                }
                stat
            }
        };
        request_conditions!(&stat, input)?;
        let (length, parts_count) = match input.part_number {
            None => (stat.size, None),
            Some(number) => {
                let (range, count) = multipart::part_range(&stat.attributes, stat.size, number)?;
                (range.end - range.start, Some(count as i32))
            }
        };
        let mut output = HeadObjectOutput {
            content_length: Some(length as i64),
            parts_count,
            accept_ranges: Some("bytes".to_string()),
            last_modified: Some(timestamp(metadata::last_modified_ms(&stat))),
            version_id: stat
                .attributes
                .get(versions::VERSION_ID)
                .cloned()
                .or(input.version_id.take()),
            ..Default::default()
        };
        lock::answer_lock!(output, &stat);
        answer_metadata!(output, input, &stat);
        let mut response = S3Response::new(output);
        // s3s's HeadObjectOutput has no field for it.
        if let Some(count) = tagging::count(&stat.attributes) {
            response.headers.insert("x-amz-tagging-count", count.into());
        }
        Ok(response)
    }

    async fn delete_object(&self, request: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let deleted = self
            .delete_one(
                &acting,
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.bypass_governance_retention.unwrap_or(false),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker.then_some(true),
            version_id: deleted.version_id,
            ..Default::default()
        }))
    }

    async fn delete_objects(
        &self,
        request: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        self.bucket_stat(&acting, &input.bucket).await?;
        if input.delete.objects.len() > MAX_KEYS {
            return Err(s3_error!(MalformedXML, "DeleteObjects takes at most {MAX_KEYS} keys"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            let version_id = object.version_id.as_deref();
            match self
                .delete_one(&acting, &input.bucket, &object.key, version_id, bypass)
                .await
            {
                Ok(_) if quiet => {}
                Ok(done) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    delete_marker: done.delete_marker.then_some(true),
                    delete_marker_version_id: done.version_id.clone().filter(|_| done.delete_marker),
                    version_id: object.version_id,
                }),
                Err(error) => errors.push(Error {
                    code: Some(error.code().as_str().to_string()),
                    message: error.message().map(str::to_string),
                    key: Some(object.key),
                    version_id: object.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn put_object_tagging(
        &self,
        request: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_object_tagging_op(request).await
    }

    async fn get_object_tagging(
        &self,
        request: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_object_tagging_op(request).await
    }

    async fn delete_object_tagging(
        &self,
        request: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_object_tagging_op(request).await
    }

    async fn get_object_acl(&self, request: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.get_object_acl_op(request).await
    }

    async fn put_object_acl(&self, request: S3Request<PutObjectAclInput>) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.put_object_acl_op(request).await
    }

    async fn get_bucket_acl(&self, request: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.get_bucket_acl_op(request).await
    }

    async fn put_bucket_acl(&self, request: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.put_bucket_acl_op(request).await
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_op(request).await
    }

    async fn upload_part(&self, request: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_op(request).await
    }

    async fn upload_part_copy(
        &self,
        request: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy_op(request).await
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_op(request).await
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_op(request).await
    }

    async fn list_parts(&self, request: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_op(request).await
    }

    async fn list_multipart_uploads(
        &self,
        request: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_op(request).await
    }

    async fn list_objects(&self, request: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let acting = self.acting(&request).await?;
        check_unordered(&request.uri, request.input.delimiter.as_deref())?;
        let input = request.input;
        // Version 1 echoes the prefix as given, encoded or not (botocore
        // decodes only its markers, delimiter, keys and common prefixes).
        let prefix = input.prefix.clone();
        let listed = list_of!(self, &acting, input, input.marker.clone());
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            marker: Some(encode(input.marker.unwrap_or_default(), listed.url)),
            is_truncated: Some(listed.next.is_some()),
            next_marker: listed.next.map(|next| encode(next, listed.url)),
            prefix: Some(prefix.unwrap_or_default()),
            max_keys: listed.max_keys,
            contents: listed.contents,
            common_prefixes: listed.common_prefixes,
            delimiter: listed.delimiter,
            encoding_type: listed.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        request: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_op(request).await
    }

    async fn put_bucket_cors(
        &self,
        request: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.put_bucket_cors_op(request).await
    }

    async fn get_bucket_cors(
        &self,
        request: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.get_bucket_cors_op(request).await
    }

    async fn delete_bucket_cors(
        &self,
        request: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.delete_bucket_cors_op(request).await
    }

    async fn put_bucket_versioning(
        &self,
        request: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning_op(request).await
    }

    async fn get_bucket_versioning(
        &self,
        request: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_bucket_versioning_op(request).await
    }

    async fn put_object_lock_configuration(
        &self,
        request: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.put_object_lock_configuration_op(request).await
    }

    async fn get_object_lock_configuration(
        &self,
        request: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.get_object_lock_configuration_op(request).await
    }

    async fn put_object_retention(
        &self,
        request: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.put_object_retention_op(request).await
    }

    async fn get_object_retention(
        &self,
        request: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.get_object_retention_op(request).await
    }

    async fn put_object_legal_hold(
        &self,
        request: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.put_object_legal_hold_op(request).await
    }

    async fn get_object_legal_hold(
        &self,
        request: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.get_object_legal_hold_op(request).await
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let acting = self.acting(&request).await?;
        check_unordered(&request.uri, request.input.delimiter.as_deref())?;
        let input = request.input;
        let after = input.continuation_token.clone().or(input.start_after.clone());
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let mut listed = list_of!(self, &acting, input, after);
        // Version 2 names owners only when asked to.
        if !fetch_owner {
            for object in listed.contents.iter_mut().flatten() {
                object.owner = None;
            }
        }
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            key_count: Some(listed.count as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(listed.next.is_some()),
            next_continuation_token: listed.next,
            start_after: input.start_after.map(|start| encode(start, listed.url)),
            prefix: listed.prefix,
            max_keys: listed.max_keys,
            contents: listed.contents,
            common_prefixes: listed.common_prefixes,
            delimiter: listed.delimiter,
            encoding_type: listed.encoding_type,
            ..Default::default()
        }))
    }
}

/// What ListObjects, ListObjectsV2 and ListObjectVersions share of their answers.
struct Listed {
    url: bool,
    prefix: Option<String>,
    max_keys: Option<i32>,
    contents: Option<Vec<Object>>,
    common_prefixes: Option<Vec<CommonPrefix>>,
    delimiter: Option<String>,
    encoding_type: Option<EncodingType>,
    /// Entries (objects and common prefixes) in the page.
    count: usize,
    /// Where the next page starts, if there is one (not encoded).
    next: Option<String>,
}

impl Gateway {
    /// One page of `bucket`'s keys under `prefix`, after `after`.
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        acting: &Acting,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<String>,
        after: Option<String>,
        max_keys: Option<i32>,
        encoding_type: Option<EncodingType>,
    ) -> S3Result<Listed> {
        let url = encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let prefix = prefix.unwrap_or_default();
        // An empty delimiter is none (and is not echoed).
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let max = max_keys_of(max_keys)?;
        let bounds = Bounds {
            prefix: prefix.clone(),
            after: after.clone(),
            fold_directories: delimiter.as_deref() == Some("/"),
            skip_unreadable: true,
        };
        let page = match self.walk(acting, bucket, bounds).await? {
            Some(mut walk) => listing::walk_page(&mut walk, &prefix, delimiter.as_deref(), after.as_deref(), max)
                .await
                .map_err(|error| (acting, error)),
            None => Ok(listing::Page {
                objects: Vec::new(),
                prefixes: Vec::new(),
                next: None,
            }),
        };
        let page = match page {
            Ok(page) => page,
            Err((acting, error)) => return Err(self.fail(acting, bucket, Missing::Bucket, error).await),
        };
        Ok(Listed {
            url,
            count: page.objects.len() + page.prefixes.len(),
            prefix: Some(encode(prefix, url)),
            max_keys: Some(max as i32),
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|(key, stat)| object_entry(key, &stat, url))
                    .collect(),
            ),
            common_prefixes: prefixes(page.prefixes, url),
            delimiter: delimiter.map(|d| encode(d, url)),
            encoding_type,
            next: page.next,
        })
    }
}
