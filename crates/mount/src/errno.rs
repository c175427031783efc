//! DFS errors as errno values: one mapping, used by every operation.

use dfs_client::Error;
use dfs_proto::ErrorCode;
use fuser::Errno;

/// The errno a failed client call stands for. `Conflict` is a non-empty
/// directory when removing or replacing one (the caller says so with
/// `conflict`); elsewhere it is a write that lost to another (`EIO`).
/// Anything unreachable or broken is `EIO`: the client has retried and
/// failed over already.
pub fn errno(error: &Error, conflict: Errno) -> Errno {
    match error.code() {
        Some(ErrorCode::NotFound) => Errno::ENOENT,
        Some(ErrorCode::PermissionDenied) | Some(ErrorCode::Unauthenticated) => Errno::EACCES,
        Some(ErrorCode::AlreadyExists) => Errno::EEXIST,
        Some(ErrorCode::Conflict) => conflict,
        Some(ErrorCode::Locked) | Some(ErrorCode::TooManyRequests) => Errno::EAGAIN,
        Some(ErrorCode::BadRequest) => Errno::EINVAL,
        Some(ErrorCode::PayloadTooLarge) => Errno::EFBIG,
        _ => Errno::EIO,
    }
}

/// Whether the error is worth a log line: the caller gets only an errno,
/// so a failure that is not the user's own doing (unreachable, internal,
/// expired session) must say why somewhere.
pub fn worth_logging(error: &Error) -> bool {
    !matches!(
        error.code(),
        Some(ErrorCode::NotFound)
            | Some(ErrorCode::PermissionDenied)
            | Some(ErrorCode::AlreadyExists)
            | Some(ErrorCode::Conflict)
            | Some(ErrorCode::BadRequest)
    )
}

#[cfg(test)]
mod tests;
