//! Object versions (S3 versioning) over a namespace that holds one version
//! of a file.
//!
//! - A bucket's settings (its versioning status) are the file
//!   `/buckets/.versions/BUCKET/settings` (JSON, mode 0644, written by its
//!   owner). The gateway makes `/buckets/.versions` (0711) and
//!   `/buckets/.versions/BUCKET` (the bucket owner's, 0711): others may read
//!   the settings, not list the tree. A gateway keeps the settings it
//!   read for [`SETTINGS_TTL`] ([`SettingsCache`]), so that a write to a
//!   bucket does not read them each time: a change made through a gateway
//!   applies at once to its own requests, and to another gateway's within
//!   that time (S3 itself asks to wait after enabling versioning).
//! - The object of a key is its file in the bucket, as without versioning;
//!   its version id is its attribute [`VERSION_ID`] (none: `null`).
//! - The versions kept of key `K` are files in
//!   `/buckets/.versions/BUCKET/keys/K/`, each named by its version id, made
//!   by the bucket's owner (directories 0700: no other user reads an old
//!   version, whatever its mode was); a delete marker is an empty file
//!   with [`DELETE_MARKER`]. A version keeps its attributes (metadata, ETag,
//!   tags) and its LastModified ([`metadata::LAST_MODIFIED`]).
//! - A write (PutObject, CopyObject, CompleteMultipartUpload) to a key of a
//!   bucket with versioning first keeps the object there: a compose of the
//!   file into `keys/K/ID` (one metadata transaction, no byte copied; a
//!   small inline file is written again), then commits the new version over
//!   the file at the version kept (a compare-and-set). A crash between the
//!   two leaves the old version twice (the object, and its copy, which
//!   listings do not show twice): never a version lost. DeleteObject keeps
//!   the object, writes a delete marker, then removes the file. Deleting the
//!   object's own version moves the newest version kept into its place
//!   (one rename), so that it becomes the object again.

use super::lock::{self, LockSettings};
use super::{timestamp, Gateway, Missing, WriteCondition};
use crate::metadata;
use crate::paths::{bucket_versions, key_of, object_path, versions_dir, VERSIONS};
use crate::sessions::Acting;
use crate::walk::{Bounds, Item, Walk};
use dfs_proto::namespace::{EntryKind, FileLayout, Stat};
use dfs_proto::{Attributes, DfsPath, ErrorCode};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

/// The attribute holding an object's version id (absent: `null`).
pub(crate) const VERSION_ID: &str = "s3-version-id";
/// The attribute of a delete marker.
pub(crate) const DELETE_MARKER: &str = "s3-delete-marker";
/// The version id of an object written without versioning, or while it is suspended.
pub(crate) const NULL: &str = "null";

/// The file of a bucket's settings, in its [`bucket_versions`] directory.
const SETTINGS: &str = "settings";
/// The directory of the versions kept, in its [`bucket_versions`] directory.
const KEYS: &str = "keys";

/// A bucket's versioning status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Versioning {
    Enabled,
    Suspended,
}

/// What a bucket keeps in its settings file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) versioning: Option<Versioning>,
    /// Object lock (enabled at the bucket's creation, with versioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) object_lock: Option<LockSettings>,
    /// The bucket's CORS rules (PutBucketCors), in their order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cors: Option<Vec<super::cors::CorsRule>>,
}

/// How long a gateway uses the settings it read of a bucket, unless it
/// changed them itself: how long another gateway's change may go unseen.
pub(crate) const SETTINGS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Buckets kept in a [`SettingsCache`] at most (beyond, the oldest go).
const SETTINGS_CACHED: usize = 4096;

/// Buckets' settings as read, each used for [`SETTINGS_TTL`]. Settings are
/// the same for every caller (any user may read them), so one entry serves
/// every key. A read that began before a change of this gateway (which
/// bumps `generation`) is not kept: it may be from before the change.
#[derive(Default)]
pub(crate) struct SettingsCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Settings)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl SettingsCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (std::time::Instant, Settings)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The settings of `bucket`, if read less than [`SETTINGS_TTL`] ago.
    pub(crate) fn get(&self, bucket: &str) -> Option<Settings> {
        let entries = self.entries();
        let (read_at, settings) = entries.get(bucket)?;
        (read_at.elapsed() < SETTINGS_TTL).then(|| settings.clone())
    }

    /// The generation a read starts at (see [`SettingsCache::insert`]).
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Keeps `settings` of `bucket`, read at `read_at` from a read begun at
    /// `generation`, unless this gateway changed some settings since.
    fn insert(&self, bucket: &str, settings: Settings, read_at: std::time::Instant, generation: u64) {
        let mut entries = self.entries();
        if generation != self.generation() {
            return;
        }
        if entries.len() >= SETTINGS_CACHED && !entries.contains_key(bucket) {
            entries.retain(|_, (read_at, _)| read_at.elapsed() < SETTINGS_TTL);
            if entries.len() >= SETTINGS_CACHED {
                entries.clear();
            }
        }
        entries.insert(bucket.to_string(), (read_at, settings));
    }

    /// The settings of `bucket` (none kept: the defaults), as read at most
    /// [`SETTINGS_TTL`] ago, or read now by `client`; the outer error is a
    /// bad bucket name or unreadable settings, the inner one the read's.
    pub(crate) async fn read(
        &self,
        client: &dfs_client::Client,
        bucket: &str,
    ) -> S3Result<Result<Settings, dfs_client::Error>> {
        if let Some(settings) = self.get(bucket) {
            return Ok(Ok(settings));
        }
        let path = bucket_versions(bucket)?.join(SETTINGS).expect("a valid name");
        let (read_at, generation) = (std::time::Instant::now(), self.generation());
        let settings = match client.read_inline(&path).await {
            Ok((_, bytes)) => serde_json::from_slice(&bytes)
                .map_err(|error| s3_error!(InternalError, "the settings of bucket {bucket}: {error}"))?,
            Err(error) if error.is_not_found() => Settings::default(),
            Err(error) => return Ok(Err(error)),
        };
        self.insert(bucket, settings.clone(), read_at, generation);
        Ok(Ok(settings))
    }

    /// Forgets `bucket`'s settings (this gateway changes them), and any
    /// read of them in flight.
    pub(crate) fn forget(&self, bucket: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.remove(bucket);
    }
}

/// A new version id: 16 hex digits of the time in microseconds, then 8
/// random ones, so that ids sort by age.
fn new_version_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    format!("{micros:016x}{}", &dfs_seal::random_id()[..8])
}

/// A version id a request named: `null` or one of [`new_version_id`]'s
/// (so that it is a file name); else `InvalidArgument`.
fn check_version_id(id: &str) -> S3Result<()> {
    if id == NULL || (id.len() == 24 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))) {
        return Ok(());
    }
    Err(s3_error!(InvalidArgument, "Invalid version id specified"))
}

/// The version id of the version `stat` names.
pub(crate) fn version_id_of(stat: &Stat) -> String {
    stat.attributes
        .get(VERSION_ID)
        .cloned()
        .unwrap_or_else(|| NULL.to_string())
}

fn is_marker(stat: &Stat) -> bool {
    stat.attributes.contains_key(DELETE_MARKER)
}

/// Where a version sorts among its key's, newest first: the time of its
/// id, else (`null`) its LastModified.
fn age(id: &str, stat: Option<&Stat>) -> u64 {
    match u64::from_str_radix(id.get(..16).unwrap_or_default(), 16) {
        Ok(micros) if id != NULL => micros,
        _ => stat.map_or(0, |stat| metadata::last_modified_ms(stat).saturating_mul(1000)),
    }
}

/// Locks of keys, striped: writes and deletes of one key in a bucket with
/// versioning take turns in a gateway, so that concurrent PutObjects of a
/// key each keep the version before them instead of failing their commit's
/// compare-and-set (two gateways may still race: then one fails,
/// `PreconditionFailed`, and nothing is lost).
pub(crate) struct KeyLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks((0..256).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl KeyLocks {
    async fn lock(&self, bucket: &str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        // FNV-1a of the names: the same stripe for the same key.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bucket.bytes().chain([0]).chain(key.bytes()) {
            hash = (hash ^ byte as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0[(hash % self.0.len() as u64) as usize].lock().await
    }
}

/// What a write to a key does around its commit, in a bucket with versioning.
#[derive(Debug, Default)]
pub(crate) struct Prepared<'a> {
    /// The key's turn, held until the commit is done.
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// The commit's condition: the version kept must still be the object.
    pub(crate) condition: WriteCondition,
    /// The version id of the new version (its [`VERSION_ID`]), if not `null`.
    pub(crate) version_id: Option<String>,
    /// After the commit: the `null` version kept, which the new `null` replaces.
    replaced: Option<DfsPath>,
    /// The bucket's object lock configuration, if it has one.
    lock: Option<LockSettings>,
}

impl Prepared<'_> {
    /// The version id to answer: the new version's, none for `null` (as
    /// S3 answers while versioning is suspended).
    pub(crate) fn answer(&self) -> Option<String> {
        self.version_id.clone()
    }

    /// `attributes` with the new version's id, and the bucket's default
    /// retention (a lock in a bucket without object lock: `InvalidRequest`).
    pub(crate) fn stamp(&self, attributes: &mut Attributes) -> S3Result<()> {
        attributes.remove(VERSION_ID);
        if let Some(id) = &self.version_id {
            attributes.insert(VERSION_ID.to_string(), id.clone());
        }
        lock::stamp(self.lock.as_ref(), attributes)
    }
}

/// What a DeleteObject did.
#[derive(Debug, Default)]
pub(crate) struct Deleted {
    pub(crate) delete_marker: bool,
    pub(crate) version_id: Option<String>,
}

impl Gateway {
    /// The settings of `bucket` (none kept: the defaults), as read at
    /// most [`SETTINGS_TTL`] ago, or as this gateway last wrote them.
    pub(crate) async fn settings(&self, acting: &Acting, bucket: &str) -> S3Result<Settings> {
        match self.settings_cache.read(&acting.client, bucket).await? {
            Ok(settings) => Ok(settings),
            Err(error) => Err(self.error(acting, error)),
        }
    }

    /// Writes the settings of `bucket`, as its owner `acting`.
    pub(crate) async fn write_settings(&self, acting: &Acting, bucket: &str, settings: &Settings) -> S3Result<()> {
        let dir = bucket_versions(bucket)?;
        let root: DfsPath = VERSIONS.parse().expect("a valid path");
        self.ensure_gateway_dir(root, dir.clone(), 0o711, &acting.user).await?;
        let path = dir.join(SETTINGS).expect("a valid name");
        let bytes = serde_json::to_vec(settings).expect("serialisable");
        self.settings_cache.forget(bucket);
        let written = acting
            .client
            .write_inline(&path, bytes, &Attributes::new(), false, Some(0o644))
            .await;
        // Read anew by the next request, written or not (a failed write may have been done).
        self.settings_cache.forget(bucket);
        match written {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(acting, bucket, Missing::Bucket, error).await),
        }
    }

    /// The bucket's directory, if `acting` owns it; else `AccessDenied`.
    pub(crate) async fn owned_bucket(&self, acting: &Acting, bucket: &str) -> S3Result<Stat> {
        let stat = self.bucket_stat(acting, bucket).await?;
        if stat.owner_uid != acting.uid {
            return Err(s3_error!(AccessDenied, "bucket {bucket} belongs to another user"));
        }
        Ok(stat)
    }

    /// The first layout page of `path`, if it is a file.
    async fn layout_if_any(&self, acting: &Acting, bucket: &str, path: &DfsPath) -> S3Result<Option<FileLayout>> {
        match acting.client.first_layout_page(path).await {
            Ok(layout) if layout.stat.kind == EntryKind::File => Ok(Some(layout)),
            Ok(_) => Ok(None),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(self.fail(acting, bucket, Missing::Key, error).await),
        }
    }

    /// The directory of the versions kept of `key`, made as needed by the
    /// caller (the bucket's owner: no one else may write the tree), 0700.
    async fn make_versions_dir(&self, acting: &Acting, bucket: &str, key: &str) -> S3Result<DfsPath> {
        let root = bucket_versions(bucket)?;
        self.ensure_gateway_dir(
            VERSIONS.parse().expect("a valid path"),
            root.clone(),
            0o711,
            &acting.user,
        )
        .await?;
        let dir = versions_dir(bucket, key)?;
        for (path, parents) in [(root.join(KEYS).expect("a valid name"), false), (dir.clone(), true)] {
            if let Err(error) = acting.client.mkdir(&path, parents, Some(0o700)).await {
                if error.code() != Some(ErrorCode::AlreadyExists) {
                    return Err(self.fail(acting, bucket, Missing::Bucket, error).await);
                }
            }
        }
        Ok(dir)
    }

    /// Keeps the object `layout` names as version `id` of `key` (a copy of
    /// its chunks in the versions tree; a copy there already is replaced).
    async fn keep(&self, acting: &Acting, bucket: &str, key: &str, layout: FileLayout, id: &str) -> S3Result<()> {
        let dir = self.make_versions_dir(acting, bucket, key).await?;
        let attributes = layout.stat.attributes.clone();
        let target = dir.join(id).expect("a valid name");
        self.rewrite(acting, bucket, layout, &target, attributes).await?;
        Ok(())
    }

    /// Before a write to `key` under `condition`: in a bucket with
    /// versioning, keeps the object (unless it is the `null` version that a
    /// new `null` replaces), and says what the commit is to do.
    pub(crate) async fn prepare_write(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        condition: WriteCondition,
    ) -> S3Result<Prepared<'_>> {
        let settings = self.settings(acting, bucket).await?;
        let Some(status) = settings.versioning else {
            return Ok(Prepared {
                condition,
                ..Prepared::default()
            });
        };
        let path = object_path(bucket, key)?;
        let mut prepared = Prepared {
            _turn: Some(self.key_locks.lock(bucket, key).await),
            condition,
            lock: settings.object_lock,
            ..Prepared::default()
        };
        match self.layout_if_any(acting, bucket, &path).await? {
            Some(layout) => {
                let version = layout.stat.version;
                if condition.no_clobber || condition.if_version.is_some_and(|seen| seen != version) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "key {key:?} changed since it was checked"
                    ));
                }
                let id = version_id_of(&layout.stat);
                if status == Versioning::Enabled || id != NULL {
                    self.keep(acting, bucket, key, layout, &id).await?;
                }
                prepared.condition = WriteCondition {
                    no_clobber: false,
                    if_version: Some(version),
                };
            }
            None => prepared.condition.no_clobber = true,
        }
        match status {
            Versioning::Enabled => prepared.version_id = Some(new_version_id()),
            Versioning::Suspended => {
                prepared.replaced = Some(versions_dir(bucket, key)?.join(NULL).expect("a valid name"))
            }
        }
        Ok(prepared)
    }

    /// After a write's commit: the `null` version it replaced is removed.
    pub(crate) async fn finish_write(&self, acting: &Acting, prepared: &Prepared<'_>) {
        if let Some(path) = &prepared.replaced {
            match acting.client.remove(path, false).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => tracing::warn!(%path, %error, "removing a replaced null version"),
            }
        }
    }

    /// The first layout page of version `version_id` of `key` (the object's
    /// if it is that version, else the one kept); `NoSuchVersion` if there
    /// is none, `MethodNotAllowed` for a delete marker.
    pub(crate) async fn version_layout(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> S3Result<FileLayout> {
        check_version_id(version_id)?;
        let path = object_path(bucket, key).map_err(|_| no_such_version())?;
        if let Some(layout) = self.layout_if_any(acting, bucket, &path).await? {
            if version_id_of(&layout.stat) == version_id {
                return Ok(layout);
            }
        }
        let kept = versions_dir(bucket, key)?.join(version_id).expect("a valid name");
        match self.layout_if_any(acting, bucket, &kept).await? {
            Some(layout) if is_marker(&layout.stat) => Err(s3_error!(
                MethodNotAllowed,
                "version {version_id} of {key:?} is a delete marker"
            )),
            Some(layout) => Ok(layout),
            None => {
                self.bucket_stat(acting, bucket).await?;
                Err(no_such_version())
            }
        }
    }

    /// The first layout page of `key`'s object, or of its version
    /// `version_id` if one is named, read as the caller.
    pub(crate) async fn object_version_layout(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<FileLayout> {
        match version_id {
            Some(id) => self.version_layout(acting, bucket, key, id).await,
            None => self.object_layout(acting, bucket, key).await,
        }
    }

    /// The versions kept of `key`, newest first: (id, stat).
    async fn kept(&self, acting: &Acting, bucket: &str, key: &str) -> S3Result<Vec<(String, Stat)>> {
        let dir = versions_dir(bucket, key)?;
        let listing = match acting.client.list(&dir).await {
            Ok(listing) => listing.entries,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(self.fail(acting, bucket, Missing::Bucket, error).await),
        };
        let mut kept: Vec<(String, Stat)> = listing
            .into_iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .filter_map(|entry| Some((entry.path.name()?.to_string(), entry)))
            .collect();
        kept.sort_by_key(|(id, stat)| std::cmp::Reverse(age(id, Some(stat))));
        Ok(kept)
    }

    /// With no object at `key`, makes the newest version kept the object
    /// again (one rename), unless it is a delete marker.
    async fn promote(&self, acting: &Acting, bucket: &str, key: &str, replacing: Option<u64>) -> S3Result<bool> {
        let kept = self.kept(acting, bucket, key).await?;
        let Some((_, newest)) = kept.first().filter(|(_, stat)| !is_marker(stat)) else {
            return Ok(false);
        };
        let path = object_path(bucket, key)?;
        // At the version listed; over the object (`replacing`) or where there is none.
        let client = acting.client.if_version(newest.version);
        match client.rename(&newest.path, &path, replacing.is_none()).await {
            Ok(_) => Ok(true),
            Err(error) => Err(self
                .commit_error(acting, bucket, key, WriteCondition::default(), error)
                .await),
        }
    }

    /// DeleteObject (and each key of DeleteObjects) of `key`, or of its
    /// version `version_id` (`bypass`: `x-amz-bypass-governance-retention`).
    pub(crate) async fn delete_one(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass: bool,
    ) -> S3Result<Deleted> {
        if let Some(id) = version_id {
            check_version_id(id)?;
        }
        let status = self.settings(acting, bucket).await?.versioning;
        if status.is_none() && version_id.is_none_or(|id| id == NULL) {
            // No versioning: the object (the `null` version, if named) goes.
            self.delete_plain(acting, bucket, key).await?;
            return Ok(Deleted::default());
        }
        let Ok(path) = object_path(bucket, key) else {
            self.bucket_stat(acting, bucket).await?;
            return Ok(Deleted::default());
        };
        let _turn = self.key_locks.lock(bucket, key).await;
        let current = self.layout_if_any(acting, bucket, &path).await?;
        match version_id {
            None => {
                let status = status.expect("checked above");
                if let Some(layout) = current.clone() {
                    let id = version_id_of(&layout.stat);
                    if status == Versioning::Enabled || id != NULL {
                        self.keep(acting, bucket, key, layout, &id).await?;
                    }
                }
                let marker = match status {
                    Versioning::Enabled => new_version_id(),
                    Versioning::Suspended => NULL.to_string(),
                };
                self.write_marker(acting, bucket, key, &marker).await?;
                if let Some(layout) = current {
                    self.remove_file(acting, bucket, &path, Some(layout.stat.version))
                        .await?;
                }
                Ok(Deleted {
                    delete_marker: true,
                    version_id: Some(marker),
                })
            }
            Some(id) => {
                if let Some(layout) = current.filter(|layout| version_id_of(&layout.stat) == id) {
                    lock::check_delete(&layout.stat, bypass)?;
                    // The object's own version: the newest kept takes its place.
                    let version = layout.stat.version;
                    if !self.promote(acting, bucket, key, Some(version)).await? {
                        self.remove_file(acting, bucket, &path, Some(version)).await?;
                    }
                    return Ok(Deleted {
                        delete_marker: false,
                        version_id: Some(id.to_string()),
                    });
                }
                let kept = versions_dir(bucket, key)?.join(id).expect("a valid name");
                let marker = match acting.client.stat(&kept).await {
                    Ok(stat) if stat.kind == EntryKind::File => {
                        lock::check_delete(&stat, bypass)?;
                        is_marker(&stat)
                    }
                    Ok(_) => false,
                    Err(error) if error.is_not_found() => {
                        self.bucket_stat(acting, bucket).await?;
                        return Ok(Deleted {
                            delete_marker: false,
                            version_id: Some(id.to_string()),
                        });
                    }
                    Err(error) => return Err(self.fail(acting, bucket, Missing::Key, error).await),
                };
                self.remove_file(acting, bucket, &kept, None).await?;
                if self.layout_if_any(acting, bucket, &path).await?.is_none() {
                    self.promote(acting, bucket, key, None).await?;
                }
                Ok(Deleted {
                    delete_marker: marker,
                    version_id: Some(id.to_string()),
                })
            }
        }
    }

    /// Writes a delete marker of `key` with version id `id`.
    async fn write_marker(&self, acting: &Acting, bucket: &str, key: &str, id: &str) -> S3Result<()> {
        let dir = self.make_versions_dir(acting, bucket, key).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let attributes: Attributes = [
            (DELETE_MARKER.to_string(), "true".to_string()),
            (VERSION_ID.to_string(), id.to_string()),
            (metadata::LAST_MODIFIED.to_string(), now.to_string()),
        ]
        .into_iter()
        .collect();
        let path = dir.join(id).expect("a valid name");
        match acting
            .client
            .write_inline(&path, Vec::new(), &attributes, false, Some(0o600))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(acting, bucket, Missing::Bucket, error).await),
        }
    }

    /// Removes the file at `path` (at `version`, if given); gone already is done.
    async fn remove_file(&self, acting: &Acting, bucket: &str, path: &DfsPath, version: Option<u64>) -> S3Result<()> {
        let client = match version {
            Some(version) => acting.client.if_version(version),
            None => acting.client.clone(),
        };
        match client.remove(path, false).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) if error.code() == Some(ErrorCode::PreconditionFailed) => Err(s3_error!(
                OperationAborted,
                "the object changed while it was deleted: try again"
            )),
            Err(error) => Err(self.fail(acting, bucket, Missing::Key, error).await),
        }
    }

    /// Whether `bucket` keeps any version (DeleteBucket refuses then).
    pub(crate) async fn keeps_versions(&self, acting: &Acting, bucket: &str) -> S3Result<bool> {
        Ok(!self.all_kept(acting, bucket, "").await?.is_empty())
    }

    /// Every version kept in `bucket` of a key starting with `prefix`: (key, id, stat).
    async fn all_kept(&self, acting: &Acting, bucket: &str, prefix: &str) -> S3Result<Vec<(String, String, Stat)>> {
        let root = bucket_versions(bucket)?.join(KEYS).expect("a valid name");
        let bounds = Bounds {
            skip_unreadable: false,
            ..Bounds::default()
        };
        let files = match keys_of(Walk::new(&acting.client, root, String::new(), bounds)).await {
            Ok(files) => files,
            // Another user's bucket: its versions are its owner's to see.
            Err(error) if error.code() == Some(ErrorCode::PermissionDenied) => return Ok(Vec::new()),
            Err(error) => return Err(self.fail(acting, bucket, Missing::Bucket, error).await),
        };
        Ok(files
            .into_iter()
            .filter_map(|(path, stat)| {
                let (relative, id) = path.rsplit_once('/')?;
                let key = key_of(relative);
                key.starts_with(prefix).then(|| (key, id.to_string(), stat))
            })
            .collect())
    }

    pub(super) async fn put_bucket_versioning_op(
        &self,
        request: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        self.owned_bucket(&acting, &input.bucket).await?;
        let status = match input.versioning_configuration.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => return Err(s3_error!(MalformedXML, "the versioning status is Enabled or Suspended")),
        };
        let mut settings = self.settings(&acting, &input.bucket).await?;
        if settings.object_lock.is_some() && status == Versioning::Suspended {
            return Err(s3_error!(
                InvalidBucketState,
                "versioning cannot be suspended in a bucket with object lock"
            ));
        }
        settings.versioning = Some(status);
        self.write_settings(&acting, &input.bucket, &settings).await?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn get_bucket_versioning_op(
        &self,
        request: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket;
        self.owned_bucket(&acting, &bucket).await?;
        let status = self
            .settings(&acting, &bucket)
            .await?
            .versioning
            .map(|status| match status {
                Versioning::Enabled => BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED),
                Versioning::Suspended => BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED),
            });
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(super) async fn list_object_versions_op(
        &self,
        request: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max = super::max_keys_of(input.max_keys)?;
        let bounds = Bounds {
            prefix: prefix.clone(),
            skip_unreadable: true,
            ..Bounds::default()
        };
        let current = match self.walk(&acting, &input.bucket, bounds).await? {
            None => Vec::new(),
            Some(walk) => match keys_of(walk).await {
                Ok(keys) => keys,
                Err(error) => return Err(self.fail(&acting, &input.bucket, Missing::Bucket, error).await),
            },
        };
        let mut entries: Vec<Entry> = current
            .into_iter()
            .map(|(key, stat)| Entry {
                age: u64::MAX,
                id: version_id_of(&stat),
                key,
                stat,
                latest: true,
            })
            .collect();
        let shown: std::collections::HashSet<(String, String)> =
            entries.iter().map(|e| (e.key.clone(), e.id.clone())).collect();
        let mut kept = self.all_kept(&acting, &input.bucket, &prefix).await?;
        kept.retain(|(key, id, _)| !shown.contains(&(key.clone(), id.clone())));
        entries.extend(kept.into_iter().map(|(key, id, stat)| Entry {
            age: age(&id, Some(&stat)),
            id,
            key,
            stat,
            latest: false,
        }));
        // Key order, each key's newest version first.
        entries.sort_by(|a, b| a.key.cmp(&b.key).then(b.age.cmp(&a.age)));
        // A key with no object: its newest version kept is the latest.
        for at in 0..entries.len() {
            if at == 0 || entries[at - 1].key != entries[at].key {
                entries[at].latest = true;
            }
        }
        let start = match (&input.key_marker, &input.version_id_marker) {
            (Some(key), Some(id)) if !key.is_empty() && !id.is_empty() => {
                let marker_age = entries
                    .iter()
                    .find(|e| &e.key == key && &e.id == id)
                    .map(|e| e.age)
                    .unwrap_or_else(|| age(id, None));
                entries
                    .iter()
                    .position(|e| e.key > *key || (e.key == *key && e.age < marker_age))
                    .unwrap_or(entries.len())
            }
            (Some(key), _) if !key.is_empty() => entries.iter().position(|e| e.key > *key).unwrap_or(entries.len()),
            _ => 0,
        };
        let (mut versions, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::<String>::new());
        let mut count = 0;
        let mut next = None;
        let mut at = start;
        while at < entries.len() {
            let entry = &entries[at];
            if let Some(common) = delimiter.as_deref().and_then(|d| {
                entry.key[prefix.len()..]
                    .find(d)
                    .map(|i| &entry.key[..prefix.len() + i + d.len()])
            }) {
                if prefixes.last().map(String::as_str) != Some(common) {
                    if count == max {
                        next = Some((entries[at - 1].key.clone(), entries[at - 1].id.clone()));
                        break;
                    }
                    prefixes.push(common.to_string());
                    count += 1;
                }
                at += 1;
                continue;
            }
            if count == max {
                next = (at > 0).then(|| (entries[at - 1].key.clone(), entries[at - 1].id.clone()));
                break;
            }
            count += 1;
            let key = Some(super::encode(entry.key.clone(), url));
            let last_modified = Some(timestamp(metadata::last_modified_ms(&entry.stat)));
            let owner = Some(super::owner_of(&entry.stat));
            if is_marker(&entry.stat) {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(entry.latest),
                    key,
                    last_modified,
                    owner,
                    version_id: Some(entry.id.clone()),
                });
            } else {
                versions.push(ObjectVersion {
                    key,
                    size: Some(entry.stat.size as i64),
                    last_modified,
                    e_tag: Some(metadata::etag_of(&entry.stat)),
                    owner,
                    is_latest: Some(entry.latest),
                    version_id: Some(entry.id.clone()),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    ..Default::default()
                });
            }
            at += 1;
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            key_marker: input.key_marker.map(|marker| super::encode(marker, url)),
            version_id_marker: input.version_id_marker,
            is_truncated: Some(next.is_some()),
            next_version_id_marker: next.as_ref().map(|(_, id)| id.clone()),
            next_key_marker: next.map(|(key, _)| super::encode(key, url)),
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            prefix: Some(super::encode(prefix, url)),
            max_keys: Some(max as i32),
            common_prefixes: (!prefixes.is_empty()).then(|| super::prefixes(prefixes, url)).flatten(),
            delimiter: delimiter.map(|d| super::encode(d, url)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    /// Removes a deleted bucket's settings and versions (with the bucket).
    pub(super) async fn remove_bucket_versions(&self, bucket: &str) {
        self.settings_cache.forget(bucket);
        let Ok(dir) = bucket_versions(bucket) else {
            return;
        };
        match self.gateway_client().remove(&dir, true).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => tracing::warn!(%bucket, %error, "removing a deleted bucket's versions"),
        }
    }
}

/// Every key a walk yields (it folds no directory: no common prefixes),
/// in S3's order.
async fn keys_of(mut walk: Walk<'_, dfs_client::Client>) -> Result<Vec<(String, Stat)>, dfs_client::Error> {
    let mut keys = Vec::new();
    while let Some(item) = walk.next().await? {
        if let Item::Key(key, stat) = item {
            keys.push((key, stat));
        }
    }
    Ok(keys)
}

/// One version in a ListObjectVersions.
struct Entry {
    key: String,
    id: String,
    /// Newest first within a key (the object's own version: [`u64::MAX`]).
    age: u64,
    stat: Stat,
    latest: bool,
}

fn no_such_version() -> S3Error {
    s3_error!(NoSuchVersion, "The specified version does not exist.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_sort_by_age_and_are_checked() {
        let first = new_version_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_version_id();
        assert!(age(&second, None) > age(&first, None));
        assert!(check_version_id(&first).is_ok());
        assert!(check_version_id(NULL).is_ok());
        for bad in ["", "..", "a/b", "NULL", &first.to_uppercase(), &format!("{first}0")] {
            assert!(check_version_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_cached_for_their_ttl_and_forgotten_when_this_gateway_changes_them() {
        let cache = SettingsCache::default();
        let enabled = Settings {
            versioning: Some(Versioning::Enabled),
            object_lock: None,
            cors: None,
        };
        let now = std::time::Instant::now();
        assert!(cache.get("b").is_none());
        cache.insert("b", enabled.clone(), now, cache.generation());
        assert_eq!(
            cache.get("b").and_then(|settings| settings.versioning),
            Some(Versioning::Enabled)
        );
        assert!(cache.get("other").is_none());
        // Read a TTL ago: read again.
        cache.insert("old", enabled.clone(), now - SETTINGS_TTL, cache.generation());
        assert!(cache.get("old").is_none());
        // A change through this gateway: read again at once.
        cache.forget("b");
        assert!(cache.get("b").is_none());
        // A read begun before a change is not kept: it may be from before it.
        let generation = cache.generation();
        cache.forget("c");
        cache.insert("b", enabled.clone(), now, generation);
        assert!(cache.get("b").is_none());
        // Bounded: beyond the most, the stale go first, then all.
        for i in 0..SETTINGS_CACHED + 10 {
            cache.insert(&format!("bucket-{i}"), Settings::default(), now, cache.generation());
        }
        assert!(cache.entries().len() <= SETTINGS_CACHED);
        assert!(cache.get(&format!("bucket-{}", SETTINGS_CACHED + 9)).is_some());
    }
}
