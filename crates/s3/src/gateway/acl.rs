//! ACLs, as far as DFS has them: its permissions are modes, not grants.
//! GetObjectAcl and GetBucketAcl name the owner with `FULL_CONTROL` (S3's
//! canned `private`); PutObjectAcl and PutBucketAcl take only the canned
//! `private`, which makes the object mode 0600 and the bucket 0700 (what a
//! bucket is made with). Any other ACL (public grants, grant headers, an
//! ACL document) is `NotImplemented`, and nothing changes.

use super::{owner_of, Gateway};
use crate::sessions::Acting;
use dfs_proto::namespace::Stat;
use dfs_proto::DfsPath;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// What an ACL operation answers.
type Answer<T> = S3Result<S3Response<T>>;

/// The mode `private` gives an object.
const PRIVATE_OBJECT: u32 = 0o600;

/// The mode `private` gives a bucket (the one it is made with).
pub(crate) const PRIVATE_BUCKET: u32 = 0o700;

/// The grants of an object or bucket owned by `stat`'s owner: its owner's full control.
fn owner_grants(stat: &Stat) -> Grants {
    let owner = owner_of(stat);
    vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

/// Whether a Put*Acl asks for exactly the canned `private`.
fn only_private(canned: Option<&str>, grants: &[Option<&String>], policy: bool) -> S3Result<()> {
    if canned == Some("private") && grants.iter().all(Option::is_none) && !policy {
        return Ok(());
    }
    Err(s3_error!(
        NotImplemented,
        "only the canned ACL private is served: DFS permissions are modes, not grants"
    ))
}

/// [`only_private`] with the canned ACL, the grant headers named and the ACL
/// document of a Put*Acl input.
macro_rules! check_private {
    ($input:expr, $($grant:ident),*) => {
        only_private(
            $input.acl.as_ref().map(|acl| acl.as_str()),
            &[$($input.$grant.as_ref()),*],
            $input.access_control_policy.is_some(),
        )
    };
}

impl Gateway {
    /// Sets `path` (a file, or the bucket `bucket`) to `mode`, as `acting`
    /// (the directory service lets only the owner).
    async fn chmod_for_acl(&self, acting: &Acting, bucket: &str, path: &DfsPath, mode: u32) -> S3Result<()> {
        match acting.client.chmod(path, mode).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(acting, bucket, super::Missing::Key, error).await),
        }
    }

    pub(super) async fn get_object_acl_op(&self, request: S3Request<GetObjectAclInput>) -> Answer<GetObjectAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let (_, stat) = self.object_stat(acting, &input.bucket, &input.key).await?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(owner_grants(&stat)),
            owner: Some(owner_of(&stat)),
            ..Default::default()
        }))
    }

    pub(super) async fn put_object_acl_op(&self, request: S3Request<PutObjectAclInput>) -> Answer<PutObjectAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        check_private!(input, grant_full_control, grant_read, grant_read_acp, grant_write_acp)?;
        let (path, _) = self.object_stat(acting, &input.bucket, &input.key).await?;
        self.chmod_for_acl(acting, &input.bucket, &path, PRIVATE_OBJECT).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    pub(super) async fn get_bucket_acl_op(&self, request: S3Request<GetBucketAclInput>) -> Answer<GetBucketAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let stat = self.bucket_stat(acting, &input.bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(owner_grants(&stat)),
            owner: Some(owner_of(&stat)),
        }))
    }

    pub(super) async fn put_bucket_acl_op(&self, request: S3Request<PutBucketAclInput>) -> Answer<PutBucketAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        check_private!(
            input,
            grant_full_control,
            grant_read,
            grant_read_acp,
            grant_write,
            grant_write_acp
        )?;
        let stat = self.bucket_stat(acting, &input.bucket).await?;
        if stat.owner_uid != acting.uid {
            return Err(s3_error!(
                AccessDenied,
                "bucket {} belongs to another user",
                input.bucket
            ));
        }
        self.chmod_for_acl(acting, &input.bucket, &stat.path, PRIVATE_BUCKET)
            .await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canned_private_acl_is_taken() {
        let grant = "id=someone".to_string();
        assert!(only_private(Some("private"), &[None, None], false).is_ok());
        for (canned, grants, policy) in [
            (Some("public-read"), [None, None], false),
            (None, [None, None], false),
            (Some("private"), [Some(&grant), None], false),
            (Some("private"), [None, None], true),
        ] {
            let error = only_private(canned, &grants, policy).unwrap_err();
            assert_eq!(error.code(), &s3s::S3ErrorCode::NotImplemented);
        }
    }
}
