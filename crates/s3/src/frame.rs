//! What the gateway adds around s3s, for every request:
//! - a request id: the `x-amz-request-id` header of every answer, and the
//!   `RequestId` of every S3 error body (s3s writes neither);
//! - the bounds of a presigned URL's `X-Amz-Expires` (1 s to 7 days), which
//!   s3s does not check: a URL outside them is refused as one that has
//!   expired (`403 AccessDenied`, as RGW does; AWS says
//!   `AuthorizationQueryParametersError`), before any signature check;
//! - a browser form upload (POST object) whose fields fail a condition of
//!   its policy is `403 AccessDenied` ("Invalid according to Policy"), as
//!   S3 answers it; s3s says `400 InvalidPolicyDocument`, which S3 keeps
//!   for a policy it cannot read.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The response header naming a request's id.
pub const REQUEST_ID: &str = "x-amz-request-id";

/// The longest a presigned URL may be valid (S3's: 7 days).
pub const MAX_PRESIGNED_SECONDS: u64 = 7 * 24 * 3600;

/// The largest error body given its `RequestId` (S3's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The middleware: see the module docs.
pub async fn frame(request: Request, next: Next) -> Response {
    let id = dfs_seal::random_id()[..16].to_ascii_uppercase();
    let form_upload = request.method() == Method::POST;
    let mut response = match presigned_expiry_refusal(request.uri().query()) {
        Some(message) => error_response(StatusCode::FORBIDDEN, "AccessDenied", message),
        None => next.run(request).await,
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        response = fix_error(response, &id, form_upload).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Why a presigned URL's `X-Amz-Expires` (in `query`) can never be valid, if it cannot.
fn presigned_expiry_refusal(query: Option<&str>) -> Option<&'static str> {
    let expires = query?.split('&').find_map(|pair| pair.strip_prefix("X-Amz-Expires="))?;
    match expires.parse::<u64>() {
        Ok(seconds) if (1..=MAX_PRESIGNED_SECONDS).contains(&seconds) => None,
        Ok(0) => Some("Request has expired (X-Amz-Expires is 0)"),
        Ok(_) => Some("X-Amz-Expires must be at most 604800 seconds (7 days)"),
        // A negative number of seconds: it expired before it was signed.
        Err(_) if expires.starts_with('-') => Some("Request has expired (X-Amz-Expires is negative)"),
        Err(_) => Some("X-Amz-Expires must be a whole number of seconds"),
    }
}

/// An S3 XML error body (`message` escaped).
fn error_body(code: &str, message: &str) -> String {
    let message = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>")
}

/// An S3 XML error answer.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_body(code, message)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

/// `response` with `<RequestId>id</RequestId>` in its S3 error body, if it
/// has one without it (a HEAD's error has no body), and, for a POST, a
/// failed policy condition as S3 answers it (see the module docs).
async fn fix_error(response: Response, id: &str, post: bool) -> Response {
    let is_xml = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("xml"));
    if !is_xml {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "reading an S3 error body to give it its request id");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let policy_failed = post.then(|| policy_condition_failure(&bytes)).flatten();
    let bytes = match policy_failed {
        Some(message) => {
            parts.status = StatusCode::FORBIDDEN;
            error_body("AccessDenied", &message).into()
        }
        None => bytes,
    };
    let body = match add_request_id(&bytes, id) {
        Some(body) => {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            Body::from(body)
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// The message S3 gives a form upload whose fields fail its policy, if
/// `body` is s3s's error for that: `InvalidPolicyDocument` with a message
/// naming a failed condition ("Policy condition ... failed").
fn policy_condition_failure(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("<Code>InvalidPolicyDocument</Code>") {
        return None;
    }
    let start = text.find("<Message>")? + "<Message>".len();
    let end = start + text[start..].find("</Message>")?;
    let message = &text[start..end];
    let failed = message.starts_with("Policy condition") && message.contains("failed");
    // The text is s3s's, already escaped: unescape what error_body escapes again.
    let message = message
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    failed.then(|| format!("Invalid according to Policy: {message}"))
}

/// An S3 error body with its `RequestId`, if `body` is one without it.
fn add_request_id(body: &[u8], id: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if text.contains("<RequestId>") {
        return None;
    }
    let end = text.rfind("</Error>")?;
    Some(format!("{}<RequestId>{id}</RequestId>{}", &text[..end], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_are_valid_for_one_second_to_seven_days() {
        let query =
            |expires: &str| format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={expires}&X-Amz-Signature=ab");
        assert_eq!(presigned_expiry_refusal(Some(&query("1"))), None);
        assert_eq!(presigned_expiry_refusal(Some(&query("604800"))), None);
        for bad in ["0", "604801", "-7", "x", ""] {
            assert!(presigned_expiry_refusal(Some(&query(bad))).is_some(), "{bad:?}");
        }
        assert_eq!(presigned_expiry_refusal(Some("list-type=2")), None);
        assert_eq!(presigned_expiry_refusal(None), None);
    }

    #[test]
    fn error_bodies_get_the_request_id() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        assert_eq!(
            add_request_id(body, "ID1").unwrap(),
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>ID1</RequestId></Error>"
        );
        assert_eq!(add_request_id(b"<Error><RequestId>x</RequestId></Error>", "ID1"), None);
        assert_eq!(add_request_id(b"<ListBucketResult/>", "ID1"), None);
    }

    #[test]
    fn a_failed_policy_condition_is_access_denied_and_an_unreadable_policy_is_not() {
        let failed = error_body(
            "InvalidPolicyDocument",
            "Policy condition 'eq' for field 'x-amz-meta-foo' failed: expected '', got 'bar'",
        );
        assert_eq!(
            policy_condition_failure(failed.as_bytes()).unwrap(),
            "Invalid according to Policy: Policy condition 'eq' for field 'x-amz-meta-foo' failed: expected '', got 'bar'"
        );
        let unreadable = error_body("InvalidPolicyDocument", "failed to parse POST policy");
        assert_eq!(policy_condition_failure(unreadable.as_bytes()), None);
        let other = error_body("AccessDenied", "Policy condition failed");
        assert_eq!(policy_condition_failure(other.as_bytes()), None);
    }
}
