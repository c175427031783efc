//! The browser file manager (`crates/meta/web/`), served at `/ui/`.
//!
//! Same origin, no cookies: the page, its scripts and the API it calls all
//! come from the directory service, which forwards the two calls of the
//! security service the page makes (`POST /v1/auth/login`, `/v1/auth/logout`).
//! The ticket a login returns stays in the tab's `sessionStorage` and travels
//! only as an `Authorization` header, so another site can make a browser send
//! no request that carries it (no CSRF). The assets are built into the binary
//! (`include_str!`); nothing is fetched from elsewhere, at build or at run
//! time. Every page answer carries a Content-Security-Policy that allows
//! scripts, styles and connections to this origin only (no inline script or
//! style, no frames).
//!
//! A forwarded login names the browser's address in
//! [`dfs_proto::auth::FORWARDED_CLIENT_HEADER`], with a service ticket that
//! vouches for it, so the security service's failed-login limits still
//! count per browser, not per directory service.

use super::Shared;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dfs_proto::auth::{LoginRequest, LoginResponse, FORWARDED_CLIENT_HEADER};
use dfs_service::{ApiError, ClientAddr, ForwardRequestId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the page is.
pub const UI_PATH: &str = "/ui/";

/// The assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// The policy of every page answer: this origin only, nothing inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(ui))
        .routes(routes!(page))
        .routes(routes!(asset))
        .routes(routes!(forward_login))
        .routes(routes!(forward_refresh))
        .routes(routes!(forward_logout))
}

/// Redirects to the web file manager (`/ui/`).
#[utoipa::path(get, path = "/", tag = "web", security(()), responses((status = 303, description = "Location: /ui/")))]
async fn root() -> Redirect {
    Redirect::to(UI_PATH)
}

/// Redirects to `/ui/`.
#[utoipa::path(get, path = "/ui", tag = "web", security(()), responses((status = 303, description = "Location: /ui/")))]
async fn ui() -> Redirect {
    Redirect::to(UI_PATH)
}

/// The web file manager: a page whose scripts log in through `POST /v1/auth/login` of this service
/// and keep the ticket in the tab's sessionStorage.
///
/// Its Content-Security-Policy allows this origin only, nothing inline.
#[utoipa::path(get, path = "/ui/", tag = "web", security(()),
    responses((status = 200, description = "the page", content_type = "text/html", body = String)))]
async fn page() -> Response {
    asset_response("index.html")
}

/// A script or style sheet of the web file manager, built into the binary.
#[utoipa::path(get, path = "/ui/{name}", tag = "web", security(()),
    params(("name" = String, Path, description = "index.html, app.js, api.js, style.css")),
    responses((status = 200, description = "the asset", content_type = "text/javascript", body = String)))]
async fn asset(Path(name): Path<String>) -> Response {
    asset_response(&name)
}

fn asset_response(name: &str) -> Response {
    let Some((_, content_type, content)) = ASSETS.iter().find(|(asset, _, _)| *asset == name) else {
        return ApiError::not_found(format!("no such page: /ui/{name}")).into_response();
    };
    let mut response = (*content).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary: always ask (cheap), never stale.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Logs in through the security service (for the web file manager): see its `POST /v1/auth/login`.
///
/// Passed on with the browser's address, vouched for by this service's ticket, so that failed
/// logins are still counted per browser.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, description = "a sealed ticket", body = LoginResponse)))]
async fn forward_login(
    State(Shared(directory)): State<Shared>,
    ClientAddr(client): ClientAddr,
    body: Bytes,
) -> Response {
    let request = directory
        .http
        .post(format!("{}/v1/auth/login", directory.auth_url))
        .bearer_auth(directory.verifier.service_ticket("directory"))
        .header(FORWARDED_CLIENT_HEADER, client.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    relay(request.forward_request_id().send().await).await
}

/// A new ticket for the same session (forwarded to the security service's `POST /v1/auth/refresh`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    responses((status = 200, description = "the new ticket", body = LoginResponse)))]
async fn forward_refresh(state: State<Shared>, headers: HeaderMap) -> Response {
    forward_with_ticket(state, headers, "refresh").await
}

/// Revokes the caller's session on every service (forwarded to the security service).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204, description = "logged out")))]
async fn forward_logout(state: State<Shared>, headers: HeaderMap) -> Response {
    forward_with_ticket(state, headers, "logout").await
}

/// `POST /v1/auth/{call}` (`refresh`, `logout`), passed on with the caller's own ticket.
async fn forward_with_ticket(State(Shared(directory)): State<Shared>, headers: HeaderMap, call: &str) -> Response {
    let mut request = directory.http.post(format!("{}/v1/auth/{call}", directory.auth_url));
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, authorization.clone());
    }
    relay(request.forward_request_id().send().await).await
}

/// The security service's answer, passed back as it came (status, type,
/// `Retry-After`, body), or a 503 if it could not be reached.
async fn relay(answer: reqwest::Result<reqwest::Response>) -> Response {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            return ApiError::unavailable(format!("cannot reach the security service: {error}")).into_response()
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut kept = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(value) = answer.headers().get(name.as_str()) {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                kept.insert(name, value);
            }
        }
    }
    match answer.bytes().await {
        Ok(body) => (status, kept, body).into_response(),
        Err(error) => ApiError::unavailable(format!("reading the security service's answer: {error}")).into_response(),
    }
}
