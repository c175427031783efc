//! Multipart uploads: parts stream into chunks like any upload, each kept as
//! a hidden file; CompleteMultipartUpload makes the object of their chunks
//! with one `POST /v1/files/compose` (no byte copied, whole or not at all).
//!
//! # Where an upload lives
//! `/buckets/.uploads/BUCKET/ID/` (outside every bucket's key space: no
//! listing of objects or buckets shows it), made by the caller, mode 0700:
//! - `upload`: the upload's key and the metadata given at its creation, as
//!   JSON, stored inline ([`UploadInfo`]); its mtime is the initiation time;
//! - `00001` ... `10000`: the parts, each a file stored as chunks (never
//!   inline, so that it can be composed), its MD5 in its attributes.
//!
//! `/buckets/.uploads` belongs to the gateway (0711: traversed, not listed);
//! `/buckets/.uploads/BUCKET` to the bucket's owner, mode 0733: its owner
//! lists every upload (ListMultipartUploads), anyone allowed in the bucket
//! makes one there but cannot list the others. The gateway's admin ticket
//! makes these two directories and removes the bucket's one with the bucket.

use super::acl::{self, Canned};
use super::{plain_error, timestamp, Gateway, Missing};
use crate::body::HashingReader;
use crate::metadata::{headers_of, ETAG};
use crate::paths::{bucket_path, object_path, BUCKETS};
use crate::sessions::Acting;
use base64::Engine as _;
use dfs_client::PutOptions;
use dfs_proto::namespace::{ComposeFiles, ComposeSource, EntryKind, Stat};
use dfs_proto::{Attributes, DfsPath, ErrorCode};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where every bucket's pending uploads are.
pub(crate) const UPLOADS: &str = "/buckets/.uploads";

/// The file of an upload holding its [`UploadInfo`].
const INFO: &str = "upload";

/// The most parts of an upload, and the highest part number (S3's).
pub(crate) const MAX_PARTS: usize = 10_000;

/// The largest part (S3's: 5 GiB, as a PutObject).
pub(crate) const MAX_PART_SIZE: u64 = crate::body::MAX_BODY_SIZE;

/// The smallest part but the last (S3's: 5 MiB).
pub(crate) const MIN_PART_SIZE: u64 = 5 << 20;

/// The most parts or uploads in one listing page.
const MAX_LISTED: usize = 1000;

/// Attribute of a part: the hex MD5 of its bytes (its ETag).
pub(crate) const PART_MD5: &str = "s3-part-md5";

/// Attribute of a multipart object: its part sizes, as runs `SIZExCOUNT`
/// separated by commas (uniform parts take one or two runs); absent if the
/// runs would not fit in the attributes, and then `partNumber` reads of it
/// are refused.
pub(crate) const PART_SIZES: &str = "s3-part-sizes";

/// The longest [`PART_SIZES`] value kept.
const MAX_PART_SIZES_LEN: usize = 2048;

/// What `upload` holds: the key, and the object's attributes given at the
/// upload's creation (Content-Type, `x-amz-meta-*`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadInfo {
    key: String,
    #[serde(default)]
    attributes: Attributes,
    /// The canned ACL (`x-amz-acl`) the object gets.
    #[serde(default)]
    acl: Option<Canned>,
}

/// A pending upload, as found.
struct Upload {
    dir: DfsPath,
    info: UploadInfo,
    /// Its `upload` file: owner and initiation time.
    stat: Stat,
}

fn uploads_root() -> DfsPath {
    UPLOADS.parse().expect("a valid path")
}

/// `/buckets/.uploads/BUCKET`.
fn bucket_uploads(bucket: &str) -> S3Result<DfsPath> {
    let bucket_dir = bucket_path(bucket)?;
    let name = bucket_dir.name().expect("a bucket has a name");
    uploads_root()
        .join(name)
        .map_err(|error| s3_error!(InvalidBucketName, "{error}"))
}

/// `/buckets/.uploads/BUCKET/ID`; an id that is not one of ours names no upload.
fn upload_dir(bucket: &str, id: &str) -> S3Result<DfsPath> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(no_such_upload(id));
    }
    bucket_uploads(bucket)?.join(id).map_err(|_| no_such_upload(id))
}

fn part_path(dir: &DfsPath, number: usize) -> DfsPath {
    dir.join(&format!("{number:05}")).expect("a valid name")
}

/// The part number a file of an upload is, if it is a part.
fn part_number(stat: &Stat) -> Option<usize> {
    let name = stat.path.name()?;
    let number = name.parse::<usize>().ok()?;
    (stat.kind == EntryKind::File && name.len() == 5 && (1..=MAX_PARTS).contains(&number)).then_some(number)
}

fn no_such_upload(id: &str) -> S3Error {
    s3_error!(
        NoSuchUpload,
        "no such upload: {id} (it was completed or aborted, or never existed)"
    )
}

fn check_part_number(number: i32) -> S3Result<usize> {
    usize::try_from(number)
        .ok()
        .filter(|number| (1..=MAX_PARTS).contains(number))
        .ok_or_else(|| s3_error!(InvalidArgument, "part numbers are 1 to {MAX_PARTS}, not {number}"))
}

/// A listing's page size: `asked`, at most [`MAX_LISTED`].
fn page_size(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(MAX_LISTED),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "a page size cannot be negative")),
        Some(n) => Ok((n as usize).min(MAX_LISTED)),
    }
}

/// S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, a
/// dash, and the number of parts.
pub(crate) fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut md5 = Md5::new();
    for part in part_md5s {
        md5.update(part);
    }
    format!("{}-{}", hex::encode(md5.finalize()), part_md5s.len())
}

/// Part sizes as runs `SIZExCOUNT,...` (see [`PART_SIZES`]).
pub(crate) fn encode_part_sizes(sizes: &[u64]) -> String {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for &size in sizes {
        match runs.last_mut() {
            Some((last, count)) if *last == size => *count += 1,
            _ => runs.push((size, 1)),
        }
    }
    let runs: Vec<String> = runs.iter().map(|(size, count)| format!("{size}x{count}")).collect();
    runs.join(",")
}

/// The sizes [`encode_part_sizes`] wrote, if `text` is such a list.
pub(crate) fn decode_part_sizes(text: &str) -> Option<Vec<u64>> {
    let mut sizes = Vec::new();
    for run in text.split(',') {
        let (size, count) = run.split_once('x')?;
        let (size, count) = (size.parse::<u64>().ok()?, count.parse::<usize>().ok()?);
        if count == 0 || sizes.len() + count > MAX_PARTS {
            return None;
        }
        sizes.extend(std::iter::repeat_n(size, count));
    }
    Some(sizes)
}

/// Bytes `start..end` of part `number` (from 1) of an object of `size`
/// bytes with these attributes, and the number of parts. An object that is
/// not multipart is one part.
pub(crate) fn part_range(attributes: &Attributes, size: u64, number: i32) -> S3Result<(std::ops::Range<u64>, usize)> {
    let sizes = match attributes.get(PART_SIZES) {
        None => vec![size],
        Some(text) => decode_part_sizes(text)
            .filter(|sizes| sizes.iter().sum::<u64>() == size)
            .ok_or_else(|| s3_error!(InvalidRequest, "the object's part sizes are not known"))?,
    };
    let index = usize::try_from(number)
        .ok()
        .and_then(|number| number.checked_sub(1))
        .filter(|index| *index < sizes.len())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "part number {number}: the object has {} parts",
                sizes.len()
            )
        })?;
    let start: u64 = sizes[..index].iter().sum();
    Ok((start..start + sizes[index], sizes.len()))
}

/// The `(number, ETag)` list of a Complete: numbers must not descend
/// (S3's `InvalidPartOrder`), each 1 to [`MAX_PARTS`], at least one part. A
/// number listed again (a part uploaded again while the list was made)
/// takes the ETag listed last, as RGW does.
fn completed_parts(upload: Option<CompletedMultipartUpload>) -> S3Result<Vec<(usize, String)>> {
    let parts = upload.and_then(|upload| upload.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(MalformedXML, "CompleteMultipartUpload names no part"));
    }
    if parts.len() > MAX_PARTS {
        return Err(s3_error!(MalformedXML, "an upload has at most {MAX_PARTS} parts"));
    }
    let mut list: Vec<(usize, String)> = Vec::with_capacity(parts.len());
    for part in parts {
        let number = part
            .part_number
            .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
        let number = check_part_number(number)?;
        if let Some((previous, _)) = list.last().filter(|(previous, _)| *previous > number) {
            return Err(s3_error!(
                InvalidPartOrder,
                "parts must be listed in ascending order of part number (part {number} follows part {previous})"
            ));
        }
        let etag = part
            .e_tag
            .map(|etag| etag.value().trim_matches('"').to_string())
            .ok_or_else(|| s3_error!(MalformedXML, "part {number} has no ETag"))?;
        if list.last().is_some_and(|(previous, _)| *previous == number) {
            list.pop();
        }
        list.push((number, etag));
    }
    Ok(list)
}

/// The bytes an `x-amz-copy-source-range` names: `bytes=FIRST-LAST`
/// (`InvalidArgument` for another form), within the source's `size` bytes
/// (`InvalidRange` otherwise: unlike a GET's Range, a LAST past the end is
/// not cut to it).
fn copy_source_range(text: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    match Range::parse(text) {
        Ok(Range::Int {
            first,
            last: Some(last),
        }) if first <= last => {
            if last < size {
                Ok(first..last + 1)
            } else {
                Err(s3_error!(
                    InvalidRange,
                    "x-amz-copy-source-range {text:?} is outside the source's {size} bytes"
                ))
            }
        }
        _ => Err(s3_error!(
            InvalidArgument,
            "bad x-amz-copy-source-range {text:?}: give bytes=FIRST-LAST"
        )),
    }
}

/// The parts of an upload found in its directory, by number.
fn parts_of(entries: Vec<Stat>) -> BTreeMap<usize, Stat> {
    entries
        .into_iter()
        .filter_map(|stat| part_number(&stat).map(|number| (number, stat)))
        .collect()
}

fn part_etag(stat: &Stat) -> Option<&str> {
    stat.attributes.get(PART_MD5).map(String::as_str)
}

/// Checks a Complete's parts against those stored: each there with its
/// ETag (`InvalidPart`), each but the last at least [`MIN_PART_SIZE`]
/// (`EntityTooSmall`). Returns the sources to compose (at the versions
/// checked) and the parts' MD5s and sizes.
#[allow(clippy::type_complexity)]
fn check_parts(
    wanted: &[(usize, String)],
    stored: &BTreeMap<usize, Stat>,
) -> S3Result<(Vec<ComposeSource>, Vec<[u8; 16]>, Vec<u64>)> {
    let mut sources = Vec::with_capacity(wanted.len());
    let mut md5s = Vec::with_capacity(wanted.len());
    let mut sizes = Vec::with_capacity(wanted.len());
    for (index, (number, etag)) in wanted.iter().enumerate() {
        let stat = stored
            .get(number)
            .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded (or not completely)"))?;
        let md5 = part_etag(stat)
            .filter(|stored| stored.eq_ignore_ascii_case(etag))
            .and_then(|stored| hex::decode(stored).ok())
            .and_then(|raw| <[u8; 16]>::try_from(raw).ok())
            .ok_or_else(|| s3_error!(InvalidPart, "part {number}'s ETag is not {etag:?}"))?;
        if index + 1 < wanted.len() && stat.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "part {number} has {} bytes: every part but the last needs at least {MIN_PART_SIZE} (5 MiB)",
                stat.size
            ));
        }
        sources.push(ComposeSource {
            path: stat.path.clone(),
            version: Some(stat.version),
        });
        md5s.push(md5);
        sizes.push(stat.size);
    }
    Ok((sources, md5s, sizes))
}

/// The input of an operation on one pending upload: the bucket, key and
/// upload id it names, and the part number, for those that name one.
trait OnUpload {
    fn upload_names(&self) -> (&str, &str, &str);
    fn part_number(&self) -> Option<i32> {
        None
    }
}

macro_rules! on_upload {
    ($($input:ty),* ; parts: $($with_part:ty),*) => {
        $(impl OnUpload for $input {
            fn upload_names(&self) -> (&str, &str, &str) {
                (&self.bucket, &self.key, &self.upload_id)
            }
        })*
        $(impl OnUpload for $with_part {
            fn upload_names(&self) -> (&str, &str, &str) {
                (&self.bucket, &self.key, &self.upload_id)
            }
            fn part_number(&self) -> Option<i32> {
                Some(self.part_number)
            }
        })*
    };
}

on_upload!(CompleteMultipartUploadInput, AbortMultipartUploadInput, ListPartsInput; parts: UploadPartInput, UploadPartCopyInput);

/// What every operation on a pending upload starts from.
struct UploadCall<T> {
    acting: Acting,
    input: T,
    upload: Upload,
    /// The part number the input names (checked: 1 to [`MAX_PARTS`]).
    part: Option<usize>,
}

impl Gateway {
    /// `/buckets/.uploads/BUCKET`, made (by the gateway, for the bucket's
    /// owner, mode 0733) if it is not there.
    async fn ensure_bucket_uploads(&self, bucket: &str, owner: &str) -> S3Result<DfsPath> {
        let dir = bucket_uploads(bucket)?;
        self.ensure_gateway_dir(uploads_root(), dir.clone(), 0o733, owner)
            .await?;
        Ok(dir)
    }

    /// `dir` (in `root`, which is in `/buckets`), made (by the gateway, for
    /// `owner`, with `mode`) if it is not there; `root` (mode 0711) too.
    pub(super) async fn ensure_gateway_dir(&self, root: DfsPath, dir: DfsPath, mode: u32, owner: &str) -> S3Result<()> {
        let gateway = self.gateway_client();
        match gateway.stat(&dir).await {
            Ok(stat) if stat.kind == EntryKind::Dir => return Ok(()),
            Ok(_) => return Err(s3_error!(InternalError, "{dir} is not a directory")),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(plain_error(error)),
        }
        let buckets: DfsPath = BUCKETS.parse().expect("a valid path");
        for (path, mode) in [(buckets, 0o755), (root, 0o711)] {
            match gateway.mkdir(&path, false, Some(mode)).await {
                Ok(_) => {}
                Err(error) if error.code() == Some(ErrorCode::AlreadyExists) => {}
                Err(error) => return Err(plain_error(error)),
            }
        }
        match gateway.mkdir(&dir, false, Some(mode)).await {
            Ok(_) => gateway.chown(&dir, owner).await.map_err(plain_error)?,
            // Another request made it meanwhile.
            Err(error) if error.code() == Some(ErrorCode::AlreadyExists) => return Ok(()),
            Err(error) => return Err(plain_error(error)),
        };
        Ok(())
    }

    /// Removes a bucket's pending uploads (with the bucket).
    pub(super) async fn remove_bucket_uploads(&self, bucket: &str) {
        let Ok(dir) = bucket_uploads(bucket) else {
            return;
        };
        match self.gateway_client().remove(&dir, true).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => tracing::warn!(%bucket, %error, "removing a deleted bucket's pending uploads"),
        }
    }

    /// The pending upload `id` of `bucket` for `key`, as `acting` sees it:
    /// `NoSuchUpload` if it is not there, not readable, or for another key.
    async fn upload(&self, acting: &Acting, bucket: &str, key: &str, id: &str) -> S3Result<Upload> {
        let dir = upload_dir(bucket, id)?;
        let info_path = dir.join(INFO).expect("a valid name");
        let layout = match acting.client.layout(&info_path).await {
            Ok(layout) => layout,
            Err(error) if matches!(error.code(), Some(ErrorCode::NotFound | ErrorCode::PermissionDenied)) => {
                self.bucket_stat(acting, bucket).await?;
                return Err(no_such_upload(id));
            }
            Err(error) => return Err(self.error(acting, error)),
        };
        let info = layout
            .data
            .as_deref()
            .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
            .and_then(|bytes| serde_json::from_slice::<UploadInfo>(&bytes).ok())
            .ok_or_else(|| s3_error!(InternalError, "upload {id} has no readable description"))?;
        if info.key != key {
            return Err(s3_error!(NoSuchUpload, "upload {id} is of another key"));
        }
        Ok(Upload {
            dir,
            info,
            stat: layout.stat,
        })
    }

    /// Who acts, the part number the request names (if it names one), and
    /// the upload it names, as the caller sees it ([`Gateway::upload`]).
    async fn upload_call<T: OnUpload>(&self, request: S3Request<T>) -> S3Result<UploadCall<T>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let part = input.part_number().map(check_part_number).transpose()?;
        let (bucket, key, id) = input.upload_names();
        let upload = self.upload(&acting, bucket, key, id).await?;
        Ok(UploadCall {
            acting,
            input,
            upload,
            part,
        })
    }

    /// The files of an upload's directory.
    async fn upload_entries(&self, acting: &Acting, upload: &Upload, id: &str) -> S3Result<Vec<Stat>> {
        match acting.client.list(&upload.dir).await {
            Ok(listing) => Ok(listing.entries),
            Err(error) if error.is_not_found() => Err(no_such_upload(id)),
            Err(error) => Err(self.error(acting, error)),
        }
    }

    /// Streams `body` into part `number` of `upload`, hashing it; its MD5.
    async fn put_part(
        &self,
        acting: &Acting,
        upload: &Upload,
        id: &str,
        number: usize,
        mut body: HashingReader,
    ) -> S3Result<[u8; 16]> {
        let path = part_path(&upload.dir, number);
        // The MD5 is known only once the body has been read: it goes into
        // the commit's attributes.
        let digest = body.digest_handle();
        let options = PutOptions {
            mode: Some(0o600),
            chunked: true,
            final_attributes: Some(std::sync::Arc::new(move || {
                digest
                    .get()
                    .map(|digest| Attributes::from([(PART_MD5.to_string(), hex::encode(digest))]))
                    .unwrap_or_default()
            })),
            ..Default::default()
        };
        match acting.client.put(&path, &mut body, &options).await {
            Ok(_) => {}
            Err(error) if error.is_not_found() => return Err(no_such_upload(id)),
            Err(error) => return Err(self.error(acting, error)),
        }
        Ok(body.digest().expect("a finished upload read its body to the end"))
    }

    pub(super) async fn create_multipart_upload_op(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        object_path(&input.bucket, &input.key)?;
        let bucket = self.bucket_stat(&acting, &input.bucket).await?;
        let parent = self.ensure_bucket_uploads(&input.bucket, &bucket.owner).await?;
        let id = dfs_seal::random_id();
        let dir = parent.join(&id).expect("a valid name");
        let info = UploadInfo {
            key: input.key.clone(),
            attributes: headers_of!(input).attributes()?,
            acl: Canned::of(input.acl.as_ref().map(|acl| acl.as_str()))?,
        };
        if let Err(error) = acting.client.mkdir(&dir, false, Some(0o700)).await {
            return Err(self.fail(&acting, &input.bucket, Missing::Bucket, error).await);
        }
        let bytes = serde_json::to_vec(&info).expect("serialisable");
        let info_path = dir.join(INFO).expect("a valid name");
        if let Err(error) = acting
            .client
            .write_inline(&info_path, bytes, &Attributes::new(), true, Some(0o600))
            .await
        {
            let _ = acting.client.remove(&dir, true).await;
            return Err(self.error(&acting, error));
        }
        tracing::debug!(bucket = %input.bucket, key = %input.key, %id, "began a multipart upload");
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_op(
        &self,
        request: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (headers, method) = (request.headers.clone(), request.method.clone());
        let call = self.upload_call(request).await?;
        let number = call.part.expect("UploadPart names a part");
        let (acting, input, upload) = (call.acting, call.input, call.upload);
        let claims = super::BodyClaims {
            headers: &headers,
            method: &method,
            content_md5: input.content_md5.as_deref(),
            content_length: input.content_length,
        };
        let body = claims.body(input.body)?;
        let digest = self.put_part(&acting, &upload, &input.upload_id, number, body).await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(hex::encode(digest))),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        request: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let call = self.upload_call(request).await?;
        let number = call.part.expect("UploadPartCopy names a part");
        let (acting, input, upload) = (call.acting, call.input, call.upload);
        let CopySource::Bucket {
            bucket: source_bucket,
            key: source_key,
            version_id,
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "copies from access points are not served"));
        };
        // Paged as in GetObject.
        let layout = self
            .object_version_layout(&acting, source_bucket, source_key, version_id.as_deref())
            .await?;
        super::check_copy_conditions(
            &layout.stat,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let size = layout.stat.size;
        let range = match &input.copy_source_range {
            None => 0..size,
            Some(text) => copy_source_range(text, size)?,
        };
        if range.end - range.start > MAX_PART_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "a part has at most {MAX_PART_SIZE} bytes (5 GiB)"
            ));
        }
        // The bytes go through the gateway, streamed: from the source's
        // chunks into the part's (chunk boundaries differ in general).
        let body = HashingReader::new(Some(self.object_body(&acting, layout, range)), None);
        let digest = self.put_part(&acting, &upload, &input.upload_id, number, body).await?;
        let part = acting
            .client
            .stat(&part_path(&upload.dir, number))
            .await
            .map_err(|error| self.error(&acting, error))?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(hex::encode(digest))),
                last_modified: Some(timestamp(part.mtime_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_op(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let UploadCall {
            acting, input, upload, ..
        } = self.upload_call(request).await?;
        let wanted = completed_parts(input.multipart_upload)?;
        let target = object_path(&input.bucket, &input.key)?;
        let stored = parts_of(self.upload_entries(&acting, &upload, &input.upload_id).await?);
        let (sources, md5s, sizes) = check_parts(&wanted, &stored)?;
        let etag = multipart_etag(&md5s);
        let mut attributes = upload.info.attributes.clone();
        attributes.insert(ETAG.to_string(), etag.clone());
        let runs = encode_part_sizes(&sizes);
        if runs.len() <= MAX_PART_SIZES_LEN {
            attributes.insert(PART_SIZES.to_string(), runs);
        }
        self.make_parents(&acting, &input.bucket, &input.key, &target).await?;
        let condition = self
            .write_condition(
                &acting,
                &input.bucket,
                &input.key,
                input.if_match.as_ref(),
                input.if_none_match.as_ref(),
            )
            .await?;
        let prepared = self
            .prepare_write(&acting, &input.bucket, &input.key, condition)
            .await?;
        let condition = prepared.condition;
        prepared.stamp(&mut attributes)?;
        let request = ComposeFiles {
            path: target,
            sources,
            no_clobber: condition.no_clobber,
            mode: Some(acl::new_object_mode(upload.info.acl)),
            attributes,
        };
        // A refusal for a changed version may be a part uploaded again since it was checked.
        let stat = match condition.client(&acting).compose(&request).await {
            Ok(stat) => stat,
            Err(error) => {
                return Err(self
                    .commit_error(&acting, &input.bucket, &input.key, condition, error)
                    .await)
            }
        };
        self.finish_write(&acting, &prepared).await;
        if let Err(error) = acting.client.remove(&upload.dir, true).await {
            tracing::warn!(dir = %upload.dir, %error, "removing a completed upload's parts");
        }
        self.apply_object_acl(&acting, &input.bucket, &stat, upload.info.acl)
            .await?;
        tracing::debug!(path = %stat.path, version = stat.version, parts = sizes.len(), "completed a multipart upload");
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            version_id: prepared.answer(),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_op(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let UploadCall {
            acting, input, upload, ..
        } = self.upload_call(request).await?;
        match acting.client.remove(&upload.dir, true).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => return Err(no_such_upload(&input.upload_id)),
            Err(error) => return Err(self.error(&acting, error)),
        }
        tracing::debug!(bucket = %input.bucket, key = %input.key, id = %input.upload_id, "aborted a multipart upload");
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_op(
        &self,
        request: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let UploadCall {
            acting, input, upload, ..
        } = self.upload_call(request).await?;
        let stored = parts_of(self.upload_entries(&acting, &upload, &input.upload_id).await?);
        let max = page_size(input.max_parts)?;
        let after = match input.part_number_marker {
            None => 0,
            Some(marker) => usize::try_from(marker)
                .map_err(|_| s3_error!(InvalidArgument, "part-number-marker cannot be negative"))?,
        };
        let mut rest = stored.range(after + 1..).filter(|(_, stat)| part_etag(stat).is_some());
        let page: Vec<(usize, &Stat)> = rest.by_ref().take(max).map(|(number, stat)| (*number, stat)).collect();
        let truncated = rest.next().is_some();
        let parts = page
            .iter()
            .map(|(number, stat)| Part {
                part_number: Some(*number as i32),
                e_tag: part_etag(stat).map(|md5| ETag::Strong(md5.to_string())),
                size: Some(stat.size as i64),
                last_modified: Some(timestamp(stat.mtime_ms)),
                ..Default::default()
            })
            .collect();
        let owner = super::owner_of(&upload.stat);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page.last().filter(|_| truncated).map(|(number, _)| *number as i32),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            initiator: Some(Initiator {
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
            }),
            owner: Some(owner),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_op(
        &self,
        request: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        self.bucket_stat(&acting, &input.bucket).await?;
        let max = page_size(input.max_uploads)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let dir = bucket_uploads(&input.bucket)?;
        let entries = match acting.client.list(&dir).await {
            Ok(listing) => listing.entries,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(self.error(&acting, error)),
        };
        // Every upload's key, from its `upload` file (one read each).
        let mut uploads: Vec<(String, String, Stat)> = Vec::new();
        for entry in entries.into_iter().filter(|entry| entry.kind == EntryKind::Dir) {
            let Some(id) = entry.path.name().map(str::to_string) else {
                continue;
            };
            let Ok(info_path) = entry.path.join(INFO) else {
                continue;
            };
            let Ok(layout) = acting.client.layout(&info_path).await else {
                continue;
            };
            let info = layout
                .data
                .as_deref()
                .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
                .and_then(|bytes| serde_json::from_slice::<UploadInfo>(&bytes).ok());
            if let Some(info) = info.filter(|info| info.key.starts_with(&prefix)) {
                uploads.push((info.key, id, layout.stat));
            }
        }
        uploads.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().filter(|_| !key_marker.is_empty());
        let after = |key: &str, id: &str| match &id_marker {
            Some(id_marker) => key > key_marker.as_str() || (key == key_marker && id > id_marker.as_str()),
            None => key > key_marker.as_str(),
        };
        let (mut page, mut prefixes): (Vec<MultipartUpload>, Vec<String>) = (Vec::new(), Vec::new());
        let mut next = None;
        for (key, id, stat) in uploads.into_iter().filter(|(key, id, _)| after(key, id)) {
            let common = delimiter.as_deref().and_then(|delimiter| {
                key[prefix.len()..]
                    .find(delimiter)
                    .map(|at| key[..prefix.len() + at + delimiter.len()].to_string())
            });
            if let Some(common) = &common {
                if prefixes.last() == Some(common) {
                    continue;
                }
            }
            if page.len() + prefixes.len() == max {
                next = Some(());
                break;
            }
            match common {
                Some(common) => prefixes.push(common),
                None => {
                    let owner = super::owner_of(&stat);
                    page.push(MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(timestamp(stat.mtime_ms)),
                        initiator: Some(Initiator {
                            display_name: owner.display_name.clone(),
                            id: owner.id.clone(),
                        }),
                        owner: Some(owner),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                }
            }
        }
        let truncated = next.is_some();
        let next_key_marker = truncated
            .then(|| {
                page.last()
                    .and_then(|upload| upload.key.clone())
                    .or(prefixes.last().cloned())
            })
            .flatten();
        let next_upload_id_marker = truncated
            .then(|| page.last().and_then(|upload| upload.upload_id.clone()))
            .flatten();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker,
            next_upload_id_marker,
            uploads: Some(page),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|prefix| CommonPrefix { prefix: Some(prefix) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s_and_their_count() {
        // Two parts "a" and "b": md5(md5("a") ++ md5("b")) - 2.
        let a: [u8; 16] = Md5::digest(b"a").into();
        let b: [u8; 16] = Md5::digest(b"b").into();
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("{}-2", hex::encode(Md5::digest(&joined)))
        );
    }

    #[test]
    fn part_sizes_round_trip_as_runs_and_give_each_parts_range() {
        let sizes = [8, 8, 8, 3];
        let text = encode_part_sizes(&sizes);
        assert_eq!(text, "8x3,3x1");
        assert_eq!(decode_part_sizes(&text).unwrap(), sizes);
        for bad in ["", "8", "8x0", "x3", "8x3,", "8x10001"] {
            assert_eq!(decode_part_sizes(bad), None, "{bad:?}");
        }
        let attributes = Attributes::from([(PART_SIZES.to_string(), text)]);
        assert_eq!(part_range(&attributes, 27, 1).unwrap(), (0..8, 4));
        assert_eq!(part_range(&attributes, 27, 4).unwrap(), (24..27, 4));
        assert!(part_range(&attributes, 27, 5).is_err());
        assert!(part_range(&attributes, 27, 0).is_err());
        // Sizes that do not add up to the object: not trusted.
        assert!(part_range(&attributes, 28, 1).is_err());
        // An object that is not multipart is one part.
        assert_eq!(part_range(&Attributes::new(), 5, 1).unwrap(), (0..5, 1));
    }

    fn part(number: usize, etag: &str, size: u64) -> (usize, Stat) {
        let stat = Stat {
            path: format!("/buckets/.uploads/b/id/{number:05}").parse().unwrap(),
            kind: EntryKind::File,
            owner_uid: 2,
            owner: "ann".into(),
            mode: 0o600,
            size,
            mtime_ms: 0,
            ctime_ms: None,
            inode: None,
            nlink: None,
            local_owner: None,
            version: 3,
            attributes: Attributes::from([(PART_MD5.to_string(), etag.to_string())]),
        };
        (number, stat)
    }

    fn code<T>(result: S3Result<T>) -> Option<String> {
        result.err().map(|error| error.code().as_str().to_string())
    }

    #[test]
    fn a_copy_source_range_is_first_to_last_within_the_source() {
        assert_eq!(copy_source_range("bytes=0-4", 5).unwrap(), 0..5);
        assert_eq!(copy_source_range("bytes=2-2", 5).unwrap(), 2..3);
        assert_eq!(
            code(copy_source_range("bytes=0-21", 5)).as_deref(),
            Some("InvalidRange")
        );
        assert_eq!(code(copy_source_range("bytes=5-5", 5)).as_deref(), Some("InvalidRange"));
        for bad in [
            "0-2",
            "bytes=0",
            "bytes=0-",
            "bytes=-2",
            "bytes=3-1",
            "bytes=hello-world",
            "bytes=0-2,3-5",
        ] {
            assert_eq!(
                code(copy_source_range(bad, 5)).as_deref(),
                Some("InvalidArgument"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn complete_checks_order_etags_and_sizes() {
        let md5 = |text: &str| hex::encode(Md5::digest(text.as_bytes()));
        let stored: BTreeMap<usize, Stat> = [
            part(1, &md5("one"), MIN_PART_SIZE),
            part(2, &md5("two"), MIN_PART_SIZE - 1),
            part(3, &md5("three"), 1),
        ]
        .into();
        let wanted = |list: &[(usize, &str)]| -> Vec<(usize, String)> {
            list.iter().map(|(number, text)| (*number, md5(text))).collect()
        };
        let (sources, md5s, sizes) = check_parts(&wanted(&[(1, "one"), (3, "three")]), &stored).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].version, Some(3));
        assert_eq!(md5s.len(), 2);
        assert_eq!(sizes, [MIN_PART_SIZE, 1]);
        assert_eq!(
            code(check_parts(&wanted(&[(1, "one"), (2, "two"), (3, "three")]), &stored)).as_deref(),
            Some("EntityTooSmall")
        );
        assert_eq!(
            code(check_parts(&wanted(&[(1, "one"), (3, "wrong")]), &stored)).as_deref(),
            Some("InvalidPart")
        );
        assert_eq!(
            code(check_parts(&wanted(&[(1, "one"), (4, "four")]), &stored)).as_deref(),
            Some("InvalidPart")
        );
        // The last part may be small.
        assert!(check_parts(&wanted(&[(1, "one"), (2, "two")]), &stored).is_ok());

        let completed = |numbers: &[i32]| {
            completed_parts(Some(CompletedMultipartUpload {
                parts: Some(
                    numbers
                        .iter()
                        .enumerate()
                        .map(|(index, number)| CompletedPart {
                            part_number: Some(*number),
                            e_tag: Some(ETag::Strong(format!("etag{index}"))),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }))
        };
        assert_eq!(completed(&[1, 2, 5]).unwrap().len(), 3);
        assert_eq!(code(completed(&[2, 1])).as_deref(), Some("InvalidPartOrder"));
        // A part listed again (uploaded again meanwhile): the last one listed counts.
        let listed = completed(&[1, 1, 2]).unwrap();
        assert_eq!(listed, [(1, "etag1".to_string()), (2, "etag2".to_string())]);
        assert_eq!(code(completed(&[])).as_deref(), Some("MalformedXML"));
        assert_eq!(code(completed(&[0])).as_deref(), Some("InvalidArgument"));
        assert_eq!(code(completed(&[10_001])).as_deref(), Some("InvalidArgument"));
    }
}
