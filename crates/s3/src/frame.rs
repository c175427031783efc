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
//!   for a policy it cannot read;
//! - a browser form upload whose fields carry a policy but no signature is
//!   `400 InvalidArgument`, and one whose policy's expiration is not ISO
//!   8601 (`2026-12-06T12:00:00Z`) is `400 InvalidPolicyDocument`, as S3
//!   answers them (s3s takes the first as anonymous and reads the second
//!   leniently); `${filename}` in a form's key becomes the name of its
//!   file, as S3 does. The form's fields come before its file (S3's rule), so
//!   only they are read ahead, at most [`MAX_FORM_FIELDS`] bytes; the body
//!   then goes on to s3s whole;
//! - CORS (`gateway/cors.rs`): a preflight (`OPTIONS`) is answered here
//!   from the bucket's rules, and an answer to a request with an `Origin`
//!   gets the `Access-Control-*` headers of the rule that allows it;
//! - an error answer to a request with a body closes the connection
//!   (`Connection: close`): the refusal may come before the body was read,
//!   and a client that sends it anyway must not have it read as its next
//!   request (boto3 sends it after waiting a second for `100 Continue`).

use crate::gateway::cors::CorsRules;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The response header naming a request's id.
pub const REQUEST_ID: &str = "x-amz-request-id";

/// The longest a presigned URL may be valid (S3's: 7 days).
pub const MAX_PRESIGNED_SECONDS: u64 = 7 * 24 * 3600;

/// The most bytes of a form upload read ahead for its fields.
pub const MAX_FORM_FIELDS: usize = 64 * 1024;

/// The largest error body given its `RequestId` (S3's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The middleware: see the module docs.
pub async fn frame(State(cors): State<CorsRules>, request: Request, next: Next) -> Response {
    let id = dfs_seal::random_id()[..16].to_ascii_uppercase();
    let method = request.method().clone();
    // CORS, for a preflight or a request from a page: the origin, and the
    // bucket (path-style requests only: the path's first segment).
    let origin = request
        .headers()
        .get("origin")
        .and_then(|origin| origin.to_str().ok())
        .map(str::to_string);
    let bucket = (method == Method::OPTIONS || origin.is_some())
        .then(|| request.uri().path().trim_start_matches('/').split('/').next())
        .flatten()
        .filter(|bucket| !bucket.is_empty())
        .map(str::to_string);
    let form_upload = request.method() == Method::POST;
    let has_body = request.headers().contains_key(TRANSFER_ENCODING)
        || request
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let (request, form_refusal) = match form_boundary(&request) {
        Some(boundary) => read_form_fields(request, &boundary).await,
        None => (request, None),
    };
    let mut response = if method == Method::OPTIONS {
        match cors.preflight(bucket.as_deref(), request.headers()).await {
            Ok(grant) => {
                let mut response = Response::new(Body::empty());
                grant.apply(response.headers_mut());
                response
            }
            Err((status, code, message)) => error_response(status, code, message),
        }
    } else if let Some(message) = presigned_expiry_refusal(request.uri().query()) {
        error_response(StatusCode::FORBIDDEN, "AccessDenied", message)
    } else if let Some(message) = encryption_refusal(request.headers()) {
        error_response(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    } else if let Some((code, message)) = form_refusal {
        error_response(StatusCode::BAD_REQUEST, code, message)
    } else {
        next.run(request).await
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        response = fix_error(response, &id, form_upload).await;
        if has_body {
            // Refused, maybe before its body was read: a client that sends
            // the body anyway (boto3 does, after a second of waiting for
            // `100 Continue`) must not have it read as its next request.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
    if let (Some(bucket), Some(origin), false) = (&bucket, &origin, method == Method::OPTIONS) {
        if let Some(grant) = cors.for_request(bucket, origin, &method).await {
            grant.apply(response.headers_mut());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Server-side encryption is not served: a request asking for it (SSE-C's
/// `x-amz-server-side-encryption-customer-*`, also for a copy's source,
/// or SSE-S3 and SSE-KMS's `x-amz-server-side-encryption`) is refused, 400
/// `InvalidArgument`, rather than stored in the clear as if encrypted (or
/// read back without the key it was "encrypted" with).
fn encryption_refusal(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    headers
        .keys()
        .any(|name| {
            let name = name.as_str();
            name.starts_with("x-amz-server-side-encryption")
                || name.starts_with("x-amz-copy-source-server-side-encryption")
        })
        .then_some("server-side encryption (SSE-C, SSE-S3, SSE-KMS) is not served by this gateway")
}

/// The boundary of a POST form upload (`multipart/form-data`), if `request` is one.
fn form_boundary(request: &Request) -> Option<String> {
    if request.method() != Method::POST {
        return None;
    }
    let content_type = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let (kind, rest) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    rest.split(';').find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
    })
}

/// Reads ahead the fields of a form upload (up to its file, at most
/// [`MAX_FORM_FIELDS`] bytes), and gives back the request with its whole
/// body, and why S3 would refuse the form, if it would.
async fn read_form_fields(request: Request, boundary: &str) -> (Request, Option<(&'static str, &'static str)>) {
    use futures_util::StreamExt;
    let (mut parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut head = Vec::new();
    let mut failed = None;
    // Up to the end of the file part's headers (its filename).
    while head.len() < MAX_FORM_FIELDS && file_headers_end(&head).is_none() {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(error)) => {
                failed = Some(error);
                break;
            }
            None => break,
        }
    }
    let refusal = form_refusal(&form_fields(&head, boundary));
    if let Some(with_name) = with_file_name(&head, boundary) {
        let grown = with_name.len() as i64 - head.len() as i64;
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<i64>().ok());
        if let Some(length) = length {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from((length + grown).max(0) as u64));
        }
        head = with_name;
    }
    let ahead = futures_util::stream::iter([Ok::<_, axum::Error>(bytes::Bytes::from(head))]);
    let failed = futures_util::stream::iter(failed.map(Err));
    let body = Body::from_stream(ahead.chain(failed).chain(stream));
    (Request::from_parts(parts, body), refusal)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// Where the headers of a form's file part end in `head`, if they are there.
fn file_headers_end(head: &[u8]) -> Option<usize> {
    let at = find(head, b"name=\"file\"", 0)?;
    find(head, b"\r\n\r\n", at)
}

/// `head` with `${filename}` in its `key` field replaced by the file part's
/// file name, as S3 does, if the key has it and the file names one.
fn with_file_name(head: &[u8], boundary: &str) -> Option<Vec<u8>> {
    const PLACEHOLDER: &[u8] = b"${filename}";
    let file = find(head, b"name=\"file\"", 0)?;
    let line_end = find(head, b"\r\n", file)?;
    let name_at = find(&head[..line_end], b"filename=\"", file)? + b"filename=\"".len();
    let name_end = find(&head[..line_end], b"\"", name_at)?;
    let file_name = &head[name_at..name_end];
    let key = find(head, b"name=\"key\"", 0).filter(|at| *at < file)?;
    let value_at = find(head, b"\r\n\r\n", key)? + 4;
    let value_end = find(head, format!("\r\n--{boundary}").as_bytes(), value_at)?;
    let placeholder = find(&head[..value_end], PLACEHOLDER, value_at)?;
    let mut out = head[..placeholder].to_vec();
    out.extend_from_slice(file_name);
    out.extend_from_slice(&head[placeholder + PLACEHOLDER.len()..]);
    Some(out)
}

/// The complete text fields (name lowercased, value) found in `head`, the
/// start of a `multipart/form-data` body.
fn form_fields(head: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    let parts: Vec<&str> = text.split(delimiter.as_str()).collect();
    // The last piece may be cut short: only parts followed by a delimiter count.
    for part in parts.iter().take(parts.len().saturating_sub(1)).skip(1) {
        let Some((headers, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = headers.split(';').find_map(|param| {
            let (key, value) = param.trim().split_once('=')?;
            key.eq_ignore_ascii_case("name")
                .then(|| value.trim_matches('"').to_ascii_lowercase())
        });
        if let Some(name) = name {
            fields.push((name, value.strip_suffix("\r\n").unwrap_or(value).to_string()));
        }
    }
    fields
}

/// Why S3 refuses a form upload with these fields, if it does (see the module docs).
fn form_refusal(fields: &[(String, String)]) -> Option<(&'static str, &'static str)> {
    let field = |name: &str| fields.iter().find(|(field, _)| field == name).map(|(_, value)| value);
    let policy = field("policy")?;
    if field("signature").is_none() && field("x-amz-signature").is_none() {
        return Some((
            "InvalidArgument",
            "Bucket POST must contain a field named 'Signature' (or 'X-Amz-Signature') when it has a policy",
        ));
    }
    use base64::Engine;
    let document = base64::engine::general_purpose::STANDARD.decode(policy.trim()).ok()?;
    let document: serde_json::Value = serde_json::from_slice(&document).ok()?;
    let expiration = document.get("expiration")?.as_str()?;
    if !is_iso8601_utc(expiration) {
        return Some((
            "InvalidPolicyDocument",
            "Invalid Policy: Invalid 'expiration' value: give an ISO 8601 UTC time, e.g. 2026-12-06T12:00:00Z",
        ));
    }
    None
}

/// Whether `text` is `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z`.
fn is_iso8601_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape = b"0000-00-00T00:00:00";
    if bytes.len() < shape.len() + 1 || !text.ends_with('Z') {
        return false;
    }
    let digits_in_place = shape.iter().zip(bytes).all(|(want, got)| {
        if *want == b'0' {
            got.is_ascii_digit()
        } else {
            want == got
        }
    });
    let rest = &text[shape.len()..text.len() - 1];
    let fraction = rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    digits_in_place && fraction
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
    fn form_fields_are_read_up_to_the_file_and_checked_as_s3_does() {
        use base64::Engine;
        let policy = |expiration: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{{\"expiration\": \"{expiration}\", \"conditions\": []}}"))
        };
        let form = |fields: &[(&str, String)]| {
            let mut body = String::new();
            for (name, value) in fields {
                body += &format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
            }
            body + "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nbytes"
        };
        let good = policy("2026-12-06T12:00:00.123Z");
        let fields = form_fields(
            form(&[("key", "k".into()), ("Policy", good.clone()), ("Signature", "s".into())]).as_bytes(),
            "XX",
        );
        assert_eq!(fields[0], ("key".to_string(), "k".to_string()));
        assert_eq!(fields.len(), 3, "{fields:?}");
        assert_eq!(form_refusal(&fields), None);
        let unsigned = form_fields(form(&[("key", "k".into()), ("policy", good)]).as_bytes(), "XX");
        assert_eq!(form_refusal(&unsigned).unwrap().0, "InvalidArgument");
        let bad_date = policy("2026-12-06 12:00:00.123+00:00");
        let dated = form_fields(
            form(&[("policy", bad_date), ("x-amz-signature", "s".into())]).as_bytes(),
            "XX",
        );
        assert_eq!(form_refusal(&dated).unwrap().0, "InvalidPolicyDocument");
        // No policy: nothing to say here (s3s and the gateway decide).
        assert_eq!(
            form_refusal(&form_fields(form(&[("key", "k".into())]).as_bytes(), "XX")),
            None
        );
        // `${filename}` in the key takes the file's name; the rest is kept.
        let named = form(&[("key", "up/${filename}".into())]).replace("filename=\"f\"", "filename=\"a.txt\"");
        let renamed = String::from_utf8(with_file_name(named.as_bytes(), "XX").unwrap()).unwrap();
        assert_eq!(renamed, named.replace("up/${filename}", "up/a.txt"));
        assert_eq!(with_file_name(form(&[("key", "k".into())]).as_bytes(), "XX"), None);
        assert!(is_iso8601_utc("2026-12-06T12:00:00Z"));
        assert!(!is_iso8601_utc("2026-12-06T12:00:00"));
        assert!(!is_iso8601_utc("2026-12-06T12:00:00.Z"));
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
