//! JSON request bodies the services deserialise (`ApiJson<T>`): any bytes
//! either fail cleanly or give a value that serialises and parses again.
#![no_main]

use dfs_proto::{auth, chunk, locks, namespace, tx};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn check<T: Serialize + DeserializeOwned>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&value).expect("a parsed body serialises");
        serde_json::from_slice::<T>(&json).expect("a serialised body parses again");
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the type, so each gets the whole input's structure.
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 21 {
        0 => check::<auth::LoginRequest>(body),
        1 => check::<auth::CreateUserRequest>(body),
        2 => check::<auth::ChangePasswordRequest>(body),
        3 => check::<namespace::MkdirRequest>(body),
        4 => check::<namespace::RemoveRequest>(body),
        5 => check::<namespace::RenameRequest>(body),
        6 => check::<namespace::ChmodRequest>(body),
        7 => check::<namespace::ChownRequest>(body),
        8 => check::<namespace::BeginUpload>(body),
        9 => check::<namespace::PlaceChunks>(body),
        10 => check::<namespace::CommitUpload>(body),
        11 => check::<namespace::DrainRequest>(body),
        12 => check::<namespace::EnsureHome>(body),
        13 => check::<namespace::UploadReceipts>(body),
        14 => check::<namespace::PathQuery>(body),
        15 => check::<chunk::DamageReport>(body),
        16 => check::<chunk::Heartbeat>(body),
        17 => check::<locks::LockRequest>(body),
        18 => check::<locks::RenewLock>(body),
        19 => check::<locks::ReleaseLock>(body),
        _ => check::<tx::BeginTransaction>(body),
    }
});
