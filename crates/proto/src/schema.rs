//! OpenAPI schemas of the wire types whose serde form is not their Rust
//! shape (validated strings), written by hand (the `openapi` feature).

use crate::chunk::ChunkId;
use crate::DfsPath;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// A string schema with a pattern, a description and one example.
fn pattern_string(pattern: &str, max_length: usize, description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max_length))
        .description(Some(description))
        .examples([example])
        .into()
}

impl utoipa::PartialSchema for DfsPath {
    fn schema() -> RefOr<Schema> {
        pattern_string(
            "^/([^/\\u0000]+(/[^/\\u0000]+)*/?)?$",
            crate::path::MAX_PATH_LEN,
            "Absolute, '/'-separated; no empty, '.' or '..' name, no NUL; names at most 255 bytes, \
             4096 in all; one trailing '/' is dropped. A name being created may not hold control \
             characters (400).",
            "/home/ann/notes.txt",
        )
    }
}

impl utoipa::ToSchema for DfsPath {}

impl utoipa::PartialSchema for ChunkId {
    fn schema() -> RefOr<Schema> {
        pattern_string(
            "^[0-9a-f]{64}$",
            64,
            "The BLAKE3 hash of the chunk's content, 64 lowercase hex digits.",
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        )
    }
}

impl utoipa::ToSchema for ChunkId {}
