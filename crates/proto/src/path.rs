//! Namespace paths: absolute, `/`-separated, UTF-8, validated once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest accepted path component (file or directory name), in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must be absolute (start with '/'): {0:?}")]
    NotAbsolute(String),
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path has an empty component ('//'): {0:?}")]
    EmptyComponent(String),
    #[error("path components '.' and '..' are not allowed: {0:?}")]
    DotComponent(String),
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path component is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// Only for names being created (see [`DfsPath::check_new`]).
    #[error("names may not contain control characters (newline, escape, ...): {}", escape_controls(.0))]
    ControlCharacter(String),
}

/// `text` with every control character (C0 such as ESC, CR and LF, DEL,
/// and C1) written as a Rust-style escape (`\n`, `\u{1b}`): what a
/// terminal shows of a name nobody should have been able to create.
/// Printable characters, a backslash included, are left alone, so text
/// escaped once (a server's message) is unchanged by a second pass.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// A validated absolute path. `/` is the root; there is never a trailing `/`
/// except for the root itself, no empty, `.` or `..` component, and no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DfsPath(String);

impl DfsPath {
    pub fn root() -> Self {
        DfsPath("/".to_string())
    }

    /// Validates `raw`. One trailing `/` is accepted and dropped (`/a/` is `/a`).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute(raw.to_string()));
        }
        if raw == "/" {
            return Ok(Self::root());
        }
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        for name in trimmed[1..].split('/') {
            validate_name(name).map_err(|err| match err {
                PathError::EmptyComponent(_) => PathError::EmptyComponent(raw.to_string()),
                PathError::DotComponent(_) => PathError::DotComponent(raw.to_string()),
                other => other,
            })?;
        }
        Ok(DfsPath(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The names from the root down; empty for `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|name| !name.is_empty())
    }

    /// The parent directory and the last name, or `None` for the root.
    pub fn split_last(&self) -> Option<(DfsPath, &str)> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("absolute path has a '/'");
        let parent = if cut == 0 { "/" } else { &self.0[..cut] };
        Some((DfsPath(parent.to_string()), &self.0[cut + 1..]))
    }

    pub fn parent(&self) -> Option<DfsPath> {
        self.split_last().map(|(parent, _)| parent)
    }

    pub fn name(&self) -> Option<&str> {
        self.split_last().map(|(_, name)| name)
    }

    /// `self` joined with one validated name.
    pub fn join(&self, name: &str) -> Result<DfsPath, PathError> {
        validate_name(name)?;
        let joined = if self.is_root() {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        };
        if joined.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        Ok(DfsPath(joined))
    }

    /// Refuses a path with a control character in any name
    /// ([`PathError::ControlCharacter`]): checked where names are created
    /// (mkdir, file writes, the target of a rename), not in [`DfsPath::parse`],
    /// so that names stored before the check can still be read, renamed and
    /// removed.
    pub fn check_new(&self) -> Result<(), PathError> {
        if self.0.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter(self.0.clone()));
        }
        Ok(())
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &DfsPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }
}

/// Validates one path component (a file or directory name).
pub fn validate_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptyComponent(name.to_string()));
    }
    if name == "." || name == ".." {
        return Err(PathError::DotComponent(name.to_string()));
    }
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.contains('/') {
        return Err(PathError::EmptyComponent(name.to_string()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(PathError::NameTooLong);
    }
    Ok(())
}

impl fmt::Display for DfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DfsPath {
    type Error = PathError;
    fn try_from(raw: String) -> Result<Self, PathError> {
        DfsPath::parse(&raw)
    }
}

impl From<DfsPath> for String {
    fn from(path: DfsPath) -> String {
        path.0
    }
}

impl std::str::FromStr for DfsPath {
    type Err = PathError;
    fn from_str(raw: &str) -> Result<Self, PathError> {
        DfsPath::parse(raw)
    }
}

#[cfg(test)]
mod tests;
