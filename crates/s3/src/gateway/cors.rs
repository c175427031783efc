//! CORS: a bucket's rules (Put/Get/DeleteBucketCors, kept with its other
//! settings), the answer to a browser's preflight (`OPTIONS`, which carries
//! no signature and is answered from the rules alone), and the
//! `Access-Control-*` headers of an answer to a request with an `Origin`.
//!
//! As S3 evaluates them: the first rule whose origin pattern matches the
//! `Origin`, whose methods hold the method (a preflight's
//! `Access-Control-Request-Method`), and whose header patterns match every
//! header a preflight names in `Access-Control-Request-Headers`. A pattern
//! holds at most one `*`, which matches any run of characters. CORS grants
//! nothing by itself: the request a preflight clears is still signed and
//! checked as every request is.

use super::versions::SettingsCache;
use super::Gateway;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use dfs_client::Client;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

/// Rules a bucket may have at most (S3's limit).
const MAX_RULES: usize = 100;

/// The methods a rule may allow (S3's list).
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One CORS rule, as kept in the bucket's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<i32>,
}

impl CorsRule {
    /// A rule of a PutBucketCors, checked as S3 checks it.
    fn of(rule: CORSRule) -> S3Result<CorsRule> {
        if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "a CORS rule names at least one origin and one method"
            ));
        }
        if let Some(method) = rule
            .allowed_methods
            .iter()
            .find(|method| !METHODS.contains(&method.as_str()))
        {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            ));
        }
        let headers = rule.allowed_headers.unwrap_or_default();
        let patterns = rule.allowed_origins.iter().chain(&headers);
        if let Some(pattern) = patterns.clone().find(|pattern| pattern.matches('*').count() > 1) {
            return Err(s3_error!(
                InvalidRequest,
                "a CORS origin or header holds at most one wildcard: {pattern}"
            ));
        }
        Ok(CorsRule {
            id: rule.id,
            origins: rule.allowed_origins,
            methods: rule.allowed_methods,
            headers: headers.into_iter().map(|header| header.to_ascii_lowercase()).collect(),
            expose: rule.expose_headers.unwrap_or_default(),
            max_age: rule.max_age_seconds,
        })
    }

    fn to_dto(&self) -> CORSRule {
        CORSRule {
            allowed_headers: (!self.headers.is_empty()).then(|| self.headers.clone()),
            allowed_methods: self.methods.clone(),
            allowed_origins: self.origins.clone(),
            expose_headers: (!self.expose.is_empty()).then(|| self.expose.clone()),
            id: self.id.clone(),
            max_age_seconds: self.max_age,
        }
    }

    /// The origin pattern of this rule `origin` matches, if any.
    fn origin(&self, origin: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|pattern| wildcard_match(pattern, origin))
            .map(String::as_str)
    }
}

/// Whether `text` matches `pattern`, whose one `*` (if any) stands for any
/// run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, suffix)) => {
            text.len() >= prefix.len() + suffix.len() && text.starts_with(prefix) && text.ends_with(suffix)
        }
    }
}

/// What a matching rule grants an origin: the headers to answer with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    headers: Vec<(&'static str, String)>,
}

impl Grant {
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        headers.append(
            axum::http::header::VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
        );
    }
}

/// The first of `rules` that lets `origin` use `method` with `requested`
/// headers (lowercase), and what it grants.
pub(crate) fn evaluate(rules: &[CorsRule], origin: &str, method: &str, requested: &[String]) -> Option<Grant> {
    rules.iter().find_map(|rule| {
        let pattern = rule.origin(origin)?;
        if !rule.methods.iter().any(|allowed| allowed == method) {
            return None;
        }
        if !requested
            .iter()
            .all(|header| rule.headers.iter().any(|pattern| wildcard_match(pattern, header)))
        {
            return None;
        }
        let mut headers = vec![
            (
                "access-control-allow-origin",
                if pattern == "*" {
                    "*".to_string()
                } else {
                    origin.to_string()
                },
            ),
            ("access-control-allow-methods", rule.methods.join(", ")),
        ];
        if !requested.is_empty() {
            headers.push(("access-control-allow-headers", requested.join(", ")));
        }
        if !rule.expose.is_empty() {
            headers.push(("access-control-expose-headers", rule.expose.join(", ")));
        }
        if let Some(max_age) = rule.max_age {
            headers.push(("access-control-max-age", max_age.to_string()));
        }
        Some(Grant { headers })
    })
}

/// The headers of a preflight's `Access-Control-Request-Headers`, lowercase.
fn requested_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(|header| header.trim().to_ascii_lowercase())
        .filter(|header| !header.is_empty())
        .collect()
}

/// Reads buckets' CORS rules for the frame, as the gateway itself (a
/// preflight carries no signature).
#[derive(Clone)]
pub(crate) struct CorsRules {
    pub(crate) base: Client,
    pub(crate) verifier: std::sync::Arc<dfs_service::Verifier>,
    pub(crate) cache: std::sync::Arc<SettingsCache>,
}

impl CorsRules {
    /// The rules of `bucket`; none if it has none or they cannot be read.
    async fn of(&self, bucket: &str) -> Vec<CorsRule> {
        if let Some(settings) = self.cache.get(bucket) {
            return settings.cors.unwrap_or_default();
        }
        let client = super::gateway_client(&self.base, &self.verifier);
        match self.cache.read(&client, bucket).await {
            Ok(Ok(settings)) => settings.cors.unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The answer to a preflight (`OPTIONS`) for `bucket`: what a rule
    /// grants, or the refusal's status, S3 error code and message.
    pub(crate) async fn preflight(
        &self,
        bucket: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Grant, (StatusCode, &'static str, &'static str)> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let (Some(origin), Some(method), Some(bucket)) =
            (header("origin"), header("access-control-request-method"), bucket)
        else {
            return Err((
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            ));
        };
        evaluate(&self.of(bucket).await, origin, method, &requested_headers(headers)).ok_or((
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: this CORS request is not allowed by the bucket's CORS rules",
        ))
    }

    /// The `Access-Control-*` headers for an answer to `method` from `origin`.
    pub(crate) async fn for_request(&self, bucket: &str, origin: &str, method: &Method) -> Option<Grant> {
        let rules = self.of(bucket).await;
        evaluate(&rules, origin, method.as_str(), &[])
    }
}

impl Gateway {
    pub(super) async fn put_bucket_cors_op(
        &self,
        request: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        self.owned_bucket(&acting, &input.bucket).await?;
        let rules = input.cors_configuration.cors_rules;
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(s3_error!(
                MalformedXML,
                "a CORS configuration holds 1 to {MAX_RULES} rules"
            ));
        }
        let rules = rules.into_iter().map(CorsRule::of).collect::<S3Result<Vec<_>>>()?;
        let mut settings = self.settings(&acting, &input.bucket).await?;
        settings.cors = Some(rules);
        self.write_settings(&acting, &input.bucket, &settings).await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    pub(super) async fn get_bucket_cors_op(
        &self,
        request: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket;
        self.owned_bucket(&acting, &bucket).await?;
        let Some(rules) = self.settings(&acting, &bucket).await?.cors else {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "bucket {bucket} has no CORS configuration"
            ));
        };
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules.iter().map(CorsRule::to_dto).collect()),
        }))
    }

    pub(super) async fn delete_bucket_cors_op(
        &self,
        request: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket;
        self.owned_bucket(&acting, &bucket).await?;
        let mut settings = self.settings(&acting, &bucket).await?;
        if settings.cors.take().is_some() {
            self.write_settings(&acting, &bucket, &settings).await?;
        }
        Ok(S3Response::new(DeleteBucketCorsOutput {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule::of(CORSRule {
            allowed_headers: Some(headers.iter().map(|h| h.to_string()).collect()),
            allowed_methods: methods.iter().map(|m| m.to_string()).collect(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            expose_headers: Some(vec!["ETag".into()]),
            id: None,
            max_age_seconds: Some(600),
        })
        .unwrap()
    }

    fn origin_of(grant: Option<Grant>) -> Option<String> {
        grant.and_then(|grant| {
            grant
                .headers
                .into_iter()
                .find(|(name, _)| *name == "access-control-allow-origin")
                .map(|(_, value)| value)
        })
    }

    #[test]
    fn the_first_rule_matching_origin_method_and_headers_grants() {
        let rules = vec![
            rule(&["*suffix"], &["GET"], &[]),
            rule(&["start*end"], &["GET"], &[]),
            rule(&["prefix*"], &["GET"], &["x-amz-*", "content-type"]),
            rule(&["*"], &["PUT"], &[]),
        ];
        let granted = |origin: &str, method: &str, headers: &[&str]| {
            let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
            origin_of(evaluate(&rules, origin, method, &headers))
        };
        assert_eq!(granted("foo.suffix", "GET", &[]).as_deref(), Some("foo.suffix"));
        assert_eq!(granted("startend", "GET", &[]).as_deref(), Some("startend"));
        assert_eq!(granted("start12end", "GET", &[]).as_deref(), Some("start12end"));
        assert_eq!(granted("0start12end", "GET", &[]), None);
        assert_eq!(granted("foo.suffix.get", "GET", &[]), None);
        assert_eq!(granted("bla.prefix", "GET", &[]), None);
        // Headers: every one named must match a pattern of the rule.
        assert_eq!(
            granted("prefix.a", "GET", &["x-amz-date", "content-type"]).as_deref(),
            Some("prefix.a")
        );
        assert_eq!(granted("prefix.a", "GET", &["x-amz-date", "authorization"]), None);
        assert_eq!(granted("foo.suffix", "GET", &["x-amz-date"]), None);
        // `*` as the origin is answered `*`; a method no rule allows is not.
        assert_eq!(granted("anyone", "PUT", &[]).as_deref(), Some("*"));
        assert_eq!(granted("anyone", "DELETE", &[]), None);
        let grant = evaluate(&rules, "prefix.a", "GET", &["x-amz-date".to_string()]).unwrap();
        assert_eq!(
            grant.headers,
            vec![
                ("access-control-allow-origin", "prefix.a".to_string()),
                ("access-control-allow-methods", "GET".to_string()),
                ("access-control-allow-headers", "x-amz-date".to_string()),
                ("access-control-expose-headers", "ETag".to_string()),
                ("access-control-max-age", "600".to_string()),
            ]
        );
    }

    #[test]
    fn rules_s3_refuses_are_refused() {
        let bad = |origins: Vec<String>, methods: Vec<String>, headers: Option<Vec<String>>| {
            CorsRule::of(CORSRule {
                allowed_headers: headers,
                allowed_methods: methods,
                allowed_origins: origins,
                expose_headers: None,
                id: None,
                max_age_seconds: None,
            })
            .is_err()
        };
        let one = |text: &str| vec![text.to_string()];
        assert!(bad(one("*"), one("PATCH"), None), "an unsupported method");
        assert!(bad(one("a*b*c"), one("GET"), None), "two wildcards in an origin");
        assert!(bad(one("*"), one("GET"), Some(one("x-*-*"))), "two in a header");
        assert!(bad(vec![], one("GET"), None), "no origin");
        assert!(bad(one("*"), vec![], None), "no method");
        assert!(!bad(one("https://*.example.com"), one("GET"), Some(one("*"))));
    }
}
