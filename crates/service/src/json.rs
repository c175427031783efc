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
