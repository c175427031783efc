//! The security service's requests and responses.
//!
//! - `POST /v1/auth/login` [`LoginRequest`] -> [`LoginResponse`]
//! - `POST /v1/auth/refresh` (bearer) -> [`LoginResponse`] with a later expiry
//! - `POST /v1/auth/refresh` never extends a session past its absolute end
//!   (`session_ends_at` in the ticket; 12 hours after the login by default)
//! - `POST /v1/auth/logout` (bearer) -> 204; the session is revoked everywhere
//! - `POST /v1/auth/logout-all` (bearer) -> [`SessionsEnded`]; every session of the caller is revoked
//! - `GET /v1/auth/whoami` (bearer) -> [`WhoAmI`]
//! - `GET /v1/auth/revoked` (service bearer) -> [`RevokedSessions`]
//! - `GET /v1/users` (admin) -> `Vec<UserInfo>`; `POST /v1/users` (admin) [`CreateUserRequest`]
//! - `GET /v1/users/{name}` (admin, service or self); `DELETE /v1/users/{name}` (admin)
//! - `PUT /v1/users/{name}/password` (admin or self) [`ChangePasswordRequest`] -> 204; every
//!   other session of the user is revoked (a change of one's own password needs the current one)
//! - `DELETE /v1/users/{name}/sessions` (admin) -> [`SessionsEnded`]; ends every session of the user
//! - `GET /v1/keys` (bearer) -> `Vec<AccessKeyInfo>`, the caller's S3 access keys (`?user=NAME`: admin);
//!   `POST /v1/keys` [`CreateAccessKeyRequest`] -> [`CreatedAccessKey`] (the secret, shown once);
//!   `DELETE /v1/keys/{id}` (its user or admin) -> 204, every ticket of the key revoked
//! - `POST /v1/keys/{id}/session` (service bearer: the S3 gateway) -> [`KeySession`]
//!
//! A login forwarded by a DFS service (the directory service serving the
//! web file manager) names the browser's address in [`FORWARDED_CLIENT_HEADER`]
//! and carries a service ticket; the failed-login limits then count that
//! address. The header is refused from anyone else.

use crate::ticket::Role;
use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

/// Request header of a login forwarded by a DFS service: the IP address of
/// the client it forwards (see the module docs).
pub const FORWARDED_CLIENT_HEADER: &str = "x-dfs-forwarded-client";

pub const MAX_USER_NAME_LEN: usize = 32;
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// The sealed ticket; send as `Authorization: Bearer <ticket>`.
    pub ticket: String,
    pub expires_at: UnixSeconds,
    pub user: UserInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub uid: u64,
    pub name: String,
    pub admin: bool,
    pub created_at: UnixSeconds,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUserRequest {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    pub password: String,
    /// Required when changing one's own password (admin included); not
    /// needed by an admin resetting another user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// How many sessions a logout-everywhere ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsEnded {
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    pub uid: u64,
    pub name: String,
    pub roles: Vec<Role>,
    pub session: String,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// Sessions revoked before their tickets expire; each entry can be forgotten
/// after `expires_at`, when the ticket would be refused anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokedSessions {
    pub sessions: Vec<RevokedSession>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokedSession {
    pub sid: String,
    pub expires_at: UnixSeconds,
}

/// `GET /v1/info` on the directory service (no auth): where the rest of the cluster is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterInfo {
    pub auth_url: String,
    pub directory_url: String,
    pub chunk_size: u64,
    pub version: String,
    /// Files of at most this many bytes may be written inline
    /// (`PUT /v1/files`); 0 from a directory service that cannot.
    #[serde(default)]
    pub inline_max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("user name must not be empty")]
    Empty,
    #[error("user name is longer than {MAX_USER_NAME_LEN} characters")]
    TooLong,
    #[error("user name must start with a lowercase letter and hold only a-z, 0-9, '_' and '-': {0:?}")]
    BadCharacters(String),
}

/// User names are short, lowercase and safe as a path component: `/home/NAME`.
pub fn validate_user_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_USER_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::BadCharacters(name.chars().take(64).collect()))
    }
}

/// Length limits on passwords; anything else is the user's choice. The
/// minimum counts characters (Unicode scalar values), the maximum bytes.
pub fn validate_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("password must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("password must be at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["admin", "ann", "a", "bob-2", "c_d"] {
            assert_eq!(validate_user_name(good), Ok(()), "{good}");
        }
        assert_eq!(validate_user_name(""), Err(NameError::Empty));
        assert_eq!(validate_user_name(&"a".repeat(33)), Err(NameError::TooLong));
        for bad in ["Ann", "1ann", "-x", "a b", "a/b", "a\0", "..", "é"] {
            assert!(
                matches!(validate_user_name(bad), Err(NameError::BadCharacters(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(2000)).is_err());
        // Characters, not bytes: six two-byte characters are too short, eight are enough.
        assert!(validate_password("éééééé").is_err());
        assert!(validate_password("éééééééé").is_ok());
    }
}

/// An S3 access key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessKeyInfo {
    /// The access key id (`AKDFS` and 15 more characters of `[A-Z0-9]`).
    pub id: String,
    /// The user the key acts as.
    pub user: String,
    pub created_at: UnixSeconds,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateAccessKeyRequest {
    /// The user to make the key for (admin only); the caller by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A new access key with its secret: the one time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedAccessKey {
    #[serde(flatten)]
    pub key: AccessKeyInfo,
    pub secret: String,
}

/// What the S3 gateway needs to serve a key's requests: the secret (to check
/// signatures) and a ticket of a session of the key's user, revoked with the
/// key or the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeySession {
    pub uid: u64,
    pub user: String,
    pub secret: String,
    pub ticket: String,
    pub expires_at: UnixSeconds,
}
