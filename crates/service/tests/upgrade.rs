//! `serve` over plain HTTP in-process: a handler takes a connection over as
//! raw TCP (`TcpUpgrade`), only when asked to, and a graceful shutdown waits
//! for the connection taken over to be let go.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dfs_service::TcpUpgrade;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Senders that let each taken-over connection go.
type Releases = Arc<Mutex<Vec<oneshot::Sender<()>>>>;

/// `GET /raw`: with an upgrade to `test`, switches and writes `hello` on the
/// raw stream, then holds it until released; otherwise answers `plain`.
fn router(releases: Releases) -> Router {
    let handler = move |upgrade: Option<TcpUpgrade>| {
        let releases = Arc::clone(&releases);
        async move {
            let Some(upgrade) = upgrade.filter(|upgrade| upgrade.protocol() == "test") else {
                return "plain".into_response();
            };
            let response: Response = upgrade.switching().body(axum::body::Body::empty()).unwrap();
            let (release, released) = oneshot::channel();
            releases.lock().unwrap().push(release);
            tokio::spawn(async move {
                let (mut stream, live) = upgrade.into_stream().await.unwrap();
                stream.write_all(b"hello").await.unwrap();
                let _ = released.await;
                drop((stream, live));
            });
            response
        }
    };
    dfs_service::finish_router(Router::new().route("/raw", get(handler)))
}

/// Everything the server sends on a new connection for `request` (until it
/// has sent `expect` bytes, or closed).
async fn exchange(port: u16, request: &str, expect: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while answer.len() < expect {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn a_connection_is_taken_over_only_when_asked_and_shutdown_waits_for_it() {
    let releases = Releases::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(dfs_service::serve(listener, router(Arc::clone(&releases)), async {
        let _ = stopped.await;
    }));

    // No upgrade asked for, or another protocol: an ordinary answer.
    let plain = "GET /raw HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let answer = exchange(port, plain, usize::MAX).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("plain"), "{answer}");
    let other = "GET /raw HTTP/1.1\r\nhost: x\r\nconnection: upgrade, close\r\nupgrade: other\r\n\r\n";
    assert!(exchange(port, other, usize::MAX).await.ends_with("plain"));
    // `Upgrade` without `Connection: upgrade` is no request to switch.
    let half = "GET /raw HTTP/1.1\r\nhost: x\r\nconnection: close\r\nupgrade: test\r\n\r\n";
    assert!(exchange(port, half, usize::MAX).await.ends_with("plain"));
    assert!(releases.lock().unwrap().is_empty());

    // Asked for: 101, then the handler's own bytes on the raw stream.
    let switch = "GET /raw HTTP/1.1\r\nhost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(switch.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.ends_with(b"hello") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("the raw bytes")
            .unwrap();
        assert_ne!(read, 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("upgrade: test\r\n"), "{answer}");
    assert_eq!(releases.lock().unwrap().len(), 1);

    // Shutdown waits while the connection taken over is held, and ends once it is let go.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!server.is_finished(), "shutdown did not wait for the raw connection");
    releases.lock().unwrap().pop().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown once the raw connection is let go")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}
