use super::*;
use dfs_proto::chunk::ChunkId;
use dfs_proto::ticket::{ChunkOp, Role};

fn ticket(expires_at: UnixSeconds) -> Ticket {
    Ticket {
        uid: 7,
        name: "ann".into(),
        roles: vec![Role::User],
        sid: random_id(),
        issued_at: 1_000,
        expires_at,
        session_ends_at: expires_at,
    }
}

#[test]
fn a_sealed_ticket_opens_to_itself() {
    let key = ClusterKey::random();
    let original = ticket(2_000);
    let token = key.seal_ticket(&original);
    assert!(token.starts_with("v1."));
    assert_eq!(key.open_ticket(&token, 1_500).unwrap(), original);
}

#[test]
fn every_bad_ticket_is_refused() {
    let key = ClusterKey::random();
    let token = key.seal_ticket(&ticket(2_000));

    // Expired: at and after the expiry instant.
    assert_eq!(key.open_ticket(&token, 2_000), Err(SealError::Expired));
    assert_eq!(key.open_ticket(&token, 9_999), Err(SealError::Expired));

    // Wrong key.
    assert_eq!(ClusterKey::random().open_ticket(&token, 1_500), Err(SealError::BadSeal));

    // Every single flipped character of the body is caught.
    let body = &token[3..];
    for index in 0..body.len() {
        let mut bytes = body.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
        let tampered = format!("v1.{}", String::from_utf8(bytes).unwrap());
        if tampered == token {
            continue;
        }
        let err = key.open_ticket(&tampered, 1_500).unwrap_err();
        assert!(
            matches!(err, SealError::BadSeal | SealError::Malformed),
            "index {index}: {err:?}"
        );
    }

    // Truncated at every length.
    for cut in 0..token.len() {
        assert!(key.open_ticket(&token[..cut], 1_500).is_err(), "cut {cut}");
    }

    // Garbage, wrong prefix, bad base64, oversized.
    for bad in [
        "",
        "v1.",
        "v2.AAAA",
        "Bearer x",
        "v1.!!!!",
        "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(key.open_ticket(bad, 1_500).is_err(), "{bad:?}");
    }
    let huge = format!("v1.{}", "A".repeat(MAX_TOKEN_LEN));
    assert_eq!(key.open_ticket(&huge, 1_500), Err(SealError::Malformed));
}

#[test]
fn nonces_are_random() {
    let key = ClusterKey::random();
    let original = ticket(2_000);
    assert_ne!(key.seal_ticket(&original), key.seal_ticket(&original));
}

#[test]
fn purposes_do_not_mix() {
    let key = ClusterKey::random();
    let capability = Capability {
        op: ChunkOp::Read,
        chunk: ChunkId::from_hash_bytes(&[1; 32]),
        size: 10,
        targets: vec![],
        expires_at: 2_000,
        write_quorum: 0,
        session: None,
    };
    let cap_token = key.seal_capability(&capability);
    assert_eq!(key.open_capability(&cap_token, 1_500).unwrap(), capability);
    assert_eq!(key.open_ticket(&cap_token, 1_500), Err(SealError::BadSeal));
    let ticket_token = key.seal_ticket(&ticket(2_000));
    assert_eq!(key.open_capability(&ticket_token, 1_500), Err(SealError::BadSeal));
    assert_eq!(key.open_capability(&cap_token, 2_001), Err(SealError::Expired));
}

/// A write capability (every uploader gets one) is no copy capability, and
/// the other way round, though both name a chunk and its servers.
#[test]
fn a_chunk_capability_is_no_copy_capability() {
    let key = ClusterKey::random();
    let chunk = ChunkId::from_hash_bytes(&[2; 32]);
    let write = key.seal_capability(&Capability {
        op: ChunkOp::Write,
        chunk: chunk.clone(),
        size: 10,
        targets: vec![],
        expires_at: 2_000,
        write_quorum: 0,
        session: None,
    });
    assert_eq!(key.open_copy_capability(&write, 1_500), Err(SealError::BadSeal));
    let copy = CopyCapability {
        chunk,
        size: 10,
        target: "b".into(),
        source: dfs_proto::chunk::ServerRef {
            id: "a".into(),
            url: "http://127.0.0.1:1".into(),
        },
        read_capability: write,
        expires_at: 2_000,
    };
    let token = key.seal_copy_capability(&copy);
    assert_eq!(key.open_copy_capability(&token, 1_500).unwrap(), copy);
    assert_eq!(key.open_capability(&token, 1_500), Err(SealError::BadSeal));
    assert_eq!(key.open_copy_capability(&token, 2_000), Err(SealError::Expired));
}

#[test]
fn key_files_are_private_and_stable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/cluster.key");
    let (key, created) = ClusterKey::load_or_create(&path).unwrap();
    assert!(created);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
    let (again, created) = ClusterKey::load_or_create(&path).unwrap();
    assert!(!created);
    let token = key.seal_ticket(&ticket(2_000));
    assert!(again.open_ticket(&token, 1_500).is_ok());

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(ClusterKey::load(&path), Err(KeyFileError::TooOpen { .. })));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(
        ClusterKey::load(&path),
        Err(KeyFileError::BadLength { found: 5, .. })
    ));
}

/// Random mutations of a real ticket (byte changes, insertions, deletions,
/// truncations, splices with another ticket): opening never panics and never
/// accepts anything but the original.
#[test]
fn mutated_tickets_never_open() {
    use rand::{Rng, SeedableRng};
    let key = ClusterKey::random();
    let token = key.seal_ticket(&ticket(2_000));
    let other = key.seal_ticket(&ticket(2_000));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ea1);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/\0";
    for _ in 0..20_000 {
        let mut bytes = token.as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..5) {
                0 => bytes[at] = alphabet[rng.gen_range(0..alphabet.len())],
                1 => bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                2 if bytes.len() > 1 => {
                    bytes.remove(at);
                }
                3 => bytes.truncate(at),
                _ => {
                    let cut = rng.gen_range(0..other.len());
                    bytes.truncate(at.min(bytes.len()));
                    bytes.extend_from_slice(&other.as_bytes()[cut..]);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let Ok(mutated) = String::from_utf8(bytes) else {
            continue;
        };
        if mutated == token || mutated == other {
            continue;
        }
        assert!(key.open_ticket(&mutated, 1_500).is_err(), "{mutated:?} opened");
    }
}
