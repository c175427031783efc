//! The OpenAPI documents against the routers, on a live cluster:
//! - every operation a service's `/openapi.json` lists is routed by that
//!   service (a request to it reaches a handler, not the frame's fallback);
//! - every route registered in the services' sources outside `routes!`
//!   (a plain `.route("...")`) is in the document of its service; the
//!   routes registered through `routes!` are in it by construction;
//! - each service serves the document `dfs openapi SERVICE` prints;
//! - `docs/postman/dfs.postman_collection.json` is the collection
//!   `dfs openapi --postman` makes from the documents now.

use dfs_testkit::{Cluster, Options};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const BIN: &str = env!("CARGO_BIN_EXE_dfs");
const POSTMAN: &str = "docs/postman/dfs.postman_collection.json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `dfs openapi ARGS` prints.
fn dfs_openapi(args: &[&str]) -> String {
    let output = std::process::Command::new(BIN)
        .arg("openapi")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "dfs openapi {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `(METHOD, path)` of every operation of `doc`.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// `path` with its parameters filled in with values a handler can parse.
fn concrete(path: &str) -> String {
    path.replace("{id}", &"ab".repeat(32))
        .replace("{name}", "nobody")
        .replace("{rest}", "swagger-ui.css")
}

/// Route paths registered with a plain `.route("...")` in `krate`'s sources.
fn plain_routes(krate: &str) -> BTreeSet<String> {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates").join(krate).join("src"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split(".route(").skip(1) {
            if let Some(literal) = piece.trim_start().strip_prefix('"') {
                if let Some(end) = literal.find('"') {
                    routes.insert(literal[..end].to_string());
                }
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_in_its_services_document_and_every_documented_route_is_served() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 1,
            replication: 1,
            ..Options::default()
        },
    );
    let services = [
        ("directory", "meta", cluster.banner.directory_url.clone()),
        ("security", "auth", cluster.banner.auth_url.clone()),
        ("file-server", "chunk", cluster.banner.file_server_urls[0].clone()),
    ];
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (service, krate, url) in services {
        let served: Value = http
            .get(format!("{url}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let printed: Value = serde_json::from_str(&dfs_openapi(&[service])).unwrap();
        assert_eq!(
            served, printed,
            "{service}: /openapi.json is not what `dfs openapi {service}` prints"
        );
        assert!(
            served["openapi"]
                .as_str()
                .is_some_and(|version| version.starts_with("3.1")),
            "{service}: OpenAPI {}",
            served["openapi"]
        );

        let documented = operations(&served);
        assert!(documented.len() >= 8, "{service}: too few operations: {documented:?}");
        let documented_paths: BTreeSet<String> = documented.iter().map(|(_, path)| path.clone()).collect();
        for krate in [krate, "service"] {
            let undocumented: Vec<_> = plain_routes(krate)
                .into_iter()
                .filter(|path| !documented_paths.contains(path))
                .collect();
            assert!(
                undocumented.is_empty(),
                "{service}: routes registered in crates/{krate} but missing from its document \
                 (register them with utoipa_axum's routes! and a #[utoipa::path]): {undocumented:?}"
            );
        }

        let mut unrouted = Vec::new();
        for (method, path) in &documented {
            let response = http
                .request(method.parse().unwrap(), format!("{url}{}", concrete(path)))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fallback = status == 405 || (status == 404 && body["message"] == "no such endpoint");
            if fallback {
                unrouted.push(format!("{method} {path}: {status} {body}"));
            }
        }
        assert!(
            unrouted.is_empty(),
            "{service}: documented but not routed: {unrouted:#?}"
        );
    }
    // The probe itself is not vacuous: an unknown route is the fallback.
    let unknown = http
        .get(format!("{}/v1/nothing-here", cluster.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["message"], "no such endpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_is_served_from_the_binary() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 1,
            replication: 1,
            ..Options::default()
        },
    );
    let http = reqwest::Client::new();
    for url in [
        cluster.url(),
        cluster.banner.auth_url.as_str(),
        cluster.banner.file_server_urls[0].as_str(),
    ] {
        let page = http.get(format!("{url}/docs")).send().await.unwrap();
        assert_eq!(page.status(), 200, "{url}/docs");
        assert!(page.text().await.unwrap().contains("swagger-ui"));
        let initializer = http
            .get(format!("{url}/docs/swagger-initializer.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(initializer.status(), 200);
        assert!(initializer.text().await.unwrap().contains("/openapi.json"));
        let script = http
            .get(format!("{url}/docs/swagger-ui-bundle.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(script.status(), 200);
        assert!(script.bytes().await.unwrap().len() > 100_000, "the bundle is built in");
    }
}

#[test]
fn the_postman_collection_is_current() {
    let path = root().join(POSTMAN);
    let generated = dfs_openapi(&["--postman"]);
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "{POSTMAN} is not current; regenerate it with\n  cargo run -- openapi --postman > {POSTMAN}"
    );
    let collection: Value = serde_json::from_str(&generated).unwrap();
    let variables: Vec<&str> = collection["variable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| variable["key"].as_str().unwrap())
        .collect();
    for variable in ["directory_url", "auth_url", "file_server_url", "ticket"] {
        assert!(variables.contains(&variable), "no {variable} variable: {variables:?}");
    }
    assert_eq!(collection["auth"]["bearer"][0]["value"], "{{ticket}}");
    // Every operation of every service is a request of the collection.
    let requests = collection.to_string().matches("\"method\":").count();
    let operations: usize = ["directory", "security", "file-server"]
        .iter()
        .map(|service| operations(&serde_json::from_str(&dfs_openapi(&[service])).unwrap()).len())
        .sum();
    assert_eq!(requests, operations);
}
