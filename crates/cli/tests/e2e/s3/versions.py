# Run by s3.rs with boto3 against a real cluster's S3 gateway: object versions
# (PutBucketVersioning Enabled and Suspended, version ids on PUT, COPY and
# CompleteMultipartUpload, GET/HEAD/DELETE ?versionId, delete markers,
# ListObjectVersions in pages, the null version), who may read old versions,
# and bad input. Every step asserts; prints "ok" at the end. Env: S3_URL,
# ANN_ID, ANN_SECRET, BOB_ID, BOB_SECRET.
import base64
import hashlib
import os

from s3util import client, error_code

ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])
B = "ann-v"


def body(key, version=None, who=ann):
    extra = {"VersionId": version} if version else {}
    return who.get_object(Bucket=B, Key=key, **extra)["Body"].read()


def listing(**args):
    """Every version and delete marker, in pages of `MaxKeys`: [(key, id, latest, marker)]."""
    out, markers = [], {}
    while True:
        page = ann.list_object_versions(Bucket=B, **args)
        for v in page.get("Versions", []):
            out.append((v["Key"], v["VersionId"], v["IsLatest"], False))
        for m in page.get("DeleteMarkers", []):
            out.append((m["Key"], m["VersionId"], m["IsLatest"], True))
        if not page["IsTruncated"]:
            return out
        args["KeyMarker"], args["VersionIdMarker"] = page["NextKeyMarker"], page["NextVersionIdMarker"]


ann.create_bucket(Bucket=B)
assert "Status" not in ann.get_bucket_versioning(Bucket=B)
ann.put_object(Bucket=B, Key="k", Body=b"v0", ACL="public-read")
# Bad input: a status that is neither, a bucket of another user.
bad = {"Status": "Sometimes"}
assert error_code(lambda: ann.put_bucket_versioning(Bucket=B, VersioningConfiguration=bad)) == "MalformedXML"
assert "Status" not in ann.get_bucket_versioning(Bucket=B)
enabled = {"Status": "Enabled"}
assert error_code(lambda: bob.put_bucket_versioning(Bucket=B, VersioningConfiguration=enabled)) == "AccessDenied"
ann.put_bucket_versioning(Bucket=B, VersioningConfiguration=enabled)
assert ann.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"

# Each write is a version; the object written before is `null`.
v1 = ann.put_object(Bucket=B, Key="k", Body=b"v1", ACL="public-read")["VersionId"]
v2 = ann.put_object(Bucket=B, Key="k", Body=b"v2", ACL="public-read", Tagging="n=2")["VersionId"]
assert len({v1, v2, "null"}) == 3
got = ann.get_object(Bucket=B, Key="k")
assert got["Body"].read() == b"v2" and got["VersionId"] == v2
assert [body("k", v) for v in [v2, v1, "null"]] == [b"v2", b"v1", b"v0"]
assert ann.head_object(Bucket=B, Key="k", VersionId=v1)["ContentLength"] == 2
assert listing() == [("k", v2, True, False), ("k", v1, False, False), ("k", "null", False, False)]
# An old version keeps its tags and ETag; they can be set on it.
assert ann.get_object_tagging(Bucket=B, Key="k", VersionId=v2)["TagSet"] == [{"Key": "n", "Value": "2"}]
ann.put_object_tagging(Bucket=B, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "n", "Value": "1"}]})
assert ann.get_object_tagging(Bucket=B, Key="k", VersionId=v1)["TagSet"] == [{"Key": "n", "Value": "1"}]
assert body("k", v1) == b"v1"

# Another user reads the object its ACL opens, never an old version.
assert body("k", who=bob) == b"v2"
assert error_code(lambda: body("k", v1, who=bob)) == "AccessDenied"

# Bad version ids: malformed is InvalidArgument, unknown NoSuchVersion.
assert error_code(lambda: body("k", "../../x")) == "InvalidArgument"
assert error_code(lambda: body("k", "0" * 24)) == "NoSuchVersion"
assert error_code(lambda: ann.delete_object(Bucket=B, Key="k", VersionId="bad/id")) == "InvalidArgument"

# A copy from a version.
copied = ann.copy_object(Bucket=B, Key="c", CopySource={"Bucket": B, "Key": "k", "VersionId": v1})
assert copied["CopySourceVersionId"] == v1 and body("c") == b"v1"

# DeleteObject writes a delete marker; deleting the marker brings the object back.
gone = ann.delete_object(Bucket=B, Key="k")
assert gone["DeleteMarker"] and gone["VersionId"] not in (v1, v2)
assert error_code(lambda: body("k")) == "NoSuchKey"
assert [v for v in listing(Prefix="k") if v[3]] == [("k", gone["VersionId"], True, True)]
assert not any(v[2] for v in listing(Prefix="k") if not v[3])
assert error_code(lambda: body("k", gone["VersionId"])) == "MethodNotAllowed"
ann.delete_object(Bucket=B, Key="k", VersionId=gone["VersionId"])
assert body("k") == b"v2"
# Deleting the object's own version: the one before takes its place.
ann.delete_object(Bucket=B, Key="k", VersionId=v2)
got = ann.get_object(Bucket=B, Key="k")
assert got["Body"].read() == b"v1" and got["VersionId"] == v1
assert [v[1] for v in listing(Prefix="k")] == [v1, "null"]
# A write refused after the object was kept (a wrong Content-MD5 fails the
# upload: the state a crash between the two steps leaves, a copy of the
# object in the tree): nothing lost, the object listed once.
wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
assert error_code(lambda: ann.put_object(Bucket=B, Key="k", Body=b"zz", ContentMD5=wrong_md5)) == "BadDigest"
assert [v[1] for v in listing(Prefix="k")] == [v1, "null"] and body("k") == b"v1"

# A multipart upload's object is a version too.
upload = ann.create_multipart_upload(Bucket=B, Key="m")["UploadId"]
part = ann.upload_part(Bucket=B, Key="m", UploadId=upload, PartNumber=1, Body=b"parts")
done = ann.complete_multipart_upload(Bucket=B, Key="m", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert done["VersionId"] and body("m", done["VersionId"]) == b"parts"

# Concurrent writes of a key each keep the version before them.
import concurrent.futures
with concurrent.futures.ThreadPoolExecutor(5) as pool:
    ids = list(pool.map(lambda i: ann.put_object(Bucket=B, Key="busy", Body=b"%d" % i)["VersionId"], range(5)))
assert sorted(v[1] for v in listing(Prefix="busy")) == sorted(ids)
for version in ids:
    ann.delete_object(Bucket=B, Key="busy", VersionId=version)

# Pages: every version once, in order, whatever the page size.
for i in range(3):
    ann.put_object(Bucket=B, Key="p/%d" % i, Body=b"a")
    ann.put_object(Bucket=B, Key="p/%d" % i, Body=b"b")
whole = listing()
assert len(whole) == len(set(whole)) == 2 + 1 + 1 + 6, whole
for size in [1, 2, 3, 5]:
    assert listing(MaxKeys=size) == whole, size
prefixes = ann.list_object_versions(Bucket=B, Delimiter="/")
assert [p["Prefix"] for p in prefixes["CommonPrefixes"]] == ["p/"]

# Suspended: a write is the `null` version (replacing the null kept), older versions stay.
ann.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
assert ann.get_bucket_versioning(Bucket=B)["Status"] == "Suspended"
# (No version id answered for it, as S3 does.)
assert "VersionId" not in ann.put_object(Bucket=B, Key="k", Body=b"s1")
assert [v[1] for v in listing(Prefix="k")] == ["null", v1]
assert body("k", "null") == b"s1" and body("k", v1) == b"v1"
ann.put_object(Bucket=B, Key="k", Body=b"s2")
assert [v[1] for v in listing(Prefix="k")] == ["null", v1] and body("k") == b"s2"

# A bucket holding versions is not empty; once every version is gone it can go.
for key, version, _, _ in listing():
    assert error_code(lambda: ann.delete_bucket(Bucket=B)) == "BucketNotEmpty"
    ann.delete_object(Bucket=B, Key=key, VersionId=version)
assert listing() == []
ann.delete_bucket(Bucket=B)
print("ok")
