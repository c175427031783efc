//! AWS Signature Version 4 for the `s3` backend: the `Authorization` header
//! of one request, signed with an access key (HMAC-SHA256, no AWS SDK). The
//! payload is sent unsigned (`UNSIGNED-PAYLOAD`), as presigned URLs and most
//! S3 tools over TLS do, so that no system is measured hashing bodies.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The `x-amz-content-sha256` of an unsigned payload.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// An access key and the region it signs for.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
    pub region: String,
}

/// One request to sign. `headers` are the ones to sign besides `host`,
/// `x-amz-content-sha256` and `x-amz-date` (which [`sign`] adds), lower-case.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]`, as the Host header says it.
    pub host: &'a str,
    /// The path, already URI-encoded ([`encode_path`]).
    pub path: &'a str,
    /// `(name, value)` pairs, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

/// The headers to send: `x-amz-date`, `x-amz-content-sha256` and
/// `authorization`, for `request` signed with `key` at `amz_date`
/// (`YYYYMMDD'T'HHMMSS'Z'`, [`amz_date`]).
pub fn sign(request: &Request<'_>, key: &Key, amz_date: &str) -> [(&'static str, String); 3] {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
        .chain([
            ("host".to_string(), request.host.to_string()),
            ("x-amz-content-sha256".to_string(), request.payload_sha256.to_string()),
            ("x-amz-date".to_string(), amz_date.to_string()),
        ])
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(name, value)| (encode(name, true), encode(value, true)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method, request.path, request.payload_sha256
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", key.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut signing_key = hmac(format!("AWS4{}", key.secret).as_bytes(), date.as_bytes());
    for part in [key.region.as_str(), "s3", "aws4_request"] {
        signing_key = hmac(&signing_key, part.as_bytes());
    }
    let signature = hex(&hmac(&signing_key, string_to_sign.as_bytes()));
    [
        ("x-amz-date", amz_date.to_string()),
        ("x-amz-content-sha256", request.payload_sha256.to_string()),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                key.id
            ),
        ),
    ]
}

/// A path for a request line and for [`Request::path`]: every byte but
/// unreserved ones and `/` percent-encoded.
pub fn encode_path(path: &str) -> String {
    encode(path, false)
}

/// The time now as SigV4 writes it: `YYYYMMDD'T'HHMMSS'Z'` (UTC).
pub fn amz_date() -> String {
    format_amz_date(time::OffsetDateTime::now_utc())
}

fn format_amz_date(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn encode(text: &str, slash_too: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || (byte == b'/' && !slash_too) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own example ("Example: GET Object" of the S3 API reference's
    /// Signature Version 4 pages).
    #[test]
    fn signs_aws_s_documented_get_object_example() {
        let key = Key {
            id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let request = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("range", "bytes=0-9")],
            payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        };
        let [_, _, (_, authorization)] = sign(&request, &key, "20130524T000000Z");
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_and_encodings() {
        let at = |unix_seconds| time::OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap();
        assert_eq!(format_amz_date(at(0)), "19700101T000000Z");
        assert_eq!(format_amz_date(at(1_369_353_600)), "20130524T000000Z");
        assert_eq!(format_amz_date(at(951_825_599)), "20000229T115959Z");
        assert_eq!(encode_path("/b/a key+1/é"), "/b/a%20key%2B1/%C3%A9");
        assert_eq!(encode("a/b", true), "a%2Fb");
    }
}
