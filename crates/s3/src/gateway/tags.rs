//! Object tagging: PutObjectTagging, GetObjectTagging and
//! DeleteObjectTagging (the tags are attributes of the file's version, see
//! `crate::tagging`), and [`Gateway::set_attributes`], which changes the
//! attributes of an object without sending or copying its bytes.

use super::{readable_path, Gateway, Missing};
use crate::metadata;
use crate::sessions::Acting;
use crate::tagging::{self, Tags};
use base64::Engine;
use dfs_proto::namespace::{ComposeFiles, ComposeSource, FileLayout, Stat};
use dfs_proto::{Attributes, DfsPath, ErrorCode};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

impl Gateway {
    /// Makes `attributes` those of the object `layout` names (its first
    /// layout page, as read by the caller), keeping its bytes, its ETag and
    /// its LastModified: a new DFS version of the file, made only if the
    /// file is still at the version `layout` names (else `OperationAborted`,
    /// nothing changed). The file keeps its mode and owner.
    pub(crate) async fn set_attributes(
        &self,
        acting: &Acting,
        bucket: &str,
        layout: FileLayout,
        attributes: Attributes,
    ) -> S3Result<Stat> {
        let path = layout.stat.path.clone();
        self.rewrite(acting, bucket, layout, &path, attributes).await
    }

    /// Writes at `target` the bytes of the file `layout` names (at its
    /// version, else `OperationAborted`) with `attributes` (and the file's
    /// ETag and LastModified, if they do not name them) and its mode. A
    /// chunked file is composed of the file (one metadata transaction; no
    /// byte sent or copied), an inline (small) one written with its bytes.
    pub(crate) async fn rewrite(
        &self,
        acting: &Acting,
        bucket: &str,
        layout: FileLayout,
        target: &DfsPath,
        mut attributes: Attributes,
    ) -> S3Result<Stat> {
        let stat = &layout.stat;
        // A file written without an ETag of its own (`dfs put`) shows one
        // made from its version: kept as it was.
        attributes
            .entry(metadata::ETAG.to_string())
            .or_insert_with(|| metadata::etag_of(stat).value().to_string());
        attributes
            .entry(metadata::LAST_MODIFIED.to_string())
            .or_insert_with(|| stat.mtime_ms.to_string());
        let in_place = *target == stat.path;
        let client = match in_place {
            true => acting.client.if_version(stat.version),
            false => acting.client.clone(),
        };
        let mode = (!in_place).then_some(stat.mode & 0o7777);
        let written = if layout.inline || stat.size == 0 {
            let data = match &layout.data {
                Some(data) => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|error| s3_error!(InternalError, "an inline file's bytes: {error}"))?,
                None if stat.size == 0 => Vec::new(),
                None => match acting.client.read_inline(&stat.path).await {
                    Ok((version, data)) if version == stat.version => data.to_vec(),
                    Ok(_) => return Err(changed()),
                    Err(error) => return Err(self.fail(acting, bucket, Missing::Key, error).await),
                },
            };
            client.write_inline(target, data, &attributes, false, mode).await
        } else {
            let request = ComposeFiles {
                path: target.clone(),
                sources: vec![ComposeSource {
                    path: stat.path.clone(),
                    version: Some(stat.version),
                }],
                no_clobber: false,
                mode,
                attributes,
            };
            client.compose(&request).await
        };
        match written {
            Ok(stat) => Ok(stat),
            Err(error) if error.code() == Some(ErrorCode::PreconditionFailed) => Err(changed()),
            Err(error) => Err(self.fail(acting, bucket, Missing::Key, error).await),
        }
    }

    /// The first layout page of the object `bucket`/`key`, read as the
    /// caller (so only if it may read the object): `NoSuchKey` if none.
    pub(crate) async fn object_layout(&self, acting: &Acting, bucket: &str, key: &str) -> S3Result<FileLayout> {
        let path = readable_path(bucket, key)?;
        let layout = acting.client.first_layout_page(&path).await;
        self.found(acting, bucket, layout, |layout| &layout.stat).await
    }

    /// Replaces the tags of `bucket`/`key` with `tags`.
    async fn set_tags(
        &self,
        acting: &Acting,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &Tags,
    ) -> S3Result<()> {
        let layout = self.object_version_layout(acting, bucket, key, version_id).await?;
        let mut attributes = layout.stat.attributes.clone();
        tagging::set(&mut attributes, tags);
        self.set_attributes(acting, bucket, layout, attributes).await?;
        Ok(())
    }

    pub(super) async fn put_object_tagging_op(
        &self,
        request: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let tags = tagging::from_set(&input.tagging.tag_set)?;
        let version_id = input.version_id.as_deref();
        self.set_tags(&acting, &input.bucket, &input.key, version_id, &tags)
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: input.version_id,
        }))
    }

    pub(super) async fn get_object_tagging_op(
        &self,
        request: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let version_id = input.version_id.as_deref();
        let layout = self
            .object_version_layout(&acting, &input.bucket, &input.key, version_id)
            .await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tagging::tag_set(tagging::of(&layout.stat.attributes)),
            version_id: input.version_id,
        }))
    }

    pub(super) async fn delete_object_tagging_op(
        &self,
        request: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let acting = self.acting(&request).await?;
        let input = request.input;
        let version_id = input.version_id.as_deref();
        self.set_tags(&acting, &input.bucket, &input.key, version_id, &Tags::new())
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: input.version_id,
        }))
    }
}

fn changed() -> s3s::S3Error {
    s3_error!(
        OperationAborted,
        "the object changed while its attributes were set: try again"
    )
}
