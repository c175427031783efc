//! Taking a connection over as a raw TCP stream (HTTP/1.1 `Upgrade`), for
//! handlers that send bulk data with `sendfile(2)` rather than through
//! hyper's buffers.
//!
//! Only plain-TCP connections served by [`crate::serve`] offer it: there
//! the upgraded connection unwraps back into the [`TcpStream`]. Over TLS the
//! bytes must go through rustls, so [`TcpUpgrade`] is never extracted and
//! handlers answer as they would without it.

use axum::http::header::{CONNECTION, UPGRADE};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpStream;

/// Marks the requests of a plain-TCP connection served by [`crate::serve`],
/// with a token of the serving loop that a taken-over connection keeps (see
/// [`Live`]).
#[derive(Clone, Debug)]
pub(crate) struct PlainTcp {
    live: tokio::sync::watch::Receiver<()>,
}

impl PlainTcp {
    pub(crate) fn new(live: tokio::sync::watch::Receiver<()>) -> Self {
        PlainTcp { live }
    }
}

/// Held while a connection taken over with [`TcpUpgrade`] is in use: a
/// graceful shutdown of [`crate::serve`] waits until every one is dropped.
#[derive(Debug)]
pub struct Live {
    _token: tokio::sync::watch::Receiver<()>,
}

/// A request's offer to switch its connection to another protocol, taken
/// only on plain TCP (`Option<TcpUpgrade>` extracts `None` otherwise, and
/// when the request has no `Connection: upgrade` and `Upgrade` headers).
///
/// The handler checks [`TcpUpgrade::protocol`], answers `101 Switching
/// Protocols` (see [`TcpUpgrade::switching`]), and spawns a task that
/// awaits [`TcpUpgrade::into_stream`], which resolves once that answer went out.
#[derive(Debug)]
pub struct TcpUpgrade {
    protocol: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
    live: Live,
}

impl TcpUpgrade {
    /// The protocol the client asked for (the `Upgrade` header).
    pub fn protocol(&self) -> &HeaderValue {
        &self.protocol
    }

    /// The head of the `101 Switching Protocols` answer accepting it.
    pub fn switching(&self) -> axum::http::response::Builder {
        axum::http::Response::builder()
            .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, self.protocol.clone())
    }

    /// The connection's TCP stream, once the `101` answer went out, and the
    /// token to hold while using it (so that a graceful shutdown waits for
    /// it). Fails if the connection closed first, or if the client sent
    /// bytes after its request (it must wait for the answer).
    pub async fn into_stream(self) -> std::io::Result<(TcpStream, Live)> {
        let upgraded = self.on_upgrade.await.map_err(std::io::Error::other)?;
        let parts = upgraded
            .downcast::<crate::parse_errors::JsonParseErrors<TokioIo<TcpStream>>>()
            .map_err(|_| std::io::Error::other("the upgraded connection is not plain TCP"))?;
        if !parts.read_buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the client sent bytes before the upgrade was answered",
            ));
        }
        Ok((parts.io.into_inner().into_inner(), self.live))
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for TcpUpgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        let Some(plain) = parts.extensions.get::<PlainTcp>() else {
            return Ok(None);
        };
        let live = Live {
            _token: plain.live.clone(),
        };
        let asks = parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        let Some(protocol) = parts.headers.get(UPGRADE).filter(|_| asks).cloned() else {
            return Ok(None);
        };
        Ok(parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .map(|on_upgrade| TcpUpgrade {
                protocol,
                on_upgrade,
                live,
            }))
    }
}
