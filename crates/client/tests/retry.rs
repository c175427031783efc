//! The client's retries against a scripted HTTP server on loopback: a
//! directory service that is down, then up; a mkdir whose answer is lost.

use dfs_client::{Client, ClientOptions, WaitNotice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted server does with one request.
enum Answer {
    /// Closes the connection once the request is read: the answer is lost.
    Drop,
    /// Answers with this status and JSON body.
    Json(u16, &'static str),
}

/// Serves `answers`, one per request in order, on `listener`; returns the
/// request lines it saw.
fn serve(listener: TcpListener, answers: Vec<Answer>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        for answer in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then the body its Content-Length announces.
            loop {
                let read = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|value| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || read == 0 {
                        break;
                    }
                }
            }
            let line = String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push(line);
            if let Answer::Json(status, body) = answer {
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            // Dropping the socket closes the connection.
        }
    });
    seen
}

const DIR_STAT: &str =
    r#"{"path":"/a","kind":"dir","owner_uid":1,"owner":"ann","mode":493,"size":0,"mtime_ms":1,"version":1}"#;
const FILE_STAT: &str =
    r#"{"path":"/a","kind":"file","owner_uid":1,"owner":"ann","mode":420,"size":3,"mtime_ms":1,"version":1}"#;
const EXISTS: &str = r#"{"code":"already_exists","message":"already exists: /a"}"#;

/// A loopback address with nothing listening (yet).
fn unused_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn client(url: &str, retry_for: Duration, told: &Arc<Mutex<Vec<String>>>) -> Client {
    let sink = Arc::clone(told);
    let options = ClientOptions {
        retry_for: Some(retry_for),
        wait_notice: Some(WaitNotice(Arc::new(move |line| {
            sink.lock().unwrap().push(line.to_string())
        }))),
        ..ClientOptions::default()
    };
    Client::with_options(url, &options).unwrap()
}

#[tokio::test]
async fn a_call_waits_for_a_directory_service_that_comes_up_and_says_so_once() {
    let address = unused_address();
    let told = Arc::new(Mutex::new(Vec::new()));
    let client = client(&format!("http://{address}"), Duration::from_secs(20), &told);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let listener = TcpListener::bind(address).await.unwrap();
        serve(listener, vec![Answer::Json(200, DIR_STAT)]);
    });
    let started = Instant::now();
    let stat = client.stat(&"/a".parse().unwrap()).await.unwrap();
    assert_eq!(stat.version, 1);
    assert!(started.elapsed() >= Duration::from_millis(700));
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with(&format!("cannot reach the directory service at http://{address}: "))
            && told[0].ends_with("; retrying for up to 20 s"),
        "{told:?}"
    );
}

#[tokio::test]
async fn with_no_deadline_a_call_fails_at_once() {
    let address = unused_address();
    let told = Arc::new(Mutex::new(Vec::new()));
    let client = client(&format!("http://{address}"), Duration::ZERO, &told);
    let error = client.stat(&"/a".parse().unwrap()).await.unwrap_err();
    assert!(
        matches!(error, dfs_client::Error::Unreachable { sent: false, .. }),
        "{error}"
    );
    assert!(told.lock().unwrap().is_empty());
}

/// A mkdir applied but whose answer is lost; sent again, it finds "exists",
/// and the stat of the path answers `stat`. Returns the mkdir's outcome and
/// the requests the server saw.
async fn mkdir_after_a_lost_answer(
    stat: &'static str,
) -> (dfs_client::Result<dfs_proto::namespace::Stat>, Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = serve(
        listener,
        vec![Answer::Drop, Answer::Json(409, EXISTS), Answer::Json(200, stat)],
    );
    let told = Arc::new(Mutex::new(Vec::new()));
    let outcome = client(&url, Duration::from_secs(5), &told)
        .mkdir(&"/a".parse().unwrap(), false, None)
        .await;
    let seen = seen.lock().unwrap().clone();
    (outcome, seen)
}

#[tokio::test]
async fn a_mkdir_whose_answer_was_lost_is_checked_not_failed_with_exists() {
    // The directory is there: the mkdir succeeded.
    let (outcome, seen) = mkdir_after_a_lost_answer(DIR_STAT).await;
    assert_eq!(outcome.unwrap().path.as_str(), "/a");
    assert_eq!(
        seen,
        [
            "POST /v1/mkdir HTTP/1.1",
            "POST /v1/mkdir HTTP/1.1",
            "GET /v1/stat?path=/a HTTP/1.1"
        ]
    );
    // A file is there: someone else's, so "exists" stands.
    let (outcome, _) = mkdir_after_a_lost_answer(FILE_STAT).await;
    let error = outcome.unwrap_err();
    assert_eq!(error.code(), Some(dfs_proto::ErrorCode::AlreadyExists), "{error}");
}
