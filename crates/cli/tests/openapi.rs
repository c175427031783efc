//! Tidy check: every route of every service is documented in docs/openapi.yaml,
//! and the spec lists no route that does not exist.

use std::collections::BTreeSet;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Route paths registered with `.route("...")` in the services' sources.
fn routes_in_code(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in ["auth", "meta", "chunk", "service"] {
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split(".route(").skip(1) {
            let rest = piece.trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                if let Some(end) = literal.find('"') {
                    routes.insert(literal[..end].to_string());
                }
            }
        }
    }
    routes
}

/// Path keys under `paths:` in the spec (two-space indented lines ending in ':').
fn routes_in_spec(root: &Path) -> BTreeSet<String> {
    let spec = std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap();
    let paths = spec.split("\npaths:\n").nth(1).expect("spec has a paths section");
    paths
        .lines()
        .filter(|line| line.starts_with("  /") && line.trim_end().ends_with(':'))
        .map(|line| line.trim().trim_end_matches(':').to_string())
        .collect()
}

#[test]
fn every_route_is_in_the_openapi_spec_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let code = routes_in_code(&root);
    let spec = routes_in_spec(&root);
    assert!(code.len() > 10, "found too few routes: {code:?}");
    let undocumented: Vec<_> = code.difference(&spec).collect();
    let stale: Vec<_> = spec.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/openapi.yaml lists routes the code does not have: {stale:?}"
    );
}
