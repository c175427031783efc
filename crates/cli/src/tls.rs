//! TLS of the command line: the private CA of `dfs up --tls`, the TLS
//! settings of `dfs serve`, and the client every command uses.

use crate::args::Global;
use anyhow::Context;
use dfs_client::{Client, ClientOptions};
use std::path::{Path, PathBuf};

/// The files of a local cluster's private CA, under `DATA_DIR/tls`.
#[derive(Debug, Clone)]
pub struct LocalPki {
    /// The CA certificate clients trust (`--ca-cert`).
    pub ca_cert: PathBuf,
    /// The certificate of every local service (SANs 127.0.0.1, localhost, ::1) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LocalPki {
    pub fn in_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        LocalPki {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        }
    }

    fn ca_key(&self) -> PathBuf {
        self.ca_cert.with_file_name("ca-key.pem")
    }

    /// Makes the CA and the service certificate unless they exist (first
    /// start). Private keys are written mode 0600. Returns whether it made them.
    pub fn ensure(&self) -> anyhow::Result<bool> {
        if [&self.ca_cert, &self.cert, &self.key].iter().all(|file| file.exists()) {
            return Ok(false);
        }
        let dir = self.ca_cert.parent().expect("tls files are in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca_cert, ca_key, cert, key) = make_local_pki().context("making the local CA and certificate")?;
        // Every file is written anew: a leftover of an interrupted start is replaced.
        for file in [self.ca_key(), self.key.clone(), self.ca_cert.clone(), self.cert.clone()] {
            match std::fs::remove_file(&file) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("removing {}", file.display()))
                }
                _ => {}
            }
        }
        dfs_seal::write_secret_file(&self.ca_key(), ca_key.as_bytes())
            .with_context(|| format!("writing {}", self.ca_key().display()))?;
        dfs_seal::write_secret_file(&self.key, key.as_bytes())
            .with_context(|| format!("writing {}", self.key.display()))?;
        std::fs::write(&self.cert, cert).with_context(|| format!("writing {}", self.cert.display()))?;
        // The CA certificate last: its presence says the set is complete.
        std::fs::write(&self.ca_cert, ca_cert).with_context(|| format!("writing {}", self.ca_cert.display()))?;
        Ok(true)
    }
}

/// A CA (certificate, key) and a certificate for the local services signed by it (certificate, key), in PEM.
fn make_local_pki() -> Result<(String, String, String, String), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "DFS local cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let key = KeyPair::generate()?;
    // `new` turns address strings into IP address SANs.
    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ])?;
    params.distinguished_name.push(DnType::CommonName, "DFS local services");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), ca_key.serialize_pem(), cert.pem(), key.serialize_pem()))
}

/// The client of a command: the cluster URL, the CA of `--ca-cert`, one
/// request id for every request the command makes (`DFS_REQUEST_ID`, else
/// random), and `--retry-for`; the first wait for a service is said once on
/// stderr (unless `--quiet`).
pub fn client(global: &Global) -> anyhow::Result<Client> {
    let ca_certificates_pem = match &global.ca_cert {
        Some(file) => {
            Some(std::fs::read(file).with_context(|| format!("reading the CA certificate {}", file.display()))?)
        }
        None => None,
    };
    // `DFS_REQUEST_ID` lets a script choose the id to look for in the logs.
    let request_id = std::env::var("DFS_REQUEST_ID")
        .ok()
        .filter(|id| dfs_service::request_id::is_valid(id))
        .unwrap_or_else(dfs_service::request_id::new_id);
    let wait_notice = (!global.quiet)
        .then(|| dfs_client::WaitNotice(std::sync::Arc::new(|line: &str| eprintln!("dfs: waiting: {line}"))));
    let options = ClientOptions {
        ca_certificates_pem,
        request_id: Some(request_id),
        retry_for: Some(global.retry_for),
        wait_notice,
        no_local_reads: global.no_local_reads,
    };
    Ok(Client::with_options(&global.url, &options)?)
}

/// The process-wide TLS settings of `dfs serve`: a certificate to serve
/// HTTPS with, a CA to trust when calling other services.
pub fn configure_service(cert: Option<&Path>, key: Option<&Path>, ca_cert: Option<&Path>) -> anyhow::Result<()> {
    let server = match (cert, key) {
        (Some(cert), Some(key)) => Some(dfs_service::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let roots = match ca_cert {
        Some(file) => dfs_service::tls::ca_certificates(file)?,
        None => Vec::new(),
    };
    dfs_service::tls::configure(dfs_service::tls::TlsSettings { server, roots })
}

/// A hint added to errors that look like an untrusted certificate.
pub fn hint(message: &str) -> Option<&'static str> {
    let untrusted = ["UnknownIssuer", "invalid peer certificate", "certificate verify failed"];
    untrusted
        .iter()
        .any(|needle| message.contains(needle))
        .then_some("trust the cluster's CA with --ca-cert FILE or DFS_CA_CERT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_pki_is_made_once_with_private_keys_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = LocalPki::in_dir(dir.path());
        assert!(pki.ensure().unwrap());
        for key in [&pki.key, &pki.ca_key()] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!pki.ensure().unwrap(), "kept on a second start");
        assert_eq!(std::fs::read_to_string(&pki.ca_cert).unwrap(), ca);
        dfs_service::tls::server_config(&pki.cert, &pki.key).expect("the certificate and key load");
        dfs_service::tls::ca_certificates(&pki.ca_cert).expect("the CA loads");
    }
}
