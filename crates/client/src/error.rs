use crate::Service;
use dfs_proto::{ErrorBody, ErrorCode};

/// Everything that can go wrong in a client call; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service answered with an error.
    #[error("{}", .body.message)]
    Api { status: u16, body: ErrorBody },
    /// A service could not be reached, or its answer did not come.
    #[error("cannot reach the {service} at {url}: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
        /// The request was sent (the connection was made), so it may have
        /// been applied even though its answer was lost.
        sent: bool,
        /// Trying again cannot help (the TLS handshake failed).
        permanent: bool,
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
        // A failed TLS handshake (an untrusted certificate) is an I/O error
        // of kind `InvalidData` somewhere in the chain.
        let mut permanent = false;
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            reason = inner.to_string();
            permanent |= inner
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
            source = inner.source();
        }
        let sent = !error.is_connect();
        Error::Unreachable {
            service: service.describe(),
            url: base_url(url),
            reason,
            sent,
            permanent: permanent || !sent && reason_is_tls(&error),
        }
    }

    /// A server that took the connection but did not answer in time.
    pub(crate) fn unresponsive(service: Service, url: &str, reason: String) -> Self {
        Error::Unreachable {
            service: service.describe(),
            url: base_url(url),
            reason,
            sent: true,
            permanent: false,
        }
    }

    /// Whether the request was sent and its answer lost: it may have been applied.
    pub(crate) fn answer_lost(&self) -> bool {
        matches!(self, Error::Unreachable { sent: true, .. })
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

/// Only scheme, host and port of `url`: the rest is noise in an error.
fn base_url(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    match url[after_scheme..].find('/') {
        Some(at) => url[..after_scheme + at].to_string(),
        None => url.to_string(),
    }
}

/// Whether a connection failed in its TLS handshake (by what it says, for
/// errors whose chain hides the I/O error).
fn reason_is_tls(error: &reqwest::Error) -> bool {
    let text = format!("{error:?}");
    text.contains("certificate") || text.contains("InvalidCertificate")
}
