//! Object lock, on top of versions (`gateway/versions.rs`): a bucket's
//! lock configuration is in its settings (made at CreateBucket with
//! `x-amz-bucket-object-lock-enabled`, which enables versioning for good),
//! and a version's retention and legal hold are attributes of its file
//! ([`LOCK_MODE`], [`LOCK_UNTIL`], [`LEGAL_HOLD`]), set by the write that
//! makes it (its headers, else the bucket's default retention) or later by
//! PutObjectRetention and PutObjectLegalHold (a new DFS version of the same
//! bytes, see `Gateway::set_attributes`). The gateway enforces them: a
//! version under a legal hold, or retained until a later date (COMPLIANCE;
//! GOVERNANCE without `x-amz-bypass-governance-retention`), is not deleted
//! (`AccessDenied`), and a retention is shortened or its mode changed only
//! under GOVERNANCE with the bypass. Only the gateway: see docs/s3.md.

use super::Gateway;
use crate::sessions::Acting;
use dfs_proto::namespace::Stat;
use dfs_proto::Attributes;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The attribute of a version's retention mode (`GOVERNANCE` or `COMPLIANCE`).
pub(crate) const LOCK_MODE: &str = "s3-lock-mode";
/// The attribute of the end of a version's retention (ms since the epoch).
pub(crate) const LOCK_UNTIL: &str = "s3-lock-until";
/// The attribute of a version's legal hold (`ON`; absent: off).
pub(crate) const LEGAL_HOLD: &str = "s3-legal-hold";

const GOVERNANCE: &str = "GOVERNANCE";
const COMPLIANCE: &str = "COMPLIANCE";
const DAY_MS: u64 = 86_400_000;

/// A bucket's object lock configuration (it has one once enabled).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default_retention: Option<Retention>,
}

/// A default retention: a mode, and days or years.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retention {
    pub(crate) mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) years: Option<i32>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn ms_of(at: &Timestamp) -> u64 {
    let nanos = time::OffsetDateTime::from(at.clone()).unix_timestamp_nanos();
    (nanos / 1_000_000).max(0) as u64
}

fn timestamp_of(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A retention mode a request named; else `MalformedXML`.
fn checked_mode(mode: &str) -> S3Result<&'static str> {
    match mode {
        GOVERNANCE => Ok(GOVERNANCE),
        COMPLIANCE => Ok(COMPLIANCE),
        _ => Err(s3_error!(
            MalformedXML,
            "the retention mode is GOVERNANCE or COMPLIANCE"
        )),
    }
}

/// S3's `400 InvalidRetentionPeriod` (not among s3s's codes).
fn invalid_retention_period() -> s3s::S3Error {
    let code = s3s::S3ErrorCode::Custom("InvalidRetentionPeriod".into());
    let mut error = s3s::S3Error::with_message(code, "the default retention period must be a positive integer value");
    error.set_status_code(axum::http::StatusCode::BAD_REQUEST);
    error
}

fn checked_hold(status: &str) -> S3Result<bool> {
    match status {
        "ON" => Ok(true),
        "OFF" => Ok(false),
        _ => Err(s3_error!(MalformedXML, "the legal hold status is ON or OFF")),
    }
}

/// The lock attributes of a write's `x-amz-object-lock-*` headers (mode
/// and date together, else `InvalidArgument`).
pub(crate) fn header_attributes(
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    hold: Option<&ObjectLockLegalHoldStatus>,
) -> S3Result<Attributes> {
    let mut attributes = Attributes::new();
    match (mode, until) {
        (Some(mode), Some(until)) => {
            attributes.insert(LOCK_MODE.to_string(), checked_mode(mode.as_str())?.to_string());
            attributes.insert(LOCK_UNTIL.to_string(), ms_of(until).to_string());
        }
        (None, None) => {}
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-mode and x-amz-object-lock-retain-until-date go together"
            ))
        }
    }
    if let Some(hold) = hold {
        if checked_hold(hold.as_str())? {
            attributes.insert(LEGAL_HOLD.to_string(), "ON".to_string());
        }
    }
    Ok(attributes)
}

/// Gives a new version's `attributes` the bucket's default retention if
/// they name none; a lock in a bucket without one is `InvalidRequest`.
pub(crate) fn stamp(lock: Option<&LockSettings>, attributes: &mut Attributes) -> S3Result<()> {
    let Some(lock) = lock else {
        if attributes.contains_key(LOCK_MODE) || attributes.contains_key(LEGAL_HOLD) {
            return Err(s3_error!(InvalidRequest, "Bucket is missing Object Lock Configuration"));
        }
        return Ok(());
    };
    if let (Some(default), false) = (&lock.default_retention, attributes.contains_key(LOCK_MODE)) {
        let days = default.days.unwrap_or(0) as u64 + default.years.unwrap_or(0) as u64 * 365;
        attributes.insert(LOCK_MODE.to_string(), default.mode.clone());
        attributes.insert(LOCK_UNTIL.to_string(), (now_ms() + days * DAY_MS).to_string());
    }
    Ok(())
}

/// The retention of a version: (mode, until ms), if it has one.
fn retention_of(stat: &Stat) -> Option<(&str, u64)> {
    let mode = stat.attributes.get(LOCK_MODE)?;
    let until = stat.attributes.get(LOCK_UNTIL)?.parse().ok()?;
    Some((mode.as_str(), until))
}

fn held(stat: &Stat) -> bool {
    stat.attributes.get(LEGAL_HOLD).is_some_and(|hold| hold == "ON")
}

/// Whether the version `stat` names may be deleted (`bypass`:
/// `x-amz-bypass-governance-retention`); else `AccessDenied`.
pub(crate) fn check_delete(stat: &Stat, bypass: bool) -> S3Result<()> {
    if held(stat) {
        return Err(s3_error!(AccessDenied, "the object version is under a legal hold"));
    }
    match retention_of(stat) {
        Some((mode, until)) if until > now_ms() && (mode == COMPLIANCE || !bypass) => Err(s3_error!(
            AccessDenied,
            "the object version is retained ({mode}) until a later date"
        )),
        _ => Ok(()),
    }
}

/// The first layout page of the version a GetObjectRetention or
/// GetObjectLegalHold `$request` names (the object if none), read as its
/// caller, in a bucket with object lock.
macro_rules! requested_version {
    ($gateway:expr, $request:expr) => {{
        let acting = $gateway.acting(&$request).await?;
        let input = &$request.input;
        $gateway
            .locked_version(&acting, &input.bucket, &input.key, input.version_id.as_deref())
            .await?
    }};
}

/// The `x-amz-object-lock-*` fields of a GetObject or HeadObject answer.
macro_rules! answer_lock {
    ($output:ident, $stat:expr) => {
        let attributes = &$stat.attributes;
        $output.object_lock_mode = attributes
            .get(lock::LOCK_MODE)
            .map(|mode| ObjectLockMode::from(mode.clone()));
        $output.object_lock_retain_until_date = attributes
            .get(lock::LOCK_UNTIL)
            .and_then(|ms| ms.parse().ok())
            .map(lock::timestamp_at);
        $output.object_lock_legal_hold_status = attributes
            .get(lock::LEGAL_HOLD)
            .map(|hold| ObjectLockLegalHoldStatus::from(hold.clone()));
    };
}
pub(crate) use answer_lock;

/// The time `ms` milliseconds after the epoch.
pub(crate) fn timestamp_at(ms: u64) -> Timestamp {
    timestamp_of(ms)
}

impl Gateway {
    /// The lock configuration of `bucket`; `InvalidRequest` if it has none.
    async fn bucket_lock(&self, acting: &Acting, bucket: &str) -> S3Result<LockSettings> {
        self.bucket_stat(acting, bucket).await?;
        self.settings(acting, bucket)
            .await?
            .object_lock
            .ok_or_else(|| s3_error!(InvalidRequest, "Bucket is missing Object Lock Configuration"))
    }

    /// The first layout page of `key`'s version `version_id` (the object
    /// if none), in a bucket with object lock (else `InvalidRequest`).
    async fn locked_version(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<dfs_proto::namespace::FileLayout> {
        self.bucket_lock(acting, bucket).await?;
        self.object_version_layout(acting, bucket, key, version_id).await
    }

    /// Sets the attributes `change` makes of those of `key`'s version
    /// `version_id` (the object if none), in a bucket with object lock.
    async fn change_lock(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&Stat, &mut Attributes) -> S3Result<()>,
    ) -> S3Result<()> {
        let layout = self.locked_version(acting, bucket, key, version_id).await?;
        let mut attributes = layout.stat.attributes.clone();
        change(&layout.stat, &mut attributes)?;
        self.set_attributes(acting, bucket, layout, attributes).await?;
        Ok(())
    }

    pub(super) async fn put_object_lock_configuration_op(
        &self,
        request: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        self.owned_bucket(&acting, &input.bucket).await?;
        let mut settings = self.settings(&acting, &input.bucket).await?;
        if settings.object_lock.is_none() {
            return Err(s3_error!(
                InvalidBucketState,
                "Object Lock configuration cannot be enabled on existing buckets"
            ));
        }
        let configuration = input.object_lock_configuration.unwrap_or_default();
        if configuration.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
            return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
        }
        let default_retention = match configuration.rule.and_then(|rule| rule.default_retention) {
            None => None,
            Some(retention) => {
                let mode = checked_mode(retention.mode.as_ref().map_or("", |m| m.as_str()))?;
                match (retention.days, retention.years) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(s3_error!(MalformedXML, "a default retention has Days or Years"))
                    }
                    (Some(n), None) | (None, Some(n)) if n <= 0 => return Err(invalid_retention_period()),
                    (days, years) => Some(Retention {
                        mode: mode.to_string(),
                        days,
                        years,
                    }),
                }
            }
        };
        settings.object_lock = Some(LockSettings { default_retention });
        self.write_settings(&acting, &input.bucket, &settings).await?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(super) async fn get_object_lock_configuration_op(
        &self,
        request: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let acting = self.acting(&request).await?;
        let bucket = request.input.bucket;
        self.bucket_stat(&acting, &bucket).await?;
        let Some(lock) = self.settings(&acting, &bucket).await?.object_lock else {
            return Err(s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            ));
        };
        let rule = lock.default_retention.map(|retention| ObjectLockRule {
            default_retention: Some(DefaultRetention {
                days: retention.days,
                mode: Some(ObjectLockRetentionMode::from(retention.mode)),
                years: retention.years,
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
                rule,
            }),
        }))
    }

    pub(super) async fn put_object_retention_op(
        &self,
        request: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let retention = input.retention.unwrap_or_default();
        let mode = checked_mode(retention.mode.as_ref().map_or("", |m| m.as_str()))?;
        let until = retention
            .retain_until_date
            .as_ref()
            .map(ms_of)
            .ok_or_else(|| s3_error!(MalformedXML, "a retention has a RetainUntilDate"))?;
        self.change_lock(
            &acting,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            |stat, attributes| {
                if let Some((old_mode, old_until)) = retention_of(stat).filter(|(_, until)| *until > now_ms()) {
                    let weaker = until < old_until || mode != old_mode;
                    if weaker && (old_mode == COMPLIANCE || !bypass) {
                        return Err(s3_error!(
                            AccessDenied,
                            "the retention ({old_mode}) cannot be shortened or its mode changed"
                        ));
                    }
                }
                attributes.insert(LOCK_MODE.to_string(), mode.to_string());
                attributes.insert(LOCK_UNTIL.to_string(), until.to_string());
                Ok(())
            },
        )
        .await?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(super) async fn get_object_retention_op(
        &self,
        request: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let layout = requested_version!(self, request);
        let Some((mode, until)) = retention_of(&layout.stat) else {
            return Err(s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            ));
        };
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(mode.to_string())),
                retain_until_date: Some(timestamp_of(until)),
            }),
        }))
    }

    pub(super) async fn put_object_legal_hold_op(
        &self,
        request: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let status = input.legal_hold.and_then(|hold| hold.status);
        let on = checked_hold(status.as_ref().map_or("", |s| s.as_str()))?;
        self.change_lock(
            &acting,
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            |_, attributes| {
                match on {
                    true => attributes.insert(LEGAL_HOLD.to_string(), "ON".to_string()),
                    false => attributes.remove(LEGAL_HOLD),
                };
                Ok(())
            },
        )
        .await?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(super) async fn get_object_legal_hold_op(
        &self,
        request: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let layout = requested_version!(self, request);
        let status = if held(&layout.stat) { "ON" } else { "OFF" };
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(ObjectLockLegalHoldStatus::from(status.to_string())),
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_retention_applies_unless_the_write_names_one() {
        let lock = LockSettings {
            default_retention: Some(Retention {
                mode: GOVERNANCE.into(),
                days: Some(1),
                years: None,
            }),
        };
        let mut attributes = Attributes::new();
        stamp(Some(&lock), &mut attributes).unwrap();
        assert_eq!(attributes[LOCK_MODE], GOVERNANCE);
        let until: u64 = attributes[LOCK_UNTIL].parse().unwrap();
        assert!(until > now_ms() + DAY_MS - 60_000);
        let mut named: Attributes = [(LOCK_MODE.to_string(), COMPLIANCE.to_string())].into_iter().collect();
        named.insert(LOCK_UNTIL.into(), "5".into());
        stamp(Some(&lock), &mut named).unwrap();
        assert_eq!(named[LOCK_UNTIL], "5");
        assert_eq!(
            stamp(None, &mut named).unwrap_err().code(),
            &s3s::S3ErrorCode::InvalidRequest
        );
    }
}
