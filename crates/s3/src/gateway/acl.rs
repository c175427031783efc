//! ACLs, as far as DFS has them: its permissions are modes, not grants, so
//! the canned ACLs are modes (for the signed users of the cluster: anonymous
//! requests are refused, so `public-read` and `authenticated-read` say the
//! same). An object is mode 0600 (`private`, or no ACL) or 0644
//! (`public-read`, `authenticated-read`, `public-read-write`: others may
//! read it); a bucket 0700 (`private`: no one else), 0755 (`public-read`,
//! `authenticated-read`: others may list it) or 0777 (`public-read-write`:
//! others may also add and delete objects). An object made readable by its
//! ACL opens the way to it: its bucket and the directories above it that
//! the caller owns get the search bit for others (0711 for a private
//! bucket: others pass through to what an object's mode lets them read,
//! but cannot list), which a later `private` bucket ACL keeps. So a bucket
//! with no readable object stays closed to everyone else, whatever the
//! modes of the files in it. The directories below a bucket (made for keys
//! with `/`) follow its mode.
//! GetObjectAcl and GetBucketAcl show the owner's `FULL_CONTROL` and what
//! the mode gives everyone else as grants of the AuthenticatedUsers group.
//! Grant headers, an ACL document and the other canned ACLs are
//! `NotImplemented`, and nothing changes.

use super::{owner_of, Gateway};
use crate::sessions::Acting;
use dfs_proto::namespace::{inherited_dir_mode, EntryKind, Stat};
use dfs_proto::DfsPath;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

/// What an ACL operation answers.
type Answer<T> = S3Result<S3Response<T>>;

/// A canned ACL, as the modes it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Canned {
    /// `private`: the owner only.
    Private,
    /// `public-read`, `authenticated-read`: every signed user may read.
    Read,
    /// `public-read-write`: every signed user may read, and write a bucket.
    ReadWrite,
}

/// S3's URI of every signed user.
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

impl Canned {
    /// The canned ACL named `name`; `NotImplemented` for one that is not a mode.
    pub(crate) fn parse(name: &str) -> S3Result<Canned> {
        match name {
            "private" => Ok(Canned::Private),
            "public-read" | "authenticated-read" => Ok(Canned::Read),
            "public-read-write" => Ok(Canned::ReadWrite),
            // S3's other canned ACLs: grants modes cannot say.
            "bucket-owner-read" | "bucket-owner-full-control" | "log-delivery-write" | "aws-exec-read" => Err(s3_error!(
                NotImplemented,
                "the canned ACL {name:?} is not served: DFS permissions are modes (private, public-read, authenticated-read, public-read-write)"
            )),
            other => Err(s3_error!(
                InvalidArgument,
                "{other:?} is not a canned ACL"
            )),
        }
    }

    /// The canned ACL of a request's `x-amz-acl`, if it has one.
    pub(crate) fn of(acl: Option<&str>) -> S3Result<Option<Canned>> {
        acl.map(Canned::parse).transpose()
    }

    /// The mode of an object (a file).
    pub(crate) fn object_mode(self) -> u32 {
        match self {
            Canned::Private => 0o600,
            Canned::Read | Canned::ReadWrite => 0o644,
        }
    }

    /// The mode of a bucket (its directory).
    pub(crate) fn bucket_mode(self) -> u32 {
        match self {
            Canned::Private => 0o700,
            Canned::Read => 0o755,
            Canned::ReadWrite => 0o777,
        }
    }
}

/// The mode of a new object with the canned ACL `acl` (none: `private`).
pub(crate) fn new_object_mode(acl: Option<Canned>) -> u32 {
    acl.unwrap_or(Canned::Private).object_mode()
}

/// The grants of an object or bucket owned by `stat`'s owner: its owner's
/// full control, and what its mode gives every other user.
fn grants(stat: &Stat) -> Grants {
    let owner = owner_of(stat);
    let grant = |grantee: Grantee, permission: &'static str| Grant {
        grantee: Some(grantee),
        permission: Some(Permission::from_static(permission)),
    };
    let everyone = || Grantee {
        type_: Type::from_static(Type::GROUP),
        uri: Some(AUTHENTICATED_USERS.to_string()),
        display_name: None,
        email_address: None,
        id: None,
    };
    let mut grants = vec![grant(
        Grantee {
            display_name: owner.display_name,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        },
        Permission::FULL_CONTROL,
    )];
    if stat.mode & 0o004 != 0 {
        grants.push(grant(everyone(), Permission::READ));
    }
    // Writing to a directory is adding and removing its entries; a file's
    // "write" S3 does not have (an object is replaced through its bucket).
    if stat.kind == EntryKind::Dir && stat.mode & 0o002 != 0 {
        grants.push(grant(everyone(), Permission::WRITE));
    }
    grants
}

/// Only the owner reads an ACL (S3's `READ_ACP`, which no canned ACL gives
/// anyone else).
fn only_owner(acting: &Acting, stat: &Stat) -> S3Result<()> {
    if stat.owner_uid == acting.uid {
        return Ok(());
    }
    Err(s3_error!(AccessDenied, "only the owner reads the ACL of {}", stat.path))
}

/// The canned ACL of a Put*Acl: grant headers and ACL documents are not served.
fn canned_only(canned: Option<&str>, grants: &[Option<&String>], policy: bool) -> S3Result<Canned> {
    match canned {
        Some(name) if grants.iter().all(Option::is_none) && !policy => Canned::parse(name),
        _ => Err(s3_error!(
            NotImplemented,
            "only canned ACLs are served (private, public-read, authenticated-read, public-read-write): DFS permissions are modes, not grants"
        )),
    }
}

/// [`canned_only`] with the canned ACL, the grant headers named and the ACL
/// document of a Put*Acl input.
macro_rules! canned_of {
    ($input:expr, $($grant:ident),*) => {
        canned_only(
            $input.acl.as_ref().map(|acl| acl.as_str()),
            &[$($input.$grant.as_ref()),*],
            $input.access_control_policy.is_some(),
        )
    };
}

impl Gateway {
    /// Sets `path` (a file, or the bucket `bucket`) to `mode`, as `acting`
    /// (the directory service lets only the owner).
    pub(super) async fn chmod_for_acl(&self, acting: &Acting, bucket: &str, path: &DfsPath, mode: u32) -> S3Result<()> {
        match acting.client.chmod(path, mode).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(acting, bucket, super::Missing::Key, error).await),
        }
    }

    /// Gives the directories below the bucket `root` that `acting` owns
    /// `mode` (what new ones get under the bucket's new ACL), so that the
    /// bucket's ACL holds for the keys below them too.
    async fn chmod_directories(&self, acting: &Acting, bucket: &str, root: &DfsPath, mode: u32) -> S3Result<()> {
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let listing = match acting.client.list(&dir).await {
                Ok(listing) => listing,
                Err(error) if error.is_not_found() => continue,
                Err(error) => return Err(self.fail(acting, bucket, super::Missing::Bucket, error).await),
            };
            for entry in listing.entries {
                if entry.kind != EntryKind::Dir || entry.owner_uid != acting.uid {
                    continue;
                }
                if entry.mode & 0o7777 != mode {
                    self.chmod_for_acl(acting, bucket, &entry.path, mode).await?;
                }
                pending.push(entry.path);
            }
        }
        Ok(())
    }

    /// Gives the object just written (`stat`) the mode of its canned ACL,
    /// if the request named one and the file (which kept its mode, if it
    /// existed) has another.
    pub(super) async fn apply_object_acl(
        &self,
        acting: &Acting,
        bucket: &str,
        stat: &Stat,
        acl: Option<Canned>,
    ) -> S3Result<()> {
        let Some(acl) = acl else { return Ok(()) };
        if stat.mode & 0o7777 != acl.object_mode() {
            self.chmod_for_acl(acting, bucket, &stat.path, acl.object_mode())
                .await?;
        }
        self.open_way_to(acting, bucket, &stat.path, acl).await
    }

    /// For an object whose ACL lets others read it (at `path` in `bucket`):
    /// gives its bucket, and each directory between, that `acting` owns the
    /// search bit for others (0o011), so that they can reach it.
    async fn open_way_to(&self, acting: &Acting, bucket: &str, path: &DfsPath, acl: Canned) -> S3Result<()> {
        if acl.object_mode() & 0o004 == 0 {
            return Ok(());
        }
        let root = crate::paths::bucket_path(bucket)?;
        let mut dir = path.parent();
        while let Some(current) = dir {
            if !current.as_str().starts_with(root.as_str()) {
                break;
            }
            let stat = match acting.client.stat(&current).await {
                Ok(stat) => stat,
                Err(error) => return Err(self.fail(acting, bucket, super::Missing::Bucket, error).await),
            };
            if stat.owner_uid == acting.uid && stat.mode & 0o011 != 0o011 {
                self.chmod_for_acl(acting, bucket, &current, (stat.mode & 0o7777) | 0o011)
                    .await?;
            }
            dir = current.parent();
        }
        Ok(())
    }

    pub(super) async fn get_object_acl_op(&self, request: S3Request<GetObjectAclInput>) -> Answer<GetObjectAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let (_, stat) = self.object_stat(acting, &input.bucket, &input.key).await?;
        only_owner(acting, &stat)?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(grants(&stat)),
            owner: Some(owner_of(&stat)),
            ..Default::default()
        }))
    }

    pub(super) async fn put_object_acl_op(&self, request: S3Request<PutObjectAclInput>) -> Answer<PutObjectAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let acl = canned_of!(input, grant_full_control, grant_read, grant_read_acp, grant_write_acp)?;
        let (path, _) = self.object_stat(acting, &input.bucket, &input.key).await?;
        self.chmod_for_acl(acting, &input.bucket, &path, acl.object_mode())
            .await?;
        self.open_way_to(acting, &input.bucket, &path, acl).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    pub(super) async fn get_bucket_acl_op(&self, request: S3Request<GetBucketAclInput>) -> Answer<GetBucketAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let stat = self.bucket_stat(acting, &input.bucket).await?;
        only_owner(acting, &stat)?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(grants(&stat)),
            owner: Some(owner_of(&stat)),
        }))
    }

    pub(super) async fn put_bucket_acl_op(&self, request: S3Request<PutBucketAclInput>) -> Answer<PutBucketAclOutput> {
        let (acting, input) = (&self.acting(&request).await?, request.input);
        let acl = canned_of!(
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
        // The way opened to readable objects stays (see the module docs).
        let mode = acl.bucket_mode() | (stat.mode & 0o011);
        self.chmod_for_acl(acting, &input.bucket, &stat.path, mode).await?;
        self.chmod_directories(acting, &input.bucket, &stat.path, inherited_dir_mode(mode))
            .await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_acls_are_modes_and_grants_are_not_taken() {
        let grant = "id=someone".to_string();
        assert_eq!(
            canned_only(Some("private"), &[None, None], false).unwrap(),
            Canned::Private
        );
        for (name, object, bucket) in [
            ("private", 0o600, 0o700),
            ("public-read", 0o644, 0o755),
            ("authenticated-read", 0o644, 0o755),
            ("public-read-write", 0o644, 0o777),
        ] {
            let acl = canned_only(Some(name), &[None, None], false).unwrap();
            assert_eq!((acl.object_mode(), acl.bucket_mode()), (object, bucket), "{name}");
        }
        for (canned, grants, policy) in [
            (Some("bucket-owner-full-control"), [None, None], false),
            (Some("log-delivery-write"), [None, None], false),
            (None, [None, None], false),
            (Some("private"), [Some(&grant), None], false),
            (Some("public-read"), [None, None], true),
        ] {
            let error = canned_only(canned, &grants, policy).unwrap_err();
            assert_eq!(error.code(), &s3s::S3ErrorCode::NotImplemented);
        }
        assert_eq!(new_object_mode(None), 0o600);
        // The directories made below a bucket: what its mode gives others.
        assert_eq!(inherited_dir_mode(0o711), 0o711);
        assert_eq!(inherited_dir_mode(0o755), 0o755);
        assert_eq!(inherited_dir_mode(0o700), 0o700);
    }
}
