//! Request headers the directory service's calls take, as OpenAPI
//! parameters (the extractors that read them are `locks::WriteScope`,
//! `tx::IfVersion` and the conditional GET of `files.rs`).

/// The headers every namespace call may carry.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct Scope {
    /// A lock holder's token (`FENCE.NONCE`): write under that lock (and
    /// present lock semantics: a covering shared lock then stops the write).
    #[param(rename = "x-dfs-lock-token", required = false)]
    lock_token: String,
    /// A transaction id: a write is staged in it (applied by its commit), a
    /// read is recorded for the commit's check and sees the staged changes.
    #[param(rename = "x-dfs-tx", required = false)]
    tx: String,
    /// `UID:GID@DOMAIN`: what a create makes (mkdir, a new file) gets this
    /// local owner, the numbers a mount with `--allow-other` shows its
    /// local users (`dfs_proto::namespace::LocalOwner`; grants nothing);
    /// not with `x-dfs-tx`.
    #[param(
        rename = "x-dfs-local-owner",
        required = false,
        example = "65534:65534@0123456789abcdef"
    )]
    local_owner: String,
}

/// The header of a conditional change.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct Conditional {
    /// `"N"`: change only if the file (a rename's source) is at version N
    /// (`x-dfs-version`), else 412 precondition_failed and nothing changes.
    #[param(rename = "If-Match", required = false, example = "\"3\"")]
    if_match: String,
}

/// The headers of a conditional or partial `GET /v1/files`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct FileRead {
    /// One range (`bytes=A-B`, `bytes=A-`, `bytes=-N`); several ranges or
    /// garbage are ignored (the whole file); a range past the end is 416.
    #[param(rename = "Range", required = false, example = "bytes=0-1023")]
    range: String,
    /// An `ETag` of the caller's copy: 304 if it is current.
    #[param(rename = "If-None-Match", required = false)]
    if_none_match: String,
    /// An HTTP date: 304 if the file has not changed since.
    #[param(rename = "If-Modified-Since", required = false)]
    if_modified_since: String,
    /// An `ETag` or date: the `Range` applies only if the file still matches.
    #[param(rename = "If-Range", required = false)]
    if_range: String,
}

/// The attributes of the version a `PUT /v1/files` writes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct WriteAttributes {
    /// A JSON object of strings (`dfs_proto::attributes`: lowercase names, at
    /// most 8 KiB); none without it.
    #[param(
        rename = "x-dfs-attributes",
        required = false,
        example = "{\"content-type\":\"text/plain\"}"
    )]
    attributes: String,
}
