//! Answers no handler wrote are `{"code", "message"}` JSON too, over a real
//! connection: an unknown route (404), a known route with another method
//! (405, with `Allow`), and the rejections of extractors: a body that is not
//! JSON (415 from axum) or not the expected JSON (422 from axum), a body over
//! the limit (413), a bad query string or path parameter (400).

use axum::extract::{Path, Query};
use axum::routing::{get, post};
use axum::Router;
use dfs_service::ApiJson;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Deserialize)]
struct Thing {
    #[allow(dead_code)]
    name: String,
}

#[derive(Deserialize)]
struct Count {
    #[allow(dead_code)]
    count: u32,
}

/// A router with one route per kind of rejection, finished as every service's is.
fn router() -> Router {
    let routes = Router::new()
        .route(
            "/v1/things",
            get(|| async { "things" }).post(|ApiJson(_): ApiJson<Thing>| async { "made" }),
        )
        .route(
            "/v1/bytes",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/v1/things/{index}",
            get(|Path(index): Path<u32>| async move { index.to_string() }),
        )
        .route(
            "/v1/count",
            get(|Query(count): Query<Count>| async move { count.count.to_string() }),
        );
    dfs_service::finish_router(routes)
}

/// Serves [`router`] on a free port until the test ends.
async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(dfs_service::serve(listener, router(), std::future::pending()));
    address
}

/// Checks that `response` has `status`, a JSON body with error code `code`
/// and a message; returns the response's headers and the message.
async fn assert_json_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> (reqwest::header::HeaderMap, String) {
    assert_eq!(response.status().as_u16(), status, "{response:?}");
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").and_then(|value| value.to_str().ok());
    assert!(
        content_type.is_some_and(|value| value.starts_with("application/json")),
        "{status} {code}: content type {content_type:?}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{body}");
    (headers, message)
}

#[tokio::test]
async fn the_frames_own_answers_are_json_errors() {
    let address = start().await;
    let url = |path: &str| format!("http://{address}{path}");
    let http = reqwest::Client::new();

    // An unknown route.
    let response = http.get(url("/v1/nothing")).send().await.unwrap();
    assert_json_error(response, 404, "not_found").await;

    // A known route, another method: 405 saying which methods it takes.
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = http.request(method.clone(), url("/v1/things")).send().await.unwrap();
        let (headers, message) = assert_json_error(response, 405, "method_not_allowed").await;
        assert!(message.contains(method.as_str()), "{message}");
        let allow = headers
            .get("allow")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            allowed.contains(&"GET") && allowed.contains(&"POST") && !allowed.contains(&method.as_str()),
            "{method}: Allow: {allow:?}"
        );
    }

    // A body that is not JSON (axum: 415) and JSON of the wrong shape (axum: 422).
    let response = http
        .post(url("/v1/things"))
        .header("content-type", "text/plain")
        .body("name=a")
        .send()
        .await
        .unwrap();
    let (_, message) = assert_json_error(response, 400, "bad_request").await;
    assert!(message.contains("application/json"), "{message}");
    let response = http
        .post(url("/v1/things"))
        .json(&serde_json::json!({"name": 5}))
        .send()
        .await
        .unwrap();
    assert_json_error(response, 400, "bad_request").await;

    // Bodies over the limit, read as JSON or as bytes.
    let large = vec![b' '; dfs_service::serve::MAX_JSON_BODY + 1];
    for path in ["/v1/things", "/v1/bytes"] {
        let response = http
            .post(url(path))
            .header("content-type", "application/json")
            .body(large.clone())
            .send()
            .await
            .unwrap();
        assert_json_error(response, 413, "payload_too_large").await;
    }

    // A bad path parameter and a bad query string.
    let response = http.get(url("/v1/things/first")).send().await.unwrap();
    assert_json_error(response, 400, "bad_request").await;
    let response = http.get(url("/v1/count?count=many")).send().await.unwrap();
    assert_json_error(response, 400, "bad_request").await;

    // The routes themselves still answer.
    assert_eq!(
        http.get(url("/v1/things")).send().await.unwrap().text().await.unwrap(),
        "things"
    );
    assert_eq!(
        http.get(url("/v1/things/7"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "7"
    );
}
