//! Small files stored inline in the metadata (see `dfs_proto::namespace`).
//!
//! `put` reads at most [`Client::inline_limit`] + 1 bytes first: if the
//! source ended within the limit, the file is written with one request
//! (`PUT /v1/files`), durable when answered; otherwise the bytes already
//! read go first into the chunked upload. `get` of a file whose layout says
//! `inline` takes its bytes from the layout (`data`), or from an older
//! directory service with `GET /v1/files`, checking that they are the
//! version and size the layout named.

use crate::transfer::get::{PieceSink, WriteSink};
use crate::transfer::{GetOptions, GetSummary, PutOptions, PutSummary};
use crate::{Client, Error, Result, Service};
use base64::Engine as _;
use dfs_proto::namespace::{FileLayout, Stat, INLINE_MAX, VERSION_HEADER};
use dfs_proto::{Attributes, DfsPath, ATTRIBUTES_HEADER};
use reqwest::Method;
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The [`ATTRIBUTES_HEADER`] value for `attributes` (none if empty): a
/// JSON object in ASCII, every other character escaped (`\uXXXX`), so that
/// it passes any HTTP hop unchanged.
fn attributes_header(attributes: &Attributes) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let json = serde_json::to_string(attributes).expect("a map of strings serializes");
    let mut ascii = String::with_capacity(json.len());
    for character in json.chars() {
        if character.is_ascii() {
            ascii.push(character);
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Some(ascii)
}

/// What the start of a `put` did.
pub(crate) enum Head {
    /// The file was small and is written.
    Written(PutSummary),
    /// The file is larger than the inline limit (or inline writes are not
    /// possible): these bytes were read from the source and must go first.
    Read(Vec<u8>),
}

impl Client {
    /// The largest file this client writes inline (in a transaction too,
    /// where the write is staged): 0 with a directory service that does not
    /// offer it; files as large as a chunk are not inlined.
    pub async fn inline_limit(&self) -> u64 {
        match self.info().await {
            Ok(info) => info.inline_max.min(INLINE_MAX).min(info.chunk_size.saturating_sub(1)),
            Err(_) => 0,
        }
    }

    /// Writes `source` inline if it ends within [`Client::inline_limit`];
    /// otherwise returns what it read of it (at most limit + 1 bytes).
    pub(crate) async fn put_small(
        &self,
        path: &DfsPath,
        source: &mut (impl AsyncRead + Unpin),
        options: &PutOptions,
    ) -> Result<Head> {
        let limit = if options.chunked { 0 } else { self.inline_limit().await };
        if limit == 0 {
            return Ok(Head::Read(Vec::new()));
        }
        let mut head = Vec::new();
        (&mut *source).take(limit + 1).read_to_end(&mut head).await?;
        if head.len() as u64 > limit {
            return Ok(Head::Read(head));
        }
        let size = head.len() as u64;
        let attributes = options.attributes_at_end();
        let stat = self
            .write_inline_below(
                path,
                head,
                &attributes,
                options.no_clobber,
                options.mode,
                options.parents_below.as_ref(),
            )
            .await?;
        if let Some(progress) = &options.progress {
            progress(size);
        }
        Ok(Head::Written(PutSummary {
            stat: Some(stat),
            ..PutSummary::default()
        }))
    }

    /// `PUT /v1/files`: writes `data` (at most [`INLINE_MAX`] bytes) as the
    /// file at `path`, with `attributes`, in one request. Fails over to
    /// another directory service only if the connection failed (nothing was
    /// sent).
    pub async fn write_inline(
        &self,
        path: &DfsPath,
        data: Vec<u8>,
        attributes: &Attributes,
        no_clobber: bool,
        mode: Option<u32>,
    ) -> Result<Stat> {
        self.write_inline_below(path, data, attributes, no_clobber, mode, None)
            .await
    }

    /// [`Client::write_inline`], also making the missing directories
    /// between `parents_below` (an existing directory) and the file, in the
    /// same transaction (see `InlineWrite::parents_below`).
    pub async fn write_inline_below(
        &self,
        path: &DfsPath,
        data: Vec<u8>,
        attributes: &Attributes,
        no_clobber: bool,
        mode: Option<u32>,
        parents_below: Option<&DfsPath>,
    ) -> Result<Stat> {
        let mut query = format!("/v1/files?path={}", crate::query_escape(path.as_str()));
        if no_clobber {
            query.push_str("&no_clobber=true");
        }
        if let Some(mode) = mode {
            query.push_str(&format!("&mode={mode}"));
        }
        // Not in a transaction, which the directory service refuses it in.
        if let Some(base) = parents_below.filter(|_| self.scope.tx.is_none()) {
            query.push_str(&format!("&parents_below={}", crate::query_escape(base.as_str())));
        }
        let data = bytes::Bytes::from(data);
        let attributes = attributes_header(attributes);
        let send = || async {
            self.directory_with(Method::PUT, &query, |builder| {
                let builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone());
                match &attributes {
                    Some(text) => builder.header(ATTRIBUTES_HEADER, text.clone()),
                    None => builder,
                }
            })
            .await?
            .json::<Stat>()
            .await
            .map_err(|error| Error::Protocol(format!("reading the answer of PUT /v1/files: {error}")))
        };
        // A no-clobber write whose answer was lost, sent again, finds the
        // file: it is ours if it holds our bytes.
        let data = &data;
        self.change(send, |error| async move {
            if error.code() != Some(dfs_proto::ErrorCode::AlreadyExists) || self.scope.tx.is_some() {
                return Err(error);
            }
            match self.layout(path).await {
                Ok(layout) if layout.inline => {
                    let mut held = Vec::new();
                    match self
                        .get_file_with_summary(&layout, &mut held, &GetOptions::default())
                        .await
                    {
                        Ok((stat, _)) if held == **data => Ok(stat),
                        _ => Err(error),
                    }
                }
                _ => Err(error),
            }
        })
        .await
    }

    /// `GET /v1/files`: the bytes of an inline file and their version.
    pub async fn read_inline(&self, path: &DfsPath) -> Result<(u64, bytes::Bytes)> {
        let endpoint = format!("/v1/files?path={}", crate::query_escape(path.as_str()));
        let response = self.directory_send::<()>(Method::GET, &endpoint, None).await?;
        let version = response
            .headers()
            .get(VERSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| Error::Protocol(format!("GET {endpoint} answered without a valid {VERSION_HEADER}")))?;
        let data = response
            .bytes()
            .await
            .map_err(|error| Error::unreachable(Service::Directory, &endpoint, error))?;
        Ok((version, data))
    }

    /// Downloads the bytes within `range` of the file whose first layout
    /// page is `layout` (its chunks, and those of the pages after it, each
    /// asked for when the one before has been fetched, of the same
    /// version) into `sink`. A range that starts past the first page asks
    /// for the page holding its start; none is asked for past its end.
    async fn get_pages(
        &self,
        layout: &FileLayout,
        range: &Range<u64>,
        sink: &mut impl PieceSink,
        options: &GetOptions,
    ) -> Result<GetSummary> {
        let (path, version) = (&layout.stat.path, layout.stat.version);
        let next_page = |offset| async move {
            self.layout_page(path, offset, dfs_proto::namespace::UPLOAD_PAGE_CHUNKS, Some(version))
                .await
                .map_err(|error| changed_while_read(path, version, error))
        };
        let mut summary = GetSummary::default();
        // Every chunk is listed (and checked against the size) unless a page is skipped.
        let mut listed = Some(0);
        let mut page = std::borrow::Cow::Borrowed(layout);
        if page.next_offset.is_some_and(|next| next <= range.start) {
            page = std::borrow::Cow::Owned(next_page(range.start).await?);
            listed = None;
        }
        loop {
            if let Some(listed) = &mut listed {
                *listed += page.chunks.iter().map(|chunk| chunk.size).sum::<u64>();
            }
            let got = self
                .get_chunks(&page.chunks, Some((path, version)), range, sink, options)
                .await?;
            summary.chunks_cached += got.chunks_cached;
            summary.chunks_fetched += got.chunks_fetched;
            let Some(offset) = page.next_offset else {
                break;
            };
            if offset >= range.end {
                listed = None;
                break;
            }
            page = std::borrow::Cow::Owned(next_page(offset).await?);
        }
        if let Some(listed) = listed.filter(|listed| *listed != layout.stat.size) {
            return Err(Error::Protocol(format!(
                "the layout of {path} lists {listed} bytes of chunks for a file of {} bytes",
                layout.stat.size
            )));
        }
        Ok(summary)
    }

    /// Downloads the file `layout` describes into `sink`, whether its bytes
    /// are inline or in chunks; returns the stat of the version written
    /// (an inline file changed since its layout was read is read again, once).
    pub async fn get_file_with_summary(
        &self,
        layout: &FileLayout,
        sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<(Stat, GetSummary)> {
        self.get_file_range(layout, 0..u64::MAX, &mut WriteSink(sink), options)
            .await
    }

    /// Sends the bytes within `range` of the file `layout` describes (its
    /// first layout page, see [`Client::get_file_with_summary`]) on
    /// `pieces`, in order, as the pieces they arrived in (each chunk's hash
    /// checked first): no copy, and only the chunks the range covers are
    /// fetched. A range past the end of the file is cut at its end.
    pub async fn get_range_pieces(
        &self,
        layout: &FileLayout,
        range: Range<u64>,
        mut pieces: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    ) -> Result<Stat> {
        let (stat, _) = self
            .get_file_range(layout, range, &mut pieces, &GetOptions::default())
            .await?;
        Ok(stat)
    }

    /// [`Client::get_file_with_summary`] of the bytes within `range`.
    async fn get_file_range(
        &self,
        layout: &FileLayout,
        range: Range<u64>,
        sink: &mut impl PieceSink,
        options: &GetOptions,
    ) -> Result<(Stat, GetSummary)> {
        let mut layout = std::borrow::Cow::Borrowed(layout);
        for attempt in 0..2 {
            if !layout.inline {
                let summary = self.get_pages(&layout, &range, sink, options).await?;
                return Ok((layout.stat.clone(), summary));
            }
            let (version, data) = match &layout.data {
                // The bytes came with the layout (same transaction, same version).
                Some(encoded) => {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|error| {
                            Error::Protocol(format!(
                                "the inline bytes of {} are not base64: {error}",
                                layout.stat.path
                            ))
                        })?;
                    (layout.stat.version, bytes::Bytes::from(data))
                }
                None => self.read_inline(&layout.stat.path).await?,
            };
            if version == layout.stat.version {
                if data.len() as u64 != layout.stat.size {
                    return Err(Error::Protocol(format!(
                        "{} version {version}: got {} bytes, the file has {}",
                        layout.stat.path,
                        data.len(),
                        layout.stat.size
                    )));
                }
                let size = data.len() as u64;
                let (start, end) = (range.start.min(size), range.end.min(size));
                let piece = data.slice(start as usize..end.max(start) as usize);
                let written = piece.len() as u64;
                if !piece.is_empty() {
                    sink.put(piece).await?;
                }
                sink.finish().await?;
                if let Some(progress) = &options.progress {
                    progress(written);
                }
                return Ok((layout.stat.clone(), GetSummary::default()));
            }
            if attempt == 0 {
                // Changed between the layout and the read: start over.
                layout = std::borrow::Cow::Owned(self.first_layout_page(&layout.stat.path).await?);
            }
        }
        Err(Error::Protocol(format!(
            "{} keeps changing while it is read; try again",
            layout.stat.path
        )))
    }
}

/// `error`, or if it says the file is no longer `version`, that it changed during the read.
pub(crate) fn changed_while_read(path: &DfsPath, version: u64, error: Error) -> Error {
    if error.code() == Some(dfs_proto::ErrorCode::PreconditionFailed) {
        return Error::Protocol(format!(
            "{path} changed while it was read (it was version {version}); read it again"
        ));
    }
    error
}
