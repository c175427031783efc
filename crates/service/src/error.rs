//! Errors as HTTP responses, in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dfs_proto::{ErrorBody, ErrorCode};
use dfs_store::StoreError;

/// An error a handler returns; becomes `{code, message}` with the status of its code.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    /// A failure that is our fault; the detail is logged, not sent.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(ErrorCode::Internal, "internal error (see the service log)")
    }
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

/// The error code that carries HTTP status `status` (for answers made by
/// the frame rather than by a handler).
pub(crate) fn code_of_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        416 => ErrorCode::RangeNotSatisfiable,
        422 => ErrorCode::ChecksumMismatch,
        423 => ErrorCode::Locked,
        429 => ErrorCode::TooManyRequests,
        431 => ErrorCode::HeadersTooLarge,
        503 => ErrorCode::Unavailable,
        // 400 and any other client error.
        400..500 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.0.code, self.0.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError(body)
    }
}

/// The one mapping from store errors to HTTP errors, for every service: the
/// variant gives the code, and the message (the store writes it whole, for
/// a human) is passed on as it is; a backend failure is logged, not sent.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => ApiError::not_found(message),
            StoreError::AlreadyExists(message) => ApiError::already_exists(message),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::PermissionDenied(message) => ApiError::permission_denied(message),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::Locked(message) => ApiError::new(ErrorCode::Locked, message),
            StoreError::TooMany(message) => ApiError::new(ErrorCode::TooManyRequests, message),
            StoreError::PreconditionFailed(message) => ApiError::new(ErrorCode::PreconditionFailed, message),
            StoreError::Backend(error) => ApiError::internal(format!("{error:#}")),
        }
    }
}

impl From<dfs_proto::path::PathError> for ApiError {
    fn from(error: dfs_proto::path::PathError) -> Self {
        ApiError::bad_request(format!("bad path: {error}"))
    }
}

impl From<dfs_proto::chunk::BadChunkId> for ApiError {
    fn from(error: dfs_proto::chunk::BadChunkId) -> Self {
        ApiError::bad_request(error.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(format!("{error:#}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        ApiError::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `StoreError` variant, as a function of its message.
    type Variant = fn(String) -> StoreError;

    #[test]
    fn store_errors_keep_their_message_and_get_their_code() {
        let cases: [(Variant, ErrorCode, u16); 8] = [
            (StoreError::NotFound, ErrorCode::NotFound, 404),
            (StoreError::AlreadyExists, ErrorCode::AlreadyExists, 409),
            (StoreError::Conflict, ErrorCode::Conflict, 409),
            (StoreError::PermissionDenied, ErrorCode::PermissionDenied, 403),
            (StoreError::Invalid, ErrorCode::BadRequest, 400),
            (StoreError::Locked, ErrorCode::Locked, 423),
            (StoreError::TooMany, ErrorCode::TooManyRequests, 429),
            (StoreError::PreconditionFailed, ErrorCode::PreconditionFailed, 412),
        ];
        for (variant, code, status) in cases {
            let message = "no such file or directory: /home/ann/a (the store's whole message)";
            let api = ApiError::from(variant(message.to_string()));
            assert_eq!((api.code(), api.0.code.http_status()), (code, status), "{api}");
            assert_eq!(api.0.message, message);
        }
        // A backend failure's detail stays in the log.
        let api = ApiError::from(StoreError::Backend(anyhow::anyhow!("connection refused to db:5432")));
        assert_eq!(api.code(), ErrorCode::Internal);
        assert!(!api.0.message.contains("5432"), "{}", api.0.message);
    }
}
