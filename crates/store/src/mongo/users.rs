//! Users and sessions on MongoDB: `users` (`_id` is the uid, a unique index
//! on the name) and `sessions` (`_id` is the session id). Uids come from the
//! `uid` counter, taken in the creating transaction: never reused.

use super::{int, is_duplicate_key, MongoStore, SESSIONS, UID_COUNTER, USERS};
use crate::users::{SessionRecord, UserRecord, UserStore};
use crate::{StoreError, StoreResult};
use dfs_proto::UnixSeconds;
use mongodb::bson::{doc, Document};
use serde::{Deserialize, Serialize};

/// One `users` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    pub(super) uid: u64,
    pub(super) name: String,
    pub(super) password_hash: String,
    pub(super) admin: bool,
    pub(super) created_at: u64,
}

impl From<UserDoc> for UserRecord {
    fn from(user: UserDoc) -> Self {
        UserRecord {
            uid: user.uid,
            name: user.name,
            password_hash: user.password_hash,
            admin: user.admin,
            created_at: user.created_at,
        }
    }
}

/// One `sessions` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    sid: String,
    uid: u64,
    expires_at: u64,
    revoked: bool,
}

impl From<SessionDoc> for SessionRecord {
    fn from(session: SessionDoc) -> Self {
        SessionRecord {
            sid: session.sid,
            uid: session.uid,
            expires_at: session.expires_at,
            revoked: session.revoked,
        }
    }
}

fn user_exists(name: &str) -> StoreError {
    StoreError::AlreadyExists(format!("user {name}"))
}

impl UserStore for MongoStore {
    fn create_user(&self, name: &str, password_hash: &str, admin: bool, now: UnixSeconds) -> StoreResult<UserRecord> {
        self.write(|tx| {
            if tx.find_one::<UserDoc>(USERS, doc! {"name": name})?.is_some() {
                return Err(user_exists(name));
            }
            let user = UserDoc {
                uid: tx.next_in_transaction(UID_COUNTER)?,
                name: name.to_string(),
                password_hash: password_hash.to_string(),
                admin,
                created_at: now,
            };
            tx.insert(USERS, &user).map_err(|error| {
                if is_duplicate_key(&error) {
                    user_exists(name)
                } else {
                    error
                }
            })?;
            Ok(user.into())
        })
    }

    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        let user = self.collection::<UserDoc>(USERS).find_one(doc! {"name": name}).run()?;
        Ok(user.map(UserRecord::from))
    }

    fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|tx| {
            let users: Vec<UserDoc> = tx.find(USERS, Document::new(), doc! {"name": 1}, Document::new())?;
            Ok(users.into_iter().map(UserRecord::from).collect())
        })
    }

    fn user_count(&self) -> StoreResult<u64> {
        Ok(self
            .collection::<Document>(USERS)
            .count_documents(Document::new())
            .run()?)
    }

    fn delete_user(&self, name: &str) -> StoreResult<UserRecord> {
        self.write(|tx| {
            let user: UserRecord = tx
                .find_one::<UserDoc>(USERS, doc! {"name": name})?
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?
                .into();
            tx.delete(USERS, doc! {"_id": int(user.uid)})?;
            tx.update_many(SESSIONS, doc! {"uid": int(user.uid)}, doc! {"$set": {"revoked": true}})?;
            Ok(user)
        })
    }

    fn set_password_hash(&self, name: &str, password_hash: &str, keep_session: Option<&str>) -> StoreResult<()> {
        self.write(|tx| {
            let user = tx
                .find_one::<UserDoc>(USERS, doc! {"name": name})?
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
            tx.update(
                USERS,
                doc! {"_id": int(user.uid)},
                doc! {"$set": {"password_hash": password_hash}},
            )?;
            let mut others = doc! {"uid": int(user.uid), "revoked": false};
            if let Some(keep) = keep_session {
                others.insert("_id", doc! {"$ne": keep});
            }
            tx.update_many(SESSIONS, others, doc! {"$set": {"revoked": true}})?;
            Ok(())
        })
    }

    fn create_session(&self, session: &SessionRecord, password_hash: &str) -> StoreResult<()> {
        let record = SessionDoc {
            sid: session.sid.clone(),
            uid: session.uid,
            expires_at: session.expires_at,
            revoked: session.revoked,
        };
        self.write(|tx| {
            // A write to the user's document, not just a read: under snapshot
            // isolation only write-write conflicts are seen, and this one makes
            // a deletion or password change committing meanwhile conflict.
            let matched = tx.update(
                USERS,
                doc! {"_id": int(session.uid), "password_hash": password_hash},
                doc! {"$inc": {"logins": 1_i64}},
            )?;
            if !matched {
                return Err(StoreError::NotFound(format!("user {} with that password", session.uid)));
            }
            tx.insert(SESSIONS, &record)
        })
    }

    fn revoke_user_sessions(&self, uid: u64) -> StoreResult<u64> {
        self.write(|tx| {
            tx.update_many(
                SESSIONS,
                doc! {"uid": int(uid), "revoked": false},
                doc! {"$set": {"revoked": true}},
            )
        })
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        let session = self
            .collection::<SessionDoc>(SESSIONS)
            .find_one(doc! {"_id": sid})
            .run()?;
        Ok(session.map(SessionRecord::from))
    }

    fn extend_session(&self, sid: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        let updated = self
            .collection::<Document>(SESSIONS)
            .update_one(
                doc! {"_id": sid, "revoked": false},
                doc! {"$max": {"expires_at": int(expires_at)}},
            )
            .run()?;
        if updated.matched_count == 0 {
            return Err(StoreError::NotFound(format!("live session {sid}")));
        }
        Ok(())
    }

    fn revoke_session(&self, sid: &str) -> StoreResult<()> {
        self.collection::<Document>(SESSIONS)
            .update_one(doc! {"_id": sid}, doc! {"$set": {"revoked": true}})
            .run()?;
        Ok(())
    }

    fn revoked_sessions(&self, now: UnixSeconds) -> StoreResult<Vec<SessionRecord>> {
        // Sessions expired for a day are of no use to anyone: forget them.
        self.collection::<Document>(SESSIONS)
            .delete_many(doc! {"expires_at": {"$lt": int(now.saturating_sub(86_400))}})
            .run()?;
        let mut cursor = self
            .collection::<SessionDoc>(SESSIONS)
            .find(doc! {"revoked": true, "expires_at": {"$gt": int(now)}})
            .run()?;
        let sessions = cursor.by_ref().collect::<Result<Vec<_>, _>>()?;
        Ok(sessions.into_iter().map(SessionRecord::from).collect())
    }
}
