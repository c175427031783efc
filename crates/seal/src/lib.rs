//! The cluster key and sealed tokens.
//!
//! A sealed token is `v1.` followed by base64url (no padding) of
//! `nonce (12 bytes) || AES-256-GCM ciphertext and tag` of the JSON payload.
//! The nonce is random per token. The additional authenticated data is a
//! purpose label ([`Purpose`]), so a ticket can never be passed off as a
//! capability or a receipt, nor a chunk capability as a copy capability,
//! even though one key seals them all.
//!
//! Architecture invariant: this crate is pure (no network, no clock of its
//! own except in [`now`]); every service opens tokens locally with the key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dfs_proto::ticket::{Capability, CopyCapability, Receipt, Ticket};
use dfs_proto::UnixSeconds;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const PREFIX: &str = "v1.";
/// Longest token we try to open; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// What a sealed token is for; bound into the AEAD tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Ticket,
    Capability,
    /// A [`CopyCapability`]: issued only by the directory service's repair loop.
    CopyCapability,
    Receipt,
    /// The secret of an S3 access key, at rest in the user store.
    AccessKeySecret,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Ticket => b"dfs/ticket/v1",
            Purpose::Capability => b"dfs/capability/v1",
            Purpose::CopyCapability => b"dfs/copy-capability/v1",
            Purpose::Receipt => b"dfs/receipt/v1",
            Purpose::AccessKeySecret => b"dfs/access-key-secret/v1",
        }
    }
}

/// Every way a token can be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("token is malformed")]
    Malformed,
    #[error("token was tampered with or sealed under another key")]
    BadSeal,
    #[error("token expired")]
    Expired,
}

/// The 32-byte secret shared by every service of a cluster.
#[derive(Clone)]
pub struct ClusterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading cluster key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cluster key {path} must hold exactly {KEY_LEN} bytes, found {found}")]
    BadLength { path: String, found: usize },
    #[error("cluster key {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: String, mode: u32 },
}

impl ClusterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        ClusterKey {
            cipher: Aes256Gcm::new(&bytes.into()),
        }
    }

    pub fn random() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Reads a key file, refusing one that other users can read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen { path: shown, mode });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyFileError::BadLength {
            path: shown.clone(),
            found: bytes.len(),
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// Loads the key at `path`, or creates a random one there (mode 0600,
    /// fsynced) if no file exists. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyFileError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        write_secret_file(path, &bytes).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok((Self::from_bytes(bytes), true))
    }

    /// Seals any payload for `purpose`.
    pub fn seal<T: Serialize>(&self, purpose: Purpose, payload: &T) -> String {
        let plaintext = serde_json::to_vec(payload).expect("wire types always serialise");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: purpose.label(),
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens a token sealed for `purpose`; does not look at expiry.
    pub fn open<T: DeserializeOwned>(&self, purpose: Purpose, token: &str) -> Result<T, SealError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SealError::Malformed);
        }
        let body = token.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::Malformed)?;
        // 16 bytes of tag at the least.
        if raw.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.label(),
                },
            )
            .map_err(|_| SealError::BadSeal)?;
        // Only we seal, so a payload that fails to parse means a key shared
        // with something else: treat it as a bad seal.
        serde_json::from_slice(&plaintext).map_err(|_| SealError::BadSeal)
    }

    pub fn seal_ticket(&self, ticket: &Ticket) -> String {
        self.seal(Purpose::Ticket, ticket)
    }

    /// Opens a ticket and checks that it has not expired at `now`.
    pub fn open_ticket(&self, token: &str, now: UnixSeconds) -> Result<Ticket, SealError> {
        let ticket: Ticket = self.open(Purpose::Ticket, token)?;
        if ticket.expires_at <= now {
            return Err(SealError::Expired);
        }
        Ok(ticket)
    }

    pub fn seal_capability(&self, capability: &Capability) -> String {
        self.seal(Purpose::Capability, capability)
    }

    /// Opens a capability and checks that it has not expired at `now`.
    pub fn open_capability(&self, token: &str, now: UnixSeconds) -> Result<Capability, SealError> {
        let capability: Capability = self.open(Purpose::Capability, token)?;
        if capability.expires_at <= now {
            return Err(SealError::Expired);
        }
        Ok(capability)
    }

    pub fn seal_copy_capability(&self, capability: &CopyCapability) -> String {
        self.seal(Purpose::CopyCapability, capability)
    }

    /// Opens a copy capability and checks that it has not expired at `now`.
    pub fn open_copy_capability(&self, token: &str, now: UnixSeconds) -> Result<CopyCapability, SealError> {
        let capability: CopyCapability = self.open(Purpose::CopyCapability, token)?;
        if capability.expires_at <= now {
            return Err(SealError::Expired);
        }
        Ok(capability)
    }

    pub fn seal_receipt(&self, receipt: &Receipt) -> String {
        self.seal(Purpose::Receipt, receipt)
    }

    pub fn open_receipt(&self, token: &str) -> Result<Receipt, SealError> {
        self.open(Purpose::Receipt, token)
    }
}

/// Writes `bytes` to a new file readable only by its owner (mode 0600),
/// fsyncs it and its directory. Fails if the file exists.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    write_secret_file_with(path, |file| file.write_all(bytes))
}

/// [`write_secret_file`] of what `write` writes into the new file (through
/// a buffer of its own, if it writes in small pieces): nothing needs to be
/// whole in memory. The file and its directory are synced once `write`
/// returns.
pub fn write_secret_file_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    write(&mut file)?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// 32 random hex digits (128 bits), for session and upload ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
