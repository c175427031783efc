//! Forwarding a chunk from the primary to the other servers of its replica set.
//!
//! The primary opens one streaming `PUT` per worker as soon as the capability
//! checks out and feeds each the frames it receives, so replication costs
//! little more time than the slowest single copy. Each forward has a small
//! bounded channel: a slow worker slows the upload (back-pressure) instead
//! of making the primary buffer the chunk. A worker that takes no frame for
//! [`FORWARD_STALL`], or does not answer within [`FORWARD_ANSWER`] of the
//! end of the body (a paused or hung process), is given up on, so the
//! primary answers the client in bounded time. If the servers that did
//! store the chunk still make the capability's write quorum, the write is
//! acknowledged with a receipt naming only them (the directory service's
//! repair adds the missing copies); otherwise the primary's `unavailable`
//! answer lists the failed workers in `failed_servers` of its error body,
//! and the client asks for a placement without them.

use bytes::Bytes;
use dfs_proto::chunk::{ChunkId, ChunkStored, ServerRef, REPLICA_HEADER};
use dfs_proto::{ErrorBody, CAPABILITY_HEADER};
use dfs_service::ForwardRequestId;
use std::io;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames in flight per worker before the primary waits for it.
const FRAMES_IN_FLIGHT: usize = 8;

/// Longest a worker may leave a frame untaken before it is given up on; well
/// under the client's own stall timeout, so the primary keeps reading.
pub const FORWARD_STALL: Duration = Duration::from_secs(5);

/// Longest a worker may take to answer once it has the whole body.
pub const FORWARD_ANSWER: Duration = Duration::from_secs(8);

/// One worker being sent a chunk.
pub struct Forward {
    target: ServerRef,
    /// `None` once the worker stopped listening; its task then holds the reason.
    frames: Option<mpsc::Sender<Result<Bytes, io::Error>>>,
    /// The worker left a frame untaken for [`FORWARD_STALL`].
    stalled: bool,
    task: JoinHandle<Result<(), String>>,
}

/// Starts one forward per target; they send as frames are passed to [`Forward::send`].
pub fn start(http: &reqwest::Client, capability_token: &str, chunk: &ChunkId, targets: &[ServerRef]) -> Vec<Forward> {
    targets
        .iter()
        .map(|target| {
            let (sender, receiver) = mpsc::channel(FRAMES_IN_FLIGHT);
            // The forward carries the id of the client's request on.
            let task = tokio::spawn(dfs_service::request_id::inherit(forward(
                http.clone(),
                capability_token.to_string(),
                chunk.clone(),
                target.clone(),
                receiver,
            )));
            Forward {
                target: target.clone(),
                frames: Some(sender),
                stalled: false,
                task,
            }
        })
        .collect()
}

impl Forward {
    pub fn target(&self) -> &ServerRef {
        &self.target
    }

    /// Passes a frame on; a worker that already gave up is skipped, and
    /// [`Forward::finish`] reports why.
    pub async fn send(&mut self, frame: Bytes) {
        if let Some(frames) = &self.frames {
            match tokio::time::timeout(FORWARD_STALL, frames.send(Ok(frame))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => self.frames = None,
                Err(_) => {
                    self.frames = None;
                    self.stalled = true;
                    self.task.abort();
                }
            }
        }
    }

    /// Ends the body and waits for the worker's answer.
    pub async fn finish(mut self) -> Result<(), String> {
        self.frames = None;
        let describe = |what: String| format!("server {} at {}: {what}", self.target.id, self.target.url);
        if self.stalled {
            return Err(describe(format!("took no data for {} s", FORWARD_STALL.as_secs())));
        }
        match tokio::time::timeout(FORWARD_ANSWER, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(describe(format!("forwarding task failed: {error}"))),
            Err(_) => {
                self.task.abort();
                Err(describe(format!(
                    "no answer within {} s of the end of the chunk",
                    FORWARD_ANSWER.as_secs()
                )))
            }
        }
    }

    /// Cuts the upload short, so the worker sees an incomplete body and keeps nothing.
    pub fn abort(self) {
        self.task.abort();
    }
}

async fn forward(
    http: reqwest::Client,
    capability_token: String,
    chunk: ChunkId,
    target: ServerRef,
    frames: mpsc::Receiver<Result<Bytes, io::Error>>,
) -> Result<(), String> {
    let url = format!("{}/v1/chunks/{chunk}", target.url.trim_end_matches('/'));
    let body = futures_util::stream::unfold(frames, |mut frames| async move {
        frames.recv().await.map(|frame| (frame, frames))
    });
    let describe = |what: String| format!("server {} at {}: {what}", target.id, target.url);
    let response = http
        .put(&url)
        .header(CAPABILITY_HEADER, capability_token)
        .header(REPLICA_HEADER, "1")
        .forward_request_id()
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|error| describe(format!("sending the chunk failed: {error}")))?;
    let status = response.status();
    if !status.is_success() {
        let message = match response.json::<ErrorBody>().await {
            Ok(body) => body.message,
            Err(_) => "no error body".to_string(),
        };
        return Err(describe(format!("refused the chunk with {status}: {message}")));
    }
    let stored: ChunkStored = response
        .json()
        .await
        .map_err(|error| describe(format!("sent an unreadable answer: {error}")))?;
    // A worker answering under another id means the replica set points at the
    // wrong machine; trusting it would record a replica that does not exist.
    if stored.chunk != chunk || !stored.servers.contains(&target.id) {
        return Err(describe(format!(
            "answered for chunk {} on servers {:?}",
            stored.chunk, stored.servers
        )));
    }
    Ok(())
}
