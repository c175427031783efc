//! Passwords are stored only as Argon2id PHC strings (salt and parameters inside).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use std::sync::OnceLock;

/// Argon2id with the library's defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = hasher()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))?;
    Ok(hash.to_string())
}

/// True if `password` matches the stored `hash`. A malformed hash never matches.
pub fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real check, for user names that do not exist,
/// so that timing does not tell whether a user exists.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("dfs-dummy-password").expect("hashing a constant"));
    let _ = verify(dummy, password);
}

/// 24 random characters from [A-Za-z0-9]: about 143 bits.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let first = hash("correct horse").unwrap();
        let second = hash("correct horse").unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert!(!first.contains("correct horse"));
        assert_ne!(first, second, "salts differ");
        assert!(verify(&first, "correct horse"));
        assert!(!verify(&first, "correct horsf"));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn random_passwords_differ() {
        let password = random_password();
        assert_eq!(password.len(), 24);
        assert_ne!(password, random_password());
    }
}
