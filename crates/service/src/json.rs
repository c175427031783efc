//! JSON in and out, with rejections that speak our error format.

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Like `axum::Json`, but a bad body is a 400/413/415 `ApiError`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Like [`ApiJson`], for a request whose body is optional: no body at all
/// is `T::default()`; any body must be JSON, as for [`ApiJson`].
pub struct ApiJsonOrDefault<T>(pub T);

/// Largest optional body read (axum's default body limit).
const OPTIONAL_BODY_LIMIT: usize = 2 * 1024 * 1024;

impl<S, T> FromRequest<S> for ApiJsonOrDefault<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, OPTIONAL_BODY_LIMIT)
            .await
            .map_err(|_| ApiError::new(dfs_proto::ErrorCode::PayloadTooLarge, "request body is too large"))?;
        if bytes.is_empty() {
            return Ok(ApiJsonOrDefault(T::default()));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let ApiJson(value) = ApiJson::<T>::from_request(request, state).await?;
        Ok(ApiJsonOrDefault(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    use dfs_proto::ErrorCode;
    let status = rejection.status().as_u16();
    let text = rejection.body_text();
    match status {
        413 => ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"),
        415 => ApiError::bad_request("expected a JSON body with `Content-Type: application/json`"),
        _ => ApiError::bad_request(text),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
