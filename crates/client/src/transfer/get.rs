//! The download pipeline: [`Client::get`] asks for the layout and fetches
//! chunks in parallel, each a task of its own, writing them out in order;
//! a capability refused on the way (it expired) makes it ask for the layout again.
//! The bytes go to a [`PieceSink`]: an `AsyncWrite`, or a channel of the
//! pieces as they arrived ([`Client::get_range_pieces`], no copy).

use super::{Progress, Spawned};
use crate::{Client, Error, Result};
use bytes::Bytes;
use dfs_proto::namespace::{ChunkLocation, Stat};
use dfs_proto::DfsPath;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::ops::Range;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Where a download's bytes go, in order, as the pieces they arrived in.
pub(crate) trait PieceSink {
    async fn put(&mut self, piece: Bytes) -> std::io::Result<()>;
    async fn finish(&mut self) -> std::io::Result<()>;
}

/// An `AsyncWrite` as a [`PieceSink`]: each piece written out (a copy).
pub(crate) struct WriteSink<W>(pub(crate) W);

impl<W: AsyncWrite + Unpin> PieceSink for WriteSink<W> {
    async fn put(&mut self, piece: Bytes) -> std::io::Result<()> {
        self.0.write_all(&piece).await
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

/// A channel as a [`PieceSink`]: each piece sent on as it is (no copy).
impl PieceSink for tokio::sync::mpsc::Sender<std::io::Result<Bytes>> {
    async fn put(&mut self, piece: Bytes) -> std::io::Result<()> {
        self.send(Ok(piece))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader of the download went away"))
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chunks of `chunks` (in file order) holding bytes of `range`.
pub(crate) fn covering<'c>(chunks: &'c [ChunkLocation], range: &Range<u64>) -> &'c [ChunkLocation] {
    let first = chunks.partition_point(|chunk| chunk.offset + chunk.size <= range.start);
    let end = chunks.partition_point(|chunk| chunk.offset < range.end);
    &chunks[first..end.max(first)]
}

/// `pieces` of the chunk at `offset`, cut to the bytes within `range` (no copy).
fn cut(pieces: Vec<Bytes>, mut offset: u64, range: &Range<u64>) -> impl Iterator<Item = Bytes> + '_ {
    pieces.into_iter().filter_map(move |piece| {
        let (start, end) = (offset, offset + piece.len() as u64);
        offset = end;
        let (from, to) = (start.max(range.start), end.min(range.end));
        (from < to).then(|| piece.slice((from - start) as usize..(to - start) as usize))
    })
}

#[derive(Clone, Default)]
pub struct GetOptions {
    pub progress: Option<Progress>,
}

/// Where the chunks of a `get` came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GetSummary {
    /// Chunks read from the disk cache.
    pub chunks_cached: u64,
    /// Chunks fetched from file servers.
    pub chunks_fetched: u64,
}

impl Client {
    /// Downloads `path` into `sink`, checking every chunk's hash.
    pub async fn get(&self, path: &DfsPath, sink: impl AsyncWrite + Unpin, options: &GetOptions) -> Result<Stat> {
        // The first page; the others are asked for as the read goes on.
        let layout = self.first_layout_page(path).await?;
        // Inline or chunked (see `crate::inline`).
        let (stat, _) = self.get_file_with_summary(&layout, sink, options).await?;
        Ok(stat)
    }

    /// Downloads the given chunks, in order, into `sink`.
    pub async fn get_layout(
        &self,
        chunks: &[ChunkLocation],
        sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<()> {
        self.get_layout_with_summary(chunks, sink, options).await?;
        Ok(())
    }

    /// [`Client::get_layout`], also reporting how many chunks came from the cache.
    pub async fn get_layout_with_summary(
        &self,
        chunks: &[ChunkLocation],
        sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<GetSummary> {
        let whole = 0..u64::MAX;
        self.get_chunks(chunks, None, &whole, &mut WriteSink(sink), options)
            .await
    }

    /// Downloads the bytes within `range` of `chunks` (those of them
    /// [`covering`] it) in order into `sink`. With `file` (the path and
    /// version they are the layout of), a chunk refused for its capability
    /// (401: read capabilities live two minutes, and end with the session)
    /// makes it ask for the layout again and go on with the new capabilities,
    /// as long as the file is still that version; else the refusal is the error.
    pub(crate) async fn get_chunks(
        &self,
        chunks: &[ChunkLocation],
        file: Option<(&DfsPath, u64)>,
        range: &Range<u64>,
        sink: &mut impl PieceSink,
        options: &GetOptions,
    ) -> Result<GetSummary> {
        let mut summary = GetSummary::default();
        let mut locations = std::borrow::Cow::Borrowed(covering(chunks, range));
        // Raised at each new layout; a refusal of an older one's capability
        // needs no new layout, only a new try.
        let mut generation = 0u32;
        let mut next = 0;
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < self.parallelism.max(1) && next < locations.len() {
                // Each chunk is its own task, so that several are
                // received and hashed on different threads at once.
                let (client, location, index) = (self.clone(), locations[next].clone(), next);
                let file = file.map(|(path, version)| (path.clone(), version));
                let spawned = Spawned(tokio::spawn(async move {
                    client.fetch_chunk_cached(&location, file.as_ref()).await
                }));
                in_flight.push_back(async move { (index, generation, spawned.await) });
                next += 1;
            }
            match in_flight.next().await {
                Some((index, fetched_with, data)) => {
                    let data = match (data, file) {
                        (Err(Error::Api { status: 401, .. }), Some((path, version))) => {
                            if fetched_with == generation {
                                locations = std::borrow::Cow::Owned(self.relocate(path, version, &locations).await?);
                                generation += 1;
                            }
                            // Once more, with the newest capability; a second refusal is final.
                            let file = file.map(|(path, version)| (path.clone(), version));
                            self.fetch_chunk_cached(&locations[index], file.as_ref()).await
                        }
                        (data, _) => data,
                    };
                    let (pieces, cached) = data?;
                    if cached {
                        summary.chunks_cached += 1;
                    } else {
                        summary.chunks_fetched += 1;
                    }
                    let mut written = 0;
                    for piece in cut(pieces, locations[index].offset, range) {
                        written += piece.len() as u64;
                        sink.put(piece).await?;
                    }
                    if let Some(progress) = &options.progress {
                        progress(written);
                    }
                }
                None => break,
            }
        }
        sink.finish().await?;
        Ok(summary)
    }

    /// The chunk locations of `path` anew (new capabilities), if it is still
    /// `version` with the same chunks as `old`.
    async fn relocate(&self, path: &DfsPath, version: u64, old: &[ChunkLocation]) -> Result<Vec<ChunkLocation>> {
        let offset = old.first().map_or(0, |chunk| chunk.offset);
        let layout = self
            .layout_page(path, offset, old.len().max(1), Some(version))
            .await
            .map_err(|error| crate::inline::changed_while_read(path, version, error))?;
        let same = !layout.inline
            && layout.stat.version == version
            && layout.chunks.len() == old.len()
            && layout.chunks.iter().zip(old).all(|(new, old)| new.id == old.id);
        if !same {
            return Err(Error::Protocol(format!(
                "{path} changed while it was read (version {version}, now {}); read it again",
                layout.stat.version
            )));
        }
        Ok(layout.chunks)
    }
}

#[cfg(test)]
mod tests;
