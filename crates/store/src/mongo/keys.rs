//! [`AccessKeyStore`] on MongoDB: `access_keys` (`_id` is the key id, an
//! index on the uid).

use super::users::UserDoc;
use super::{int, MongoStore, ACCESS_KEYS, SESSIONS, USERS};
use crate::keys::{key_session_prefix, prefix_end, AccessKeyRecord, AccessKeyStore};
use crate::users::UserRecord;
use crate::{StoreError, StoreResult};
use mongodb::bson::{doc, Document};
use serde::{Deserialize, Serialize};

/// One `access_keys` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyDoc {
    #[serde(rename = "_id")]
    id: String,
    uid: u64,
    sealed_secret: String,
    created_at: u64,
}

impl From<KeyDoc> for AccessKeyRecord {
    fn from(key: KeyDoc) -> Self {
        AccessKeyRecord {
            id: key.id,
            uid: key.uid,
            sealed_secret: key.sealed_secret,
            created_at: key.created_at,
        }
    }
}

impl AccessKeyStore for MongoStore {
    fn create_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()> {
        let record = KeyDoc {
            id: key.id.clone(),
            uid: key.uid,
            sealed_secret: key.sealed_secret.clone(),
            created_at: key.created_at,
        };
        self.write(|tx| {
            // A write to the user's document, so that its deletion committing
            // meanwhile conflicts (snapshot isolation sees only write-write conflicts).
            if !tx.update(USERS, doc! {"_id": int(key.uid)}, doc! {"$inc": {"keys": 1_i64}})? {
                return Err(StoreError::NotFound(format!("user {}", key.uid)));
            }
            tx.insert(ACCESS_KEYS, &record)
        })
    }

    fn access_key(&self, id: &str) -> StoreResult<Option<(AccessKeyRecord, UserRecord)>> {
        self.read(|tx| {
            let Some(key) = tx.find_one::<KeyDoc>(ACCESS_KEYS, doc! {"_id": id})? else {
                return Ok(None);
            };
            let user = tx.find_one::<UserDoc>(USERS, doc! {"_id": int(key.uid)})?;
            Ok(user.map(|user| (key.into(), user.into())))
        })
    }

    fn access_keys(&self, uid: u64) -> StoreResult<Vec<AccessKeyRecord>> {
        self.read(|tx| {
            let keys: Vec<KeyDoc> = tx.find(
                ACCESS_KEYS,
                doc! {"uid": int(uid)},
                doc! {"created_at": 1, "_id": 1},
                Document::new(),
            )?;
            Ok(keys.into_iter().map(AccessKeyRecord::from).collect())
        })
    }

    fn delete_access_key(&self, id: &str) -> StoreResult<AccessKeyRecord> {
        self.write(|tx| {
            let key: AccessKeyRecord = tx
                .find_one::<KeyDoc>(ACCESS_KEYS, doc! {"_id": id})?
                .ok_or_else(|| StoreError::NotFound(format!("access key {id}")))?
                .into();
            tx.delete(ACCESS_KEYS, doc! {"_id": id})?;
            let prefix = key_session_prefix(id);
            tx.update_many(
                SESSIONS,
                doc! {"_id": {"$gte": &prefix, "$lt": prefix_end(&prefix)}},
                doc! {"$set": {"revoked": true}},
            )?;
            Ok(key)
        })
    }
}
