use super::*;
use dfs_proto::ErrorBody;

fn api(code: ErrorCode) -> Error {
    Error::Api {
        status: 400,
        body: ErrorBody::new(code, "test"),
    }
}

#[test]
fn every_service_error_has_its_errno() {
    let cases = [
        (ErrorCode::NotFound, Errno::ENOENT),
        (ErrorCode::PermissionDenied, Errno::EACCES),
        (ErrorCode::Unauthenticated, Errno::EACCES),
        (ErrorCode::AlreadyExists, Errno::EEXIST),
        (ErrorCode::Conflict, Errno::ENOTEMPTY),
        (ErrorCode::Locked, Errno::EAGAIN),
        (ErrorCode::BadRequest, Errno::EINVAL),
        (ErrorCode::PayloadTooLarge, Errno::EFBIG),
        (ErrorCode::Unavailable, Errno::EIO),
        (ErrorCode::Internal, Errno::EIO),
    ];
    for (code, expected) in cases {
        assert_eq!(errno(&api(code), Errno::ENOTEMPTY), expected, "{code:?}");
    }
}

#[test]
fn an_unreachable_cluster_is_eio_and_logged() {
    let error = Error::Unreachable {
        service: "directory service",
        url: "http://127.0.0.1:1".into(),
        reason: "connection refused".into(),
        sent: false,
        permanent: false,
    };
    assert_eq!(errno(&error, Errno::ENOTEMPTY), Errno::EIO);
    assert!(worth_logging(&error));
    assert!(!worth_logging(&api(ErrorCode::NotFound)));
}
