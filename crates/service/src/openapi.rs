//! The OpenAPI document of a service, made from its handlers' `#[utoipa::path]`
//! attributes and the proto types' schemas, and served with Swagger UI.
//!
//! A service lists its routes once, in an [`OpenApiRouter`] (`routes!`), which
//! registers each handler with axum and its operation in the document
//! together. [`finish_api`] then adds what is the same everywhere, in one
//! place: the frame's own routes (`/healthz`, `/metrics`, `/openapi.json`,
//! `/docs`), the security schemes (the bearer ticket, the chunk capability),
//! the JSON error body as every operation's `default` answer, and serves the
//! document at `GET /openapi.json` and Swagger UI (its assets built into the
//! binary) at `GET /docs/`.

use crate::metrics::Metrics;
use dfs_proto::ErrorBody;
use std::sync::Arc;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
pub use utoipa_axum::router::OpenApiRouter;

/// Where a service's document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served (`/docs` redirects to it).
pub const DOCS_PATH: &str = "/docs/";

/// The security scheme of a bearer ticket (`Authorization: Bearer <ticket>`).
pub const BEARER: &str = "bearer";
/// The security scheme of a chunk capability (`x-dfs-capability`).
pub const CAPABILITY: &str = "capability";

/// What a service's document says about the service.
#[derive(Debug, Clone, Copy)]
pub struct ApiInfo {
    /// "DFS directory service", ...
    pub title: &'static str,
    /// What the service does and what its calls carry (Markdown).
    pub description: &'static str,
}

/// The frame's own routes, documented here because [`crate::finish_router_with`]
/// registers them for every service.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, metrics, openapi_json, docs_redirect, docs_page, docs_asset),
    components(schemas(ErrorBody))
)]
struct FrameApi;

/// Liveness of the service.
#[utoipa::path(get, path = "/healthz", tag = "frame", security(()),
    responses((status = 200, description = "ok", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn healthz() {}

/// Prometheus text metrics: requests by route and status class, latency, the service's gauges.
#[utoipa::path(get, path = "/metrics", tag = "frame", security(()),
    responses((status = 200, description = "text format 0.0.4", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// This document (OpenAPI 3.1, JSON).
#[utoipa::path(get, path = "/openapi.json", tag = "frame", security(()),
    responses((status = 200, description = "the document", content_type = "application/json", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

/// Redirects to Swagger UI (`/docs/`).
#[utoipa::path(get, path = "/docs", tag = "frame", security(()),
    responses((status = 303, description = "Location: /docs/")))]
#[allow(dead_code)]
fn docs_redirect() {}

/// Swagger UI for this document; its assets are built into the binary.
#[utoipa::path(get, path = "/docs/", tag = "frame", security(()),
    responses((status = 200, description = "the page", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn docs_page() {}

/// A script, style sheet or image of Swagger UI.
#[utoipa::path(get, path = "/docs/{rest}", tag = "frame", security(()),
    params(("rest" = String, Path, description = "the asset's name, e.g. swagger-ui.css")),
    responses((status = 200, description = "the asset")))]
#[allow(dead_code)]
fn docs_asset() {}

/// The whole document of a service: `routes`' operations, the frame's, the
/// security schemes, and the error body as every operation's `default`.
pub fn document(routes: OpenApi, info: ApiInfo) -> OpenApi {
    let mut doc = routes.merge_from(<FrameApi as utoipa::OpenApi>::openapi());
    doc.info.title = info.title.to_string();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.description = Some(info.description.to_string());
    doc.info.license = None;
    doc.info.contact = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.add_security_scheme(
        CAPABILITY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(dfs_proto::CAPABILITY_HEADER))),
    );
    components.responses.insert(
        "Error".to_string(),
        RefOr::T(
            ResponseBuilder::new()
                .description(
                    "An error, with the HTTP status of its code: `{\"code\", \"message\"}` \
                     (`failed_servers` on some 503s).",
                )
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            operation
                .responses
                .responses
                .entry("default".to_string())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
        }
    }
    doc
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The router of a service: `routes` (with their state), the frame of
/// [`crate::finish_router_with`], and the document with Swagger UI.
pub fn finish_api(routes: OpenApiRouter, metrics: Arc<Metrics>, info: ApiInfo) -> axum::Router {
    let (router, operations) = routes.split_for_parts();
    let doc = document(operations, info);
    let swagger = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc);
    crate::finish_router_with(router.merge(swagger), metrics)
}
