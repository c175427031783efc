//! Change events the directory service streams to watchers.
//!
//! `GET /v1/watch?path=P` (bearer ticket) answers `text/event-stream`: one
//! server-sent event per change at `P` or below it, its `data:` a
//! [`WatchEvent`] in JSON. A caller only receives events for paths it may
//! stat. Events are not stored: a watcher that (re)connects must assume
//! anything may have changed while it was away, and a watcher that falls
//! behind receives a [`WatchKind::Lagged`] event meaning the same.

use crate::path::DfsPath;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// A directory was made or a new file committed.
    Created,
    /// A new version of a file was committed, or the mode or owner changed.
    Modified,
    /// The path (and anything below it) was removed.
    Removed,
    /// The path (and anything below it) was renamed away; `to` says where.
    Renamed,
    /// Events were dropped because the watcher was too slow: drop every
    /// cached entry below the watched path.
    Lagged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEvent {
    pub path: DfsPath,
    pub kind: WatchKind,
    /// The file's version after the change (0 when gone or not a file).
    #[serde(default)]
    pub version: u64,
    /// For [`WatchKind::Renamed`]: the new path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DfsPath>,
}
