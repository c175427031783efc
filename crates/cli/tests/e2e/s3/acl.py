# Run by s3.rs with boto3 against a real cluster's S3 gateway: canned ACLs as
# DFS modes, seen by two users (ann owns the buckets, bob is any other signed
# user). Every step asserts; prints "ok" at the end. Env: S3_URL, ANN_ID,
# ANN_SECRET, BOB_ID, BOB_SECRET.
import os
import boto3
from botocore import UNSIGNED
from botocore.config import Config

from s3util import URL, client, error_code

READERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def grants(acl):
    return sorted((g["Grantee"].get("URI") or g["Grantee"]["DisplayName"], g["Permission"]) for g in acl["Grants"])


def read(who, bucket, key):
    return who.get_object(Bucket=bucket, Key=key)["Body"].read()


ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])
anonymous = boto3.client("s3", endpoint_url=URL, region_name="us-east-1", config=Config(signature_version=UNSIGNED))

# A private bucket with no readable object is closed to everyone else (s3.rs
# puts a 0644 file in it with `dfs put`, which bob cannot read).
ann.create_bucket(Bucket="ann-closed")
ann.put_object(Bucket="ann-closed", Key="private.txt", Body=b"closed")
assert grants(ann.get_bucket_acl(Bucket="ann-closed")) == [("ann", "FULL_CONTROL")]

# A private bucket (the default): others may read an object whose ACL lets them, nothing else.
ann.create_bucket(Bucket="ann-acl")
ann.put_object(Bucket="ann-acl", Key="private.txt", Body=b"mine")
ann.put_object(Bucket="ann-acl", Key="deep/er/public.txt", Body=b"everyone's", ACL="public-read")
ann.put_object(Bucket="ann-acl", Key="signed.txt", Body=b"signed users'", ACL="authenticated-read")
ann.copy_object(Bucket="ann-acl", Key="copy.txt", CopySource={"Bucket": "ann-acl", "Key": "private.txt"},
                ACL="public-read")
upload = ann.create_multipart_upload(Bucket="ann-acl", Key="multi.bin", ACL="public-read")["UploadId"]
part = ann.upload_part(Bucket="ann-acl", Key="multi.bin", UploadId=upload, PartNumber=1, Body=b"parts")
ann.complete_multipart_upload(Bucket="ann-acl", Key="multi.bin", UploadId=upload,
                              MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert read(bob, "ann-acl", "deep/er/public.txt") == b"everyone's"
assert read(bob, "ann-acl", "signed.txt") == b"signed users'"
assert read(bob, "ann-acl", "copy.txt") == b"mine"
assert read(bob, "ann-acl", "multi.bin") == b"parts"
assert error_code(lambda: bob.get_object(Bucket="ann-acl", Key="private.txt")) == "AccessDenied"
# HEAD is a read: nothing of an object the caller may not read (its ACL is its owner's to read).
assert bob.head_object(Bucket="ann-acl", Key="signed.txt")["ContentLength"] == 13
assert error_code(lambda: bob.head_object(Bucket="ann-acl", Key="private.txt")) == "403"
assert error_code(lambda: bob.get_object_acl(Bucket="ann-acl", Key="signed.txt")) == "AccessDenied"
assert error_code(lambda: bob.list_objects_v2(Bucket="ann-acl")) == "AccessDenied"
assert error_code(lambda: bob.put_object(Bucket="ann-acl", Key="deep/er/public.txt", Body=b"x")) == "AccessDenied"
assert error_code(lambda: bob.put_object(Bucket="ann-acl", Key="new.txt", Body=b"x")) == "AccessDenied"
assert error_code(lambda: bob.delete_object(Bucket="ann-acl", Key="copy.txt")) == "AccessDenied"
assert read(ann, "ann-acl", "deep/er/public.txt") == b"everyone's"
# Anonymous requests stay refused, whatever the ACL.
assert error_code(lambda: anonymous.get_object(Bucket="ann-acl", Key="deep/er/public.txt")) == "AccessDenied"
# The ACLs shown are what the modes give.
assert grants(ann.get_object_acl(Bucket="ann-acl", Key="deep/er/public.txt")) == \
    [("ann", "FULL_CONTROL"), (READERS, "READ")]
assert grants(ann.get_object_acl(Bucket="ann-acl", Key="private.txt")) == [("ann", "FULL_CONTROL")]
assert grants(ann.get_bucket_acl(Bucket="ann-acl")) == [("ann", "FULL_CONTROL")]
# Overwritten without an ACL, an object keeps its mode; with one, it takes the ACL's.
ann.put_object(Bucket="ann-acl", Key="copy.txt", Body=b"again")
assert read(bob, "ann-acl", "copy.txt") == b"again"
ann.put_object(Bucket="ann-acl", Key="copy.txt", Body=b"hidden", ACL="private")
assert error_code(lambda: bob.get_object(Bucket="ann-acl", Key="copy.txt")) == "AccessDenied"
ann.put_object_acl(Bucket="ann-acl", Key="signed.txt", ACL="private")
assert error_code(lambda: bob.get_object(Bucket="ann-acl", Key="signed.txt")) == "AccessDenied"
assert error_code(lambda: bob.put_object_acl(Bucket="ann-acl", Key="deep/er/public.txt", ACL="private")) == "AccessDenied"

# A public-read bucket: others list it too (and read what objects let them), but do not write.
ann.put_bucket_acl(Bucket="ann-acl", ACL="public-read")
assert grants(ann.get_bucket_acl(Bucket="ann-acl")) == [("ann", "FULL_CONTROL"), (READERS, "READ")]
listed = [o["Key"] for o in bob.list_objects_v2(Bucket="ann-acl")["Contents"]]
assert listed == ["copy.txt", "deep/er/public.txt", "multi.bin", "private.txt", "signed.txt"], listed
bob.head_bucket(Bucket="ann-acl")
assert error_code(lambda: bob.get_object(Bucket="ann-acl", Key="private.txt")) == "AccessDenied"
assert error_code(lambda: bob.put_object(Bucket="ann-acl", Key="new.txt", Body=b"x")) == "AccessDenied"
ann.put_bucket_acl(Bucket="ann-acl", ACL="private")
assert error_code(lambda: bob.list_objects_v2(Bucket="ann-acl")) == "AccessDenied"
assert read(bob, "ann-acl", "deep/er/public.txt") == b"everyone's"

# A public-read-write bucket (at creation): others add and delete objects, private to them by default.
ann.create_bucket(Bucket="ann-drop", ACL="public-read-write")
assert grants(ann.get_bucket_acl(Bucket="ann-drop")) == \
    [("ann", "FULL_CONTROL"), (READERS, "READ"), (READERS, "WRITE")]
bob.put_object(Bucket="ann-drop", Key="from-bob/secret.txt", Body=b"bob's")
bob.put_object(Bucket="ann-drop", Key="from-bob/shared.txt", Body=b"for ann", ACL="public-read")
assert read(ann, "ann-drop", "from-bob/shared.txt") == b"for ann"
assert error_code(lambda: ann.get_object(Bucket="ann-drop", Key="from-bob/secret.txt")) == "AccessDenied"
listed = [o["Key"] for o in ann.list_objects_v2(Bucket="ann-drop")["Contents"]]
assert listed == ["from-bob/secret.txt", "from-bob/shared.txt"], listed
bob.delete_object(Bucket="ann-drop", Key="from-bob/secret.txt")

# What is not a mode is refused, and nothing changes.
assert error_code(lambda: ann.put_object(Bucket="ann-acl", Key="owner.txt", Body=b"x",
                                         ACL="bucket-owner-full-control")) == "NotImplemented"
assert error_code(lambda: ann.head_object(Bucket="ann-acl", Key="owner.txt")) == "404"
assert error_code(lambda: ann.create_bucket(Bucket="ann-logs", ACL="log-delivery-write")) == "NotImplemented"
# A name that is no canned ACL at all: 400 InvalidArgument, no bucket made.
assert error_code(lambda: ann.create_bucket(Bucket="ann-bad-acl", ACL="public-ready")) == "InvalidArgument"
assert error_code(lambda: ann.head_bucket(Bucket="ann-bad-acl")) == "404"
assert error_code(lambda: ann.head_bucket(Bucket="ann-logs")) == "404"
assert error_code(lambda: ann.put_bucket_acl(Bucket="ann-acl", GrantRead="id=%s" % "1")) == "NotImplemented"
assert grants(ann.get_bucket_acl(Bucket="ann-acl")) == [("ann", "FULL_CONTROL")]
print("ok")
