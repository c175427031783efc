//! The layering invariants of ARCHITECTURE.md, checked from the manifests, so
//! that a dependency that breaks the map fails a test instead of waiting for a
//! reviewer to notice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace members, in the order the root manifest lists them (bottom-up).
fn members() -> Vec<String> {
    let root = manifest(&root().join("Cargo.toml"));
    root["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| {
            m.as_str()
                .expect("member path")
                .trim_start_matches("crates/")
                .to_owned()
        })
        .collect()
}

/// The normal (not dev-) dependencies of crate `dir` (`crates/DIR`).
fn dependencies(dir: &str) -> BTreeSet<String> {
    let manifest = manifest(&root().join("crates").join(dir).join("Cargo.toml"));
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

fn dfs_dependencies(dir: &str) -> BTreeSet<String> {
    dependencies(dir)
        .into_iter()
        .filter_map(|d| d.strip_prefix("dfs-").map(str::to_owned))
        .collect()
}

#[test]
fn each_crate_depends_only_on_crates_listed_before_it() {
    let members = members();
    for (at, member) in members.iter().enumerate() {
        for dep in dfs_dependencies(member) {
            let listed = members.iter().position(|m| *m == dep);
            assert!(
                listed.is_some_and(|i| i < at),
                "crates/{member} depends on dfs-{dep}, which the root Cargo.toml does not list before it"
            );
        }
    }
}

#[test]
fn wire_types_and_sealing_stay_light() {
    // proto: serde only, no runtime, no I/O; utoipa (the schemas of the
    // services' OpenAPI documents) only behind its `openapi` feature, which
    // clients leave off.
    let proto_manifest = manifest(&root().join("crates/proto/Cargo.toml"));
    let proto = proto_manifest["dependencies"]
        .as_table()
        .expect("crates/proto dependencies");
    let optional = |name: &str| proto[name].get("optional").and_then(|o| o.as_bool()) == Some(true);
    let required: BTreeSet<String> = proto.keys().filter(|name| !optional(name)).cloned().collect();
    let behind_features: BTreeSet<String> = proto.keys().filter(|name| optional(name)).cloned().collect();
    assert_eq!(
        required,
        BTreeSet::from(["serde".to_owned(), "thiserror".to_owned()]),
        "crates/proto"
    );
    assert_eq!(
        behind_features,
        BTreeSet::from(["utoipa".to_owned()]),
        "crates/proto optional"
    );
    for client in ["client", "mount", "bench"] {
        let client_manifest = manifest(&root().join("crates").join(client).join("Cargo.toml"));
        let proto = client_manifest["dependencies"].get("dfs-proto");
        let features = proto
            .and_then(|p| p.get("features"))
            .map(|f| format!("{f:?}"))
            .unwrap_or_default();
        assert!(
            !features.contains("openapi"),
            "crates/{client} turns on dfs-proto's openapi feature"
        );
    }
    // seal: pure; no network, no runtime, no database.
    for crate_dir in ["proto", "seal"] {
        let deps = dependencies(crate_dir);
        for heavy in ["tokio", "reqwest", "axum", "hyper", "rusqlite", "postgres", "mongodb"] {
            assert!(!deps.contains(heavy), "crates/{crate_dir} must not depend on {heavy}");
        }
    }
}

#[test]
fn clients_never_depend_on_a_service() {
    let services = ["store", "service", "auth", "meta", "chunk", "seal"];
    for client in ["client", "mount", "bench"] {
        let deps = dfs_dependencies(client);
        for service in services {
            assert!(
                !deps.contains(service),
                "crates/{client} depends on dfs-{service}: clients speak the wire protocol (dfs-proto) only"
            );
        }
    }
    assert_eq!(dfs_dependencies("client"), BTreeSet::from(["proto".to_owned()]));
}

#[test]
fn the_store_knows_nothing_of_http() {
    let deps = dependencies("store");
    for http in ["axum", "hyper", "reqwest", "dfs-service"] {
        assert!(!deps.contains(http), "crates/store must not depend on {http}");
    }
}

#[test]
fn services_reach_their_database_only_through_the_store() {
    for service in ["auth", "meta", "chunk", "service", "cli"] {
        let deps = dependencies(service);
        for driver in ["rusqlite", "postgres", "mongodb", "tokio-postgres"] {
            assert!(
                !deps.contains(driver),
                "crates/{service} depends on {driver}: services see metadata only through dfs-store's traits"
            );
        }
    }
}
