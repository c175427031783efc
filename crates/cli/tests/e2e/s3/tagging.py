# Run by s3.rs with boto3 against a real cluster's S3 gateway: object tags
# (PutObjectTagging, GetObjectTagging, DeleteObjectTagging, x-amz-tagging on
# PutObject, CopyObject and multipart uploads, x-amz-tagging-count), their
# limits, and who may read and change them. Every step asserts; prints "ok"
# at the end. Env: S3_URL, ANN_ID, ANN_SECRET, BOB_ID, BOB_SECRET.
import os

from s3util import client, error_code

ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])
B = "ann-tags"


def tags(key, who=ann):
    return {t["Key"]: t["Value"] for t in who.get_object_tagging(Bucket=B, Key=key)["TagSet"]}


def tag_set(pairs):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs.items()]}


ann.create_bucket(Bucket=B)

# PutObject's header (form encoding; a key without '=' has an empty value).
ann.put_object(Bucket=B, Key="small.txt", Body=b"small", Tagging="color=blue&empty&sp%20ace=a%26b")
assert tags("small.txt") == {"color": "blue", "empty": "", "sp ace": "a&b"}
head = ann.head_object(Bucket=B, Key="small.txt")
assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "3"
assert ann.get_object(Bucket=B, Key="small.txt")["TagCount"] == 3
etag = head["ETag"]

# PutObjectTagging replaces the set; the bytes, ETag and metadata stay.
ann.put_object(Bucket=B, Key="big.bin", Body=os.urandom(3 << 20), Metadata={"m": "1"})
big_etag = ann.head_object(Bucket=B, Key="big.bin")["ETag"]
for key in ["small.txt", "big.bin"]:
    ann.put_object_tagging(Bucket=B, Key=key, Tagging=tag_set({"k": "v", "k2": "v2"}))
    assert tags(key) == {"k": "v", "k2": "v2"}
assert ann.get_object(Bucket=B, Key="small.txt")["Body"].read() == b"small"
assert ann.head_object(Bucket=B, Key="small.txt")["ETag"] == etag
big = ann.head_object(Bucket=B, Key="big.bin")
assert big["ETag"] == big_etag and big["Metadata"] == {"m": "1"} and big["ContentLength"] == 3 << 20

# The most S3 allows, and one more of each: InvalidTag, nothing changed.
most = {("k%d" % i).ljust(128, "k"): "v" * 256 for i in range(10)}
ann.put_object_tagging(Bucket=B, Key="small.txt", Tagging=tag_set(most))
assert tags("small.txt") == most
for bad in [dict(most, extra="1"), {"k" * 129: "v"}, {"k": "v" * 257}, {"aws:reserved": "v"}]:
    code = error_code(lambda: ann.put_object_tagging(Bucket=B, Key="small.txt", Tagging=tag_set(bad)))
    assert code == "InvalidTag", (bad.keys(), code)
    assert tags("small.txt") == most
dup = {"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}
assert error_code(lambda: ann.put_object_tagging(Bucket=B, Key="small.txt", Tagging=dup)) == "InvalidTag"
# A PutObject with bad tags stores nothing.
bad_put = lambda: ann.put_object(Bucket=B, Key="never.txt", Body=b"x", Tagging="a=1&a=2")
assert error_code(bad_put) == "InvalidTag"
assert error_code(lambda: ann.head_object(Bucket=B, Key="never.txt")) == "404"
assert error_code(lambda: ann.get_object_tagging(Bucket=B, Key="never.txt")) == "NoSuchKey"
assert error_code(lambda: ann.put_object_tagging(Bucket=B, Key="never.txt", Tagging=tag_set({"a": "1"}))) == "NoSuchKey"

# DeleteObjectTagging (204): no tags, no count header.
assert ann.delete_object_tagging(Bucket=B, Key="small.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
assert tags("small.txt") == {}
assert "x-amz-tagging-count" not in ann.head_object(Bucket=B, Key="small.txt")["ResponseMetadata"]["HTTPHeaders"]

# CopyObject: the source's tags (COPY, the default) or the request's (REPLACE).
src = {"CopySource": {"Bucket": B, "Key": "big.bin"}, "Bucket": B}
ann.copy_object(Key="copied.bin", **src)
assert tags("copied.bin") == {"k": "v", "k2": "v2"}
ann.copy_object(Key="replaced.bin", TaggingDirective="REPLACE", Tagging="new=1", **src)
assert tags("replaced.bin") == {"new": "1"}
ann.copy_object(Key="untagged.bin", TaggingDirective="REPLACE", **src)
assert tags("untagged.bin") == {}
assert error_code(lambda: ann.copy_object(Key="no.bin", TaggingDirective="REPLACE", Tagging="aws:x=1", **src)) \
    == "InvalidTag"

# A multipart upload's tags, given at its creation, are the object's.
upload = ann.create_multipart_upload(Bucket=B, Key="multi.bin", Tagging="part=yes")["UploadId"]
part = ann.upload_part(Bucket=B, Key="multi.bin", UploadId=upload, PartNumber=1, Body=b"parts")
ann.complete_multipart_upload(Bucket=B, Key="multi.bin", UploadId=upload,
                              MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert tags("multi.bin") == {"part": "yes"}

# An object others may read: they read its tags, but may not change them.
ann.put_object(Bucket=B, Key="public.txt", Body=b"p", ACL="public-read", Tagging="who=ann")
assert tags("public.txt", bob) == {"who": "ann"}
assert error_code(lambda: bob.put_object_tagging(Bucket=B, Key="public.txt", Tagging=tag_set({}))) == "AccessDenied"
assert error_code(lambda: bob.delete_object_tagging(Bucket=B, Key="public.txt")) == "AccessDenied"
assert error_code(lambda: bob.get_object_tagging(Bucket=B, Key="small.txt")) == "AccessDenied"
assert tags("public.txt") == {"who": "ann"}
print("ok")
