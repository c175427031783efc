//! Access keys: the S3 gateway's credentials, one user each.
//!
//! SigV4 signs with the plain secret, so the store keeps it, sealed with the
//! cluster key by the security service (`sealed_secret`): the store never
//! sees it in the clear. A key's tickets belong to sessions whose ids start
//! with [`key_session_prefix`], so deleting the key revokes them all in the
//! same transaction.

use crate::users::UserRecord;
use crate::StoreResult;
use dfs_proto::UnixSeconds;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    /// The access key id (`AKDFS...`); never reused.
    pub id: String,
    /// The user the key acts as; a key outlives no user (see [`AccessKeyStore::access_key`]).
    pub uid: u64,
    /// The secret, sealed with the cluster key.
    pub sealed_secret: String,
    pub created_at: UnixSeconds,
}

/// The first characters of the id of every session opened for key `id`.
pub fn key_session_prefix(id: &str) -> String {
    format!("key.{id}.")
}

/// The session ids in `[prefix, end)` are those starting with `prefix`
/// (its last character raised by one; prefixes end in `.`).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    let last = end.pop().expect("a non-empty prefix");
    end.push(char::from_u32(last as u32 + 1).expect("an ASCII prefix"));
    end
}

pub trait AccessKeyStore: Send + Sync {
    /// Records a new key of user `key.uid`; `NotFound` if that user does not exist.
    fn create_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()>;
    /// The key and its user, if both exist.
    fn access_key(&self, id: &str) -> StoreResult<Option<(AccessKeyRecord, UserRecord)>>;
    /// The keys of user `uid`, oldest first.
    fn access_keys(&self, uid: u64) -> StoreResult<Vec<AccessKeyRecord>>;
    /// Deletes the key and revokes every session opened with it, atomically.
    /// `NotFound` if absent.
    fn delete_access_key(&self, id: &str) -> StoreResult<AccessKeyRecord>;
}
