//! `DfsPath::parse` on any string: never panics, and whatever it accepts
//! keeps the path invariants (ARCHITECTURE.md, `proto`) and parses again to itself.
#![no_main]

use dfs_proto::DfsPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let Ok(path) = DfsPath::parse(raw) else {
        return;
    };
    let text = path.as_str();
    assert!(text.starts_with('/'));
    assert!(text.len() <= 4096);
    assert!(!text.contains('\0'));
    assert!(text == "/" || !text.ends_with('/'));
    for name in path.components() {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(name.len() <= 255);
    }
    assert_eq!(DfsPath::parse(text).as_ref(), Ok(&path));
    // The serde form is validated the same way.
    let json = serde_json::to_string(&path).unwrap();
    assert_eq!(serde_json::from_str::<DfsPath>(&json).unwrap(), path);
    // Parent, name and join agree with each other.
    if let (Some(parent), Some(name)) = (path.parent(), path.name()) {
        assert_eq!(parent.join(name).unwrap(), path);
        assert!(path.starts_with(&parent));
    }
});
