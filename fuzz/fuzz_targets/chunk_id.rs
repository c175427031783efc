//! `ChunkId::parse` on any string: never panics, accepts exactly 64
//! lowercase hex digits, and agrees with its serde form.
#![no_main]

use dfs_proto::chunk::ChunkId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let expected = raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let parsed = ChunkId::parse(raw);
    assert_eq!(parsed.is_ok(), expected, "{raw:?}");
    let from_json = serde_json::from_value::<ChunkId>(serde_json::Value::from(raw));
    assert_eq!(from_json.is_ok(), expected);
    if let Ok(id) = parsed {
        assert_eq!(id.as_str(), raw);
    }
});
