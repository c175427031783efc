//! The error body every DFS service returns: `{"code": "...", "message": "..."}`.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. The HTTP status is derived from the
/// code in exactly one place (`dfs-service`), so clients may branch on either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (bad JSON, bad path, bad name).
    BadRequest,
    /// 401: no ticket, or a ticket that is tampered, expired, revoked or wrongly keyed.
    Unauthenticated,
    /// 403: the ticket is valid but does not allow this operation.
    PermissionDenied,
    /// 404: the path, user or chunk does not exist.
    NotFound,
    /// 405: the endpoint exists but not with this method.
    MethodNotAllowed,
    /// 409: the target already exists, or a concurrent change won.
    AlreadyExists,
    /// 409: the operation conflicts with the current state (e.g. a non-empty directory).
    Conflict,
    /// 412: a conditional write (`If-Match`, `--if-version`) found another version.
    PreconditionFailed,
    /// 416: a range read asked for bytes beyond the end of a chunk.
    RangeNotSatisfiable,
    /// 423: a lock held by someone else forbids this change.
    Locked,
    /// 413: the request body is larger than the service accepts.
    PayloadTooLarge,
    /// 414: the request target is longer than the service reads.
    UriTooLong,
    /// 431: the request's header lines are too many or too large.
    HeadersTooLarge,
    /// 422: a chunk's content does not match its id.
    ChecksumMismatch,
    /// 429: too many attempts; retry later.
    TooManyRequests,
    /// 503: not enough live file servers, or a dependency is unreachable.
    Unavailable,
    /// 500: a bug or an I/O failure on the server.
    Internal,
}

impl ErrorCode {
    /// The HTTP status code that carries this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::Locked => 423,
            ErrorCode::ChecksumMismatch => 422,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// One line for a human: "no such file: /home/ann/x".
    pub message: String,
    /// Ids of the file servers that failed this request, for a caller that
    /// must avoid them next time: a primary file server's `unavailable`
    /// answer names the workers it could not replicate to, and the client
    /// asks for a placement without them. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_servers: Vec<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            failed_servers: Vec::new(),
        }
    }

    /// The body naming `servers` as the ones that failed.
    pub fn with_failed_servers(mut self, servers: Vec<String>) -> Self {
        self.failed_servers = servers;
        self
    }
}
