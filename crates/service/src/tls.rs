//! HTTPS: serving with rustls, and HTTP clients that trust the cluster's CA.
//!
//! A service process belongs to one cluster, so its TLS settings are
//! process-wide: `dfs serve` calls [`configure`] once at startup, before the
//! service is built. From then on [`serve`](crate::serve) accepts TLS
//! connections (if a certificate was given) and every client made by
//! [`http_client`] trusts the extra CA certificates (if any), besides the
//! usual web roots. Only the ring crypto provider is used.
//!
//! A plain `http://` request to an HTTPS port is answered, in plain HTTP,
//! with a one-line JSON error saying to use `https://`, instead of a
//! handshake failure the caller cannot explain.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The TLS settings of this process.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Serve HTTPS with this configuration (else plain HTTP).
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// CA certificates trusted by [`http_client`], besides the web roots.
    pub roots: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("https", &self.server.is_some())
            .field("extra_roots", &self.roots.len())
            .finish()
    }
}

static SETTINGS: OnceLock<TlsSettings> = OnceLock::new();

/// Sets the TLS settings of this process; only the first call counts.
pub fn configure(settings: TlsSettings) -> anyhow::Result<()> {
    SETTINGS
        .set(settings)
        .map_err(|_| anyhow::anyhow!("the TLS settings of this process are already set"))
}

/// The TLS settings of this process (none: plain HTTP, web roots only).
pub fn settings() -> &'static TlsSettings {
    SETTINGS.get_or_init(TlsSettings::default)
}

/// The server side of TLS from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), offering HTTP/1.1 by ALPN.
pub fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert_file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert_file.display());
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the TLS private key {}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "using the TLS certificate {} with the key {}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates (PEM, one or more) in `file`, for [`TlsSettings::roots`].
pub fn ca_certificates(file: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(file).with_context(|| format!("reading the CA certificate {}", file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("parsing the CA certificate {}", file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", file.display());
    Ok(certs)
}

/// A client builder for calls to other services: it trusts the CA
/// certificates of [`configure`], and drops pooled connections idle for
/// [`crate::serve::CLIENT_POOL_IDLE`] (below the servers' header read
/// timeout, so that it never reuses one just as the server closes it).
/// Every service builds its clients here.
pub fn http_client() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().pool_idle_timeout(crate::serve::CLIENT_POOL_IDLE);
    settings()
        .roots
        .iter()
        .fold(builder, |builder, root| builder.add_root_certificate(root.clone()))
}

/// The first byte of every TLS connection (a handshake record).
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain HTTP request to an HTTPS port gets back.
pub(crate) fn plain_http_refusal() -> Vec<u8> {
    let body = dfs_proto::ErrorBody::new(
        dfs_proto::ErrorCode::BadRequest,
        "this service speaks HTTPS: use an https:// URL (and `--ca-cert FILE` for a private CA)",
    );
    let body = serde_json::to_vec(&body).expect("an error body serialises");
    let mut response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}
