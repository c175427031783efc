//! `serve_tls` in-process: HTTPS for clients that trust the CA, a clear
//! refusal for the others, request ids echoed, graceful shutdown.

use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// A CA and a certificate for 127.0.0.1 signed by it: (CA PEM, server config).
fn pki(dir: &std::path::Path) -> (Vec<u8>, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let config = dfs_service::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    (ca.pem().into_bytes(), config)
}

#[tokio::test]
async fn https_for_clients_that_trust_the_ca_and_clear_refusals_for_the_others() {
    let dir = tempfile_dir();
    let (ca_pem, config) = pki(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = dfs_service::finish_router(Router::new());
    let server = tokio::spawn(dfs_service::serve_tls(listener, router, config, async {
        let _ = stopped.await;
    }));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = trusting
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .header("x-request-id", "chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "chosen-1");
    assert_eq!(response.text().await.unwrap(), "ok");
    // Unknown routes are JSON errors over TLS too, with a fresh request id.
    let response = trusting
        .get(format!("https://127.0.0.1:{port}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"].len(), 16);

    // A client that does not trust the CA fails the handshake.
    let error = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap_err();
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        chain = format!("{chain}: {inner}");
        source = inner.source();
    }
    assert!(chain.contains("UnknownIssuer"), "{chain}");

    // Plain HTTP to the HTTPS port: a JSON error saying so.
    let response = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("speaks HTTPS"), "{body}");

    stop.send(()).unwrap();
    drop(trusting);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dfs-service-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
