use crate::Service;
use dfs_proto::{ErrorBody, ErrorCode};

/// Everything that can go wrong in a client call; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service answered with an error.
    #[error("{}", .body.message)]
    Api { status: u16, body: ErrorBody },
    /// A service could not be reached at all.
    #[error("cannot reach the {service} at {url}: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    /// Local I/O (reading the file to upload, writing the download).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A chunk failed its checksum on every replica, or a server broke the protocol.
    #[error("{0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn unreachable(service: Service, url: &str, error: reqwest::Error) -> Self {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            reason = inner.to_string();
            source = inner.source();
        }
        Error::unresponsive(service, url, reason)
    }

    /// A server that took the connection but did not answer in time.
    pub(crate) fn unresponsive(service: Service, url: &str, reason: String) -> Self {
        // Show only scheme, host and port: the rest of the URL is noise here.
        let after_scheme = url.find("://").map_or(0, |at| at + 3);
        let base = match url[after_scheme..].find('/') {
            Some(at) => url[..after_scheme + at].to_string(),
            None => url.to_string(),
        };
        Error::Unreachable {
            service: service.describe(),
            url: base,
            reason,
        }
    }

    /// The error code, if a service answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }
}
