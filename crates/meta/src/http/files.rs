//! `PUT` and `GET /v1/files`: a whole file in one plain HTTP request, of any
//! size (`curl -T big.iso`, `curl -o big.iso`, with a ticket).
//!
//! A body of at most `INLINE_MAX` bytes is stored inline in the metadata, in
//! one transaction; a larger one is streamed into chunks (`chunked.rs`). A
//! read streams either kind, with `Range` (one range), `ETag` (a hash of the
//! content: of the bytes of an inline file, of the chunk list of a chunked
//! one), `Last-Modified` and conditional GET (`If-None-Match`,
//! `If-Modified-Since`: 304; `If-Range`).

use super::doc::{Conditional, FileRead, Scope, WriteAttributes};
use super::{chunked, locks, now_ms, tx, ApiQuery, Shared};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dfs_proto::namespace::{
    FileType, InlineWrite, PathQuery, Stat, INLINE_MAX, LAYOUT_PAGE_MAX, SYMLINK_MAX, UPLOAD_PAGE_CHUNKS,
    VERSION_HEADER,
};
use dfs_proto::watch::WatchKind;
use dfs_proto::{Attributes, ErrorCode, ATTRIBUTES_HEADER};
use dfs_service::range::{self, RangeRequest};
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::namespace::{ContentPage, FileContent};
use dfs_store::tx::StagedOp;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes a whole file from the body, of any size (`curl -T FILE`).
///
/// Up to `INLINE_MAX` (64 KiB) bytes are stored inline in the metadata database; a larger body
/// (declared or found so) is streamed into chunks by the directory service. Staged with `x-dfs-tx`,
/// conditional with `If-Match`; the version's attributes in `x-dfs-attributes`.
#[utoipa::path(put, path = "/v1/files", tag = "files", params(InlineWrite, Scope, Conditional, WriteAttributes),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes"),
    responses((status = 200, description = "the new version", body = Stat)))]
pub(super) async fn write(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiQuery(query): ApiQuery<InlineWrite>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ApiJson<Stat>> {
    super::check_new_path(&query.path)?;
    let attributes = attributes_of(&headers)?;
    if query.parents_below.is_some() && scope.tx.is_some() {
        return Err(ApiError::bad_request(
            "parents_below is not offered in a transaction: make the directories first",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // Read up to INLINE_MAX + 1 bytes to tell a small body from a large one.
    let mut rest = body.into_data_stream();
    let mut head = Vec::new();
    let mut held = 0;
    let mut small = declared.is_none_or(|declared| declared <= INLINE_MAX);
    while small {
        match rest.next().await {
            None => break,
            Some(Ok(piece)) => {
                held += piece.len() as u64;
                head.push(piece);
                small = held <= INLINE_MAX;
            }
            Some(Err(error)) => return Err(ApiError::bad_request(format!("reading the body: {error}"))),
        }
    }
    if !small {
        if let Some(mode) = query
            .mode
            .filter(|&mode| FileType::of_mode(mode) != Some(FileType::Regular))
        {
            return Err(ApiError::bad_request(format!(
                "{}: mode {mode:o} asks for a special file, whose content is at most {SYMLINK_MAX} bytes",
                query.path
            )));
        }
        let request = chunked::WriteRequest {
            ticket: dfs_service::caller::bearer_token(&headers)?.to_string(),
            lock_token: scope.lock_token,
            tx: scope.tx,
            local_owner: scope.local_owner,
            if_version,
            query,
            attributes,
        };
        return Ok(ApiJson(chunked::write(&directory, request, head, rest).await?));
    }
    let data: Vec<u8> = head.concat();
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    // Type bits make a special file; the store checks them and its content.
    let mode = query.mode;
    if scope.tx.is_some() || if_version.is_some() {
        let op = StagedOp::PutInline {
            path: query.path.clone(),
            data,
            mode,
            no_clobber: query.no_clobber,
            attributes,
        };
        if let Some(id) = scope.tx {
            return Ok(ApiJson(tx::stage(&directory, who, id, op).await?));
        }
        let (path, version) = (query.path, if_version.unwrap_or_default());
        let stat = tx::compare_and_set(
            &directory,
            who,
            path.clone(),
            version,
            dfs_store::tx::Change::Op(op),
            path.clone(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} is gone already")))?;
        directory.watch.publish_stat(&stat, WatchKind::Modified);
        return Ok(ApiJson(stat));
    }
    let stat = crate::state::queued(|| {
        let (path, no_clobber, parents_below) = (query.path, query.no_clobber, query.parents_below);
        store.write_inline_async(who, path, data, attributes, mode, no_clobber, parents_below, now_ms())
    })
    .await?;
    directory.watch.publish_write(&stat);
    Ok(ApiJson(stat))
}

/// The attributes a write names in [`ATTRIBUTES_HEADER`] (none without
/// it), within the limits of `dfs_proto::attributes` (else 400, before
/// any byte of the body is read).
fn attributes_of(headers: &HeaderMap) -> ApiResult<Attributes> {
    let Some(value) = headers.get(ATTRIBUTES_HEADER) else {
        return Ok(Attributes::new());
    };
    let attributes: Attributes = std::str::from_utf8(value.as_bytes())
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(text).map_err(|error| error.to_string()))
        .map_err(|error| {
            ApiError::bad_request(format!("{ATTRIBUTES_HEADER} must be a JSON object of strings: {error}"))
        })?;
    dfs_proto::attributes::check_attributes(&attributes)
        .map_err(|error| ApiError::bad_request(format!("{ATTRIBUTES_HEADER}: {error}; nothing was written")))?;
    Ok(attributes)
}

/// The bytes of a file, inline or chunked (`curl -o FILE`).
///
/// Chunks are fetched from the file servers by the directory service, each checked against its
/// BLAKE3 hash before it is sent, a few at a time whatever the size; a chunk no replica serves
/// intact ends the body short of its Content-Length. One `Range`; `ETag` (a hash of the content),
/// `Last-Modified`; `If-None-Match` / `If-Modified-Since` answer 304; `If-Range`.
#[utoipa::path(get, path = "/v1/files", tag = "files", params(PathQuery, Scope, FileRead),
    responses(
        (status = 200, description = "the file (`Content-Disposition: attachment`)", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("x-dfs-version" = u64, description = "the file's version"), ("ETag" = String), ("Last-Modified" = String), ("Accept-Ranges" = String))),
        (status = 206, description = "the range named in Content-Range", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("Content-Range" = String))),
        (status = 304, description = "not modified: the caller's copy is current; no body")
    ))]
pub(super) async fn read(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = directory.principal(&ticket).await;
    let path = query.path.clone();
    let (stat, content) = read_content(&directory, &who, scope.tx, query.path).await?;
    let validators = match &content {
        Content::Whole(content) => Validators::of(&stat, content),
        Content::Paged => Validators::of_pages(&directory, &who, &stat).await?,
    };
    if validators.not_modified(&headers) {
        return Ok(validators.apply(StatusCode::NOT_MODIFIED.into_response(), &stat));
    }
    let range_header = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .filter(|_| validators.range_applies(&headers));
    let span = match range::parse(range_header, stat.size) {
        RangeRequest::Whole => None,
        RangeRequest::Partial(span) => Some(span),
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!(
                    "{path} has {} bytes; the range {} lies outside them",
                    stat.size,
                    range_header.unwrap_or_default()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, header_value(&format!("bytes */{}", stat.size)));
            return Ok(response);
        }
    };
    let bytes = span.clone().unwrap_or(0..stat.size);
    let body = match content {
        Content::Whole(FileContent::Inline(data)) => {
            Body::from(Bytes::from(data).slice(bytes.start as usize..bytes.end as usize))
        }
        Content::Whole(FileContent::Chunks(chunks)) => {
            let chunks = chunked::ChunkSource::List(chunks);
            chunked::read_body(&directory, &ticket.sid, chunks, bytes.clone()).await?
        }
        Content::Paged => {
            let chunks = chunked::ChunkSource::Pages {
                who,
                path: stat.path.clone(),
                version: stat.version,
            };
            chunked::read_body(&directory, &ticket.sid, chunks, bytes.clone()).await?
        }
    };
    let mut response = Response::new(body);
    if let Some(span) = &span {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes {}-{}/{}", span.start, span.end - 1, stat.size);
        response
            .headers_mut()
            .insert(header::CONTENT_RANGE, header_value(&range));
    }
    let out = response.headers_mut();
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.end - bytes.start));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A stored file is never a page of this origin (the web file manager's):
    // saved, not shown; and were it shown, sandboxed with no script.
    out.insert(header::CONTENT_DISPOSITION, header_value(&attachment(&path)));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(validators.apply(response, &stat))
}

/// A file's content as `GET /v1/files` serves it.
enum Content {
    /// Inline bytes, or a chunk list of at most a page.
    Whole(FileContent),
    /// A chunk list of more than a page: read a page at a time, while it is served.
    Paged,
}

/// The stat and content of the file at `path` (in transaction `tx`, whole, if one is named).
async fn read_content(
    directory: &Arc<crate::state::Directory>,
    who: &dfs_store::namespace::Principal,
    tx: Option<String>,
    path: dfs_proto::DfsPath,
) -> ApiResult<(Stat, Content)> {
    if tx.is_some() {
        let (stat, content) = super::namespace::file_content(directory, who.clone(), tx, path).await?;
        return Ok((stat, Content::Whole(content)));
    }
    let store = Arc::clone(&directory.store);
    let who = who.clone();
    let (stat, page) = super::reading(&directory.store, move || {
        store.layout_page(&who, &path, 0, UPLOAD_PAGE_CHUNKS, None)
    })
    .await?;
    let content = match page {
        ContentPage::Inline(data) => Content::Whole(FileContent::Inline(data)),
        ContentPage::Chunks { chunks, more: false } => Content::Whole(FileContent::Chunks(
            chunks.into_iter().map(|placed| placed.chunk).collect(),
        )),
        ContentPage::Chunks { more: true, .. } => Content::Paged,
    };
    Ok((stat, content))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("an ASCII header value")
}

/// `attachment; filename*=UTF-8''NAME`, the name percent-encoded (RFC 6266, 8187).
fn attachment(path: &dfs_proto::DfsPath) -> String {
    let name = path.as_str().rsplit('/').next().unwrap_or_default();
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// What a conditional request compares: the content's entity tag and the
/// modification time (whole seconds, as HTTP dates have them).
struct Validators {
    etag: String,
    modified_secs: u64,
}

impl Validators {
    fn of(stat: &Stat, content: &FileContent) -> Self {
        let mut hasher = blake3::Hasher::new();
        match content {
            FileContent::Inline(data) => {
                hasher.update(b"inline\n");
                hasher.update(data);
            }
            FileContent::Chunks(chunks) => {
                hasher.update(b"chunks\n");
                for chunk in chunks {
                    hash_chunk(&mut hasher, chunk);
                }
            }
        }
        Self::of_hash(stat, hasher)
    }

    /// [`Validators::of`] a chunked file of more than a page, its chunk
    /// list read a page at a time (of `stat`'s version: a file that changes
    /// meanwhile is refused with 412, and may be asked for again).
    async fn of_pages(
        directory: &Arc<crate::state::Directory>,
        who: &dfs_store::namespace::Principal,
        stat: &Stat,
    ) -> ApiResult<Self> {
        let store = Arc::clone(&directory.store);
        let (who, path, version) = (who.clone(), stat.path.clone(), stat.version);
        let hasher = super::blocking(move || {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"chunks\n");
            let mut offset = 0;
            loop {
                let (_, page) = store.layout_page(&who, &path, offset, LAYOUT_PAGE_MAX, Some(version))?;
                let ContentPage::Chunks { chunks, more } = page else {
                    break;
                };
                for placed in &chunks {
                    hash_chunk(&mut hasher, &placed.chunk);
                    offset = placed.offset + placed.chunk.size;
                }
                if !more {
                    break;
                }
            }
            Ok(hasher)
        })
        .await?;
        Ok(Self::of_hash(stat, hasher))
    }

    fn of_hash(stat: &Stat, hasher: blake3::Hasher) -> Self {
        Validators {
            etag: format!("\"{}\"", &hasher.finalize().to_hex()[..32]),
            modified_secs: stat.mtime_ms / 1000,
        }
    }

    fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.modified_secs))
    }

    /// `If-None-Match` names this content (or `*`), or, without it,
    /// `If-Modified-Since` is not before the last change.
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
            let tags = tags.to_str().unwrap_or_default();
            return tags.split(',').map(str::trim).any(|tag| {
                // Weak comparison (RFC 9110 13.1.2): W/ does not matter here.
                tag == "*" || tag.trim_start_matches("W/") == self.etag
            });
        }
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| httpdate::parse_http_date(value).ok())
            .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|since| self.modified_secs <= since.as_secs())
    }

    /// Whether a `Range` is to be honoured: no `If-Range`, or one naming
    /// this content (strong comparison) or its exact modification date.
    fn range_applies(&self, headers: &HeaderMap) -> bool {
        let Some(condition) = headers.get(header::IF_RANGE).and_then(|value| value.to_str().ok()) else {
            return headers.get(header::IF_RANGE).is_none();
        };
        let condition = condition.trim();
        if condition.starts_with('"') {
            return condition == self.etag;
        }
        httpdate::parse_http_date(condition)
            .ok()
            .is_some_and(|date| date == SystemTime::UNIX_EPOCH + Duration::from_secs(self.modified_secs))
    }

    /// `response` with the validators, the version and the caching rule.
    fn apply(&self, mut response: Response, stat: &Stat) -> Response {
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(&self.etag));
        headers.insert(header::LAST_MODIFIED, header_value(&self.last_modified()));
        headers.insert(VERSION_HEADER, HeaderValue::from(stat.version));
        // Behind a ticket: no shared cache keeps it; a private one asks first.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        response
    }
}

/// One chunk's part of a chunked file's entity tag.
fn hash_chunk(hasher: &mut blake3::Hasher, chunk: &dfs_proto::namespace::ChunkRef) {
    hasher.update(format!("{} {}\n", chunk.id, chunk.size).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            modified_secs: 1_000_000,
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn conditional_gets_compare_the_tag_or_else_the_date() {
        let v = validators();
        let date = v.last_modified();
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(999_999));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"abc\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"x\", W/\"abc\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "*")])));
        assert!(!v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"x\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &date)])));
        assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &earlier)])));
        assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, "garbage")])));
        // If-None-Match wins over If-Modified-Since.
        assert!(!v.not_modified(&headers(&[
            (header::IF_NONE_MATCH, "\"x\""),
            (header::IF_MODIFIED_SINCE, &date)
        ])));
        assert!(!v.not_modified(&HeaderMap::new()));
    }

    #[test]
    fn a_range_applies_only_while_if_range_holds() {
        let v = validators();
        assert!(v.range_applies(&HeaderMap::new()));
        assert!(v.range_applies(&headers(&[(header::IF_RANGE, "\"abc\"")])));
        assert!(!v.range_applies(&headers(&[(header::IF_RANGE, "W/\"abc\"")])));
        assert!(!v.range_applies(&headers(&[(header::IF_RANGE, "\"old\"")])));
        assert!(v.range_applies(&headers(&[(header::IF_RANGE, &v.last_modified())])));
        assert!(!v.range_applies(&headers(&[(header::IF_RANGE, "Thu, 01 Jan 1970 00:00:00 GMT")])));
    }

    #[test]
    fn attachment_names_are_percent_encoded() {
        let path: dfs_proto::DfsPath = "/home/ann/a b\"é.txt".parse().unwrap();
        assert_eq!(attachment(&path), "attachment; filename*=UTF-8''a%20b%22%C3%A9.txt");
    }
}
