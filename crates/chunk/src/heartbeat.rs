//! Telling the directory service that this server is alive, and how full.

use crate::server::FileServer;
use dfs_proto::chunk::Heartbeat;
use dfs_service::Verifier;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest wait between attempts while the directory service is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Capacity reported when the free space of the disk cannot be read.
const FALLBACK_CAPACITY: u64 = 1 << 40;

/// Sends a heartbeat at once, then every `interval`, until the task is aborted.
/// While the directory service fails, attempts back off and warnings thin out.
pub fn spawn(
    server: Arc<FileServer>,
    directory_url: String,
    interval: Duration,
    capacity_bytes: Option<u64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let verifier = Verifier::new(server.key.clone());
        let url = format!("{}/v1/servers/heartbeat", directory_url.trim_end_matches('/'));
        let mut failures = 0u32;
        loop {
            let heartbeat = heartbeat(&server, capacity_bytes).await;
            let result = server
                .http
                .post(&url)
                .bearer_auth(verifier.service_ticket("file-server"))
                .json(&heartbeat)
                .timeout(interval.max(Duration::from_secs(5)))
                .send()
                .await
                .and_then(|response| response.error_for_status());
            match result {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(%url, failures, "heartbeats reach the directory service again");
                    }
                    failures = 0;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    // Warn on the 1st, 2nd, 4th, 8th... failure in a row.
                    if failures.is_power_of_two() {
                        tracing::warn!(%error, %url, failures, "cannot send a heartbeat to the directory service");
                    }
                }
            }
            tokio::time::sleep(next_attempt_in(interval, failures)).await;
        }
    })
}

/// Failures in a row retried every 250 ms: about 10 s, longer than a
/// supervisor takes to restart a directory service, so that a restarted
/// one hears from us within a quarter of a second of answering.
const QUICK_RETRIES: u32 = 40;

/// When to try again after `failures` failures in a row. Retries come
/// quickly for [`QUICK_RETRIES`] (a directory service that restarts, or
/// starts after us, or a lost request, must not leave us dead for long);
/// a long outage backs off.
fn next_attempt_in(interval: Duration, failures: u32) -> Duration {
    match failures {
        0 => interval,
        1..=QUICK_RETRIES => interval.min(Duration::from_millis(250)),
        _ => interval
            .saturating_mul(1 << (failures - QUICK_RETRIES).min(4))
            .min(MAX_BACKOFF.max(interval)),
    }
}

async fn heartbeat(server: &FileServer, capacity_bytes: Option<u64>) -> Heartbeat {
    let stats = server.stats();
    let capacity_bytes = match capacity_bytes {
        Some(capacity) => capacity,
        None => {
            let data_dir = server.data_dir().to_path_buf();
            match tokio::task::spawn_blocking(move || available_bytes(&data_dir)).await {
                Ok(Ok(available)) => stats.stored_bytes.saturating_add(available),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "reading free disk space; reporting a default capacity");
                    FALLBACK_CAPACITY
                }
                Err(error) => {
                    tracing::debug!(%error, "reading free disk space; reporting a default capacity");
                    FALLBACK_CAPACITY
                }
            }
        }
    };
    Heartbeat {
        server: server.server_ref(),
        capacity_bytes,
        used_bytes: stats.stored_bytes,
        chunk_count: stats.chunk_count,
    }
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
// std has no portable free-space call, so this is the one place the crate
// talks to libc directly. The field types differ between platforms, hence
// the conversions that are no-ops on 64-bit Linux.
#[allow(unsafe_code, clippy::useless_conversion)]
fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and
    // `stat` points to writable memory of the type statvfs fills in.
    let result = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat` (which was zeroed anyway).
    let stat = unsafe { stat.assume_init() };
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}
