//! Opening tickets, capabilities and receipts from untrusted strings.
//!
//! The input is either a whole token (any string: never panics, and never
//! opens, since only the key holder can seal) or a set of edits to a
//! genuine ticket: an edited token must not open to anything but the
//! original ticket (AES-GCM integrity), and one kind never opens as another.
#![no_main]

use dfs_proto::ticket::{Role, Ticket};
use dfs_seal::ClusterKey;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000;

fn key() -> ClusterKey {
    ClusterKey::from_bytes([7; 32])
}

fn ticket() -> Ticket {
    Ticket {
        uid: 1000,
        name: "ann".to_string(),
        roles: vec![Role::Admin],
        sid: "0123456789abcdef".to_string(),
        issued_at: NOW,
        expires_at: NOW + 3600,
    }
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // A token from nowhere.
        let token = String::from_utf8_lossy(rest);
        assert!(key.open_ticket(&token, NOW).is_err());
        assert!(key.open_capability(&token, NOW).is_err());
        assert!(key.open_copy_capability(&token, NOW).is_err());
        assert!(key.open_receipt(&token).is_err());
        return;
    }
    // Edits of a genuine ticket: pairs of (position, xor mask).
    let original = ticket();
    let token = key.seal_ticket(&original);
    assert_eq!(key.open_ticket(&token, NOW).as_ref(), Ok(&original));
    assert!(key.open_capability(&token, NOW).is_err(), "a ticket is no capability");
    assert!(key.open_copy_capability(&token, NOW).is_err(), "a ticket is no copy capability");
    assert!(key.open_receipt(&token).is_err(), "a ticket is no receipt");
    let mut bytes = token.clone().into_bytes();
    for edit in rest.chunks_exact(2) {
        let at = edit[0] as usize % bytes.len();
        bytes[at] ^= edit[1];
    }
    let edited = String::from_utf8_lossy(&bytes);
    if let Ok(opened) = key.open_ticket(&edited, NOW) {
        assert_eq!(opened, original, "an edited token opened as another ticket: {edited}");
    }
    // Truncations never open.
    let cut = rest.first().map_or(0, |&n| n as usize % token.len());
    assert!(key.open_ticket(&token[..cut], NOW).is_err());
});
