# Run by s3.rs with boto3 against a real cluster's S3 gateway: every step
# asserts, and the script prints "ok" at the end. Env: S3_URL, ANN_ID,
# ANN_SECRET, BOB_ID, BOB_SECRET, FROM_DFS (a file `dfs put` wrote to
# /buckets/ann-data/from-dfs.bin, here locally).
import base64, hashlib, json, os, subprocess, tempfile, urllib.request, urllib.error
import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from s3util import URL, client, error_code, expect_error


ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])

# Buckets: ann-data exists already (s3.rs made it and put from-dfs.bin).
ann.create_bucket(Bucket="ann-tour")
names = [b["Name"] for b in ann.list_buckets()["Buckets"]]
assert names == ["ann-data", "ann-tour"], names
assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == []
ann.head_bucket(Bucket="ann-tour")
ann.create_bucket(Bucket="ann-tour")  # one's own bucket again: success, as S3 in us-east-1
expect_error(lambda: bob.create_bucket(Bucket="ann-tour"), "BucketAlreadyExists")
assert error_code(lambda: ann.head_bucket(Bucket="nobody-here")) in ("404", "NoSuchBucket")

# Objects: small (inline), and 20 MiB (chunks), read back whole and by range.
ann.put_object(Bucket="ann-tour", Key="hello.txt", Body=b"hello, s3")
assert ann.get_object(Bucket="ann-tour", Key="hello.txt")["Body"].read() == b"hello, s3"
big = os.urandom(20 * 1024 * 1024 + 17)
put = ann.put_object(Bucket="ann-tour", Key="dir/sub/big.bin", Body=big)
assert put["ETag"] == '"%s"' % hashlib.md5(big).hexdigest(), put["ETag"]
got = ann.get_object(Bucket="ann-tour", Key="dir/sub/big.bin")
assert got["ContentLength"] == len(big)
assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(big).digest()
part = ann.get_object(Bucket="ann-tour", Key="dir/sub/big.bin", Range="bytes=9000000-9000099")
assert part["ContentRange"] == "bytes 9000000-9000099/%d" % len(big), part["ContentRange"]
assert part["Body"].read() == big[9000000:9000100]
tail = ann.get_object(Bucket="ann-tour", Key="dir/sub/big.bin", Range="bytes=-5")["Body"].read()
assert tail == big[-5:]
expect_error(lambda: ann.get_object(Bucket="ann-tour", Key="hello.txt", Range="bytes=100-200"), "InvalidRange")
head = ann.head_object(Bucket="ann-tour", Key="hello.txt")
assert head["ContentLength"] == 9
expect_error(lambda: ann.get_object(Bucket="ann-tour", Key="missing"), "NoSuchKey")
expect_error(lambda: ann.get_object(Bucket="no-bucket", Key="x"), "NoSuchBucket")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="a//b", Body=b"x"), "InvalidArgument")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="../x", Body=b"x"), "InvalidArgument")
# A key ending in '/' (a console's folder marker) is an object too, beside the keys under it.
ann.put_object(Bucket="ann-tour", Key="folder/", Body=b"")
ann.put_object(Bucket="ann-tour", Key="folder/inside.txt", Body=b"in")
assert ann.head_object(Bucket="ann-tour", Key="folder/")["ContentLength"] == 0
inside = ann.list_objects_v2(Bucket="ann-tour", Prefix="folder/", Delimiter="/")
assert [o["Key"] for o in inside["Contents"]] == ["folder/", "folder/inside.txt"], inside
assert "CommonPrefixes" not in inside, inside
assert [p["Prefix"] for p in ann.list_objects(Bucket="ann-tour", Delimiter="/")["CommonPrefixes"]] == ["dir/", "folder/"]
ann.delete_object(Bucket="ann-tour", Key="folder/")
assert [o["Key"] for o in ann.list_objects_v2(Bucket="ann-tour", Prefix="folder/")["Contents"]] == ["folder/inside.txt"]
ann.delete_object(Bucket="ann-tour", Key="folder/inside.txt")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="a/.s3-folder-marker", Body=b"x"), "InvalidArgument")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="hello.txt/", Body=b"x"), "InvalidArgument")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="hello.txt/deeper/x", Body=b"x"), "InvalidArgument")
# A key's directories are made with a small object (in its transaction) or before a larger
# one's upload, never in a missing bucket.
expect_error(lambda: ann.put_object(Bucket="no-bucket", Key="deep/er/", Body=b""), "NoSuchBucket")
expect_error(lambda: ann.put_object(Bucket="no-bucket", Key="deep/er/big", Body=b"b" * 70000), "NoSuchBucket")
expect_error(lambda: ann.head_bucket(Bucket="no-bucket"), "404", "NoSuchBucket")
ann.put_object(Bucket="ann-tour", Key="deep/er/", Body=b"")
ann.put_object(Bucket="ann-tour", Key="deep/est/big", Body=b"b" * 70000)
assert ann.get_object(Bucket="ann-tour", Key="deep/est/big")["Body"].read() == b"b" * 70000
assert [o["Key"] for o in ann.list_objects_v2(Bucket="ann-tour", Prefix="deep/")["Contents"]] == ["deep/er/", "deep/est/big"]
ann.delete_objects(Bucket="ann-tour", Delete={"Objects": [{"Key": "deep/er/"}, {"Key": "deep/est/big"}]})

# Conditional requests, evaluated by the gateway.
etag = head["ETag"]
assert ann.get_object(Bucket="ann-tour", Key="hello.txt", IfMatch=etag)["Body"].read() == b"hello, s3"
expect_error(lambda: ann.get_object(Bucket="ann-tour", Key="hello.txt", IfMatch='"0000"'), "PreconditionFailed")
assert error_code(lambda: ann.get_object(Bucket="ann-tour", Key="hello.txt", IfNoneMatch=etag)) == "304"
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="hello.txt", IfModifiedSince=head["LastModified"])) == "304"
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="hello.txt", Body=b"no", IfNoneMatch="*"), "PreconditionFailed")
ann.put_object(Bucket="ann-tour", Key="fresh.txt", Body=b"new", IfNoneMatch="*")
ann.delete_object(Bucket="ann-tour", Key="fresh.txt")

# ACLs: a private object shows its owner's full control only; the canned ACLs are modes
# (their effect on other users is acl.py's); grants are NotImplemented, and only the owner
# may set an ACL.
acl = ann.get_object_acl(Bucket="ann-tour", Key="hello.txt")
assert acl["Owner"]["DisplayName"] == "ann", acl
assert [(g["Grantee"]["DisplayName"], g["Permission"]) for g in acl["Grants"]] == [("ann", "FULL_CONTROL")], acl
ann.put_object_acl(Bucket="ann-tour", Key="hello.txt", ACL="private")
assert ann.head_object(Bucket="ann-tour", Key="hello.txt")["ETag"] == etag
expect_error(lambda: ann.put_object_acl(Bucket="ann-tour", Key="hello.txt", GrantRead="id=1"), "NotImplemented")
expect_error(lambda: ann.put_object_acl(Bucket="ann-tour", Key="missing", ACL="private"), "NoSuchKey")
assert ann.get_bucket_acl(Bucket="ann-tour")["Owner"]["DisplayName"] == "ann"
ann.put_bucket_acl(Bucket="ann-tour", ACL="private")
expect_error(lambda: ann.put_bucket_acl(Bucket="ann-tour", ACL="log-delivery-write"), "NotImplemented")
expect_error(lambda: bob.put_bucket_acl(Bucket="ann-tour", ACL="private"), "AccessDenied")
expect_error(lambda: bob.get_object_acl(Bucket="ann-tour", Key="hello.txt"), "AccessDenied")

# CopyObject: streamed from the source; a source the key cannot read is refused.
copied = ann.copy_object(Bucket="ann-tour", Key="copies/big.bin", CopySource={"Bucket": "ann-tour", "Key": "dir/sub/big.bin"})
assert copied["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(big).hexdigest()
assert ann.get_object(Bucket="ann-tour", Key="copies/big.bin")["Body"].read() == big
ann.delete_object(Bucket="ann-tour", Key="copies/big.bin")
bob.create_bucket(Bucket="bob-box")
expect_error(lambda: bob.copy_object(Bucket="bob-box", Key="stolen", CopySource={"Bucket": "ann-tour", "Key": "hello.txt"}), "AccessDenied")
assert bob.list_objects_v2(Bucket="bob-box")["KeyCount"] == 0
bob.delete_bucket(Bucket="bob-box")

# Object metadata: kept with the version, answered by GET and HEAD; the ETag is
# the MD5 of the bytes everywhere (PUT, GET, HEAD, listings).
body = b"<p>meta</p>"
md5 = '"%s"' % hashlib.md5(body).hexdigest()
meta = {"color": "blue", "note": "two words"}
put = ann.put_object(Bucket="ann-tour", Key="meta.html", Body=body, ContentType="text/html",
                     CacheControl="max-age=60", ContentDisposition='attachment; filename="m.html"',
                     ContentLanguage="en", Metadata=meta)
assert put["ETag"] == md5, put
for answer in (ann.head_object(Bucket="ann-tour", Key="meta.html"), ann.get_object(Bucket="ann-tour", Key="meta.html")):
    assert answer["ETag"] == md5 and answer["ContentType"] == "text/html", answer
    assert answer["CacheControl"] == "max-age=60" and answer["ContentLanguage"] == "en", answer
    assert answer["ContentDisposition"] == 'attachment; filename="m.html"', answer
    assert answer["Metadata"] == meta, answer
listed = {o["Key"]: o["ETag"] for o in ann.list_objects_v2(Bucket="ann-tour", Prefix="meta")["Contents"]}
assert listed == {"meta.html": md5}, listed
overridden = ann.get_object(Bucket="ann-tour", Key="meta.html", ResponseContentType="text/plain")
assert overridden["ContentType"] == "text/plain"
# A new version replaces the metadata.
ann.put_object(Bucket="ann-tour", Key="meta.html", Body=body)
plain = ann.head_object(Bucket="ann-tour", Key="meta.html")
assert plain["Metadata"] == {} and plain.get("CacheControl") is None and plain["ETag"] == md5, plain
ann.put_object(Bucket="ann-tour", Key="meta.html", Body=body, ContentType="text/html", Metadata=meta)
# CopyObject: COPY (the default) keeps the source's metadata, REPLACE takes the request's;
# a copy onto itself needs REPLACE.
ann.copy_object(Bucket="ann-tour", Key="meta-copy.html", CopySource={"Bucket": "ann-tour", "Key": "meta.html"})
copy = ann.head_object(Bucket="ann-tour", Key="meta-copy.html")
assert copy["Metadata"] == meta and copy["ContentType"] == "text/html" and copy["ETag"] == md5, copy
ann.copy_object(Bucket="ann-tour", Key="meta-copy.html", CopySource={"Bucket": "ann-tour", "Key": "meta.html"},
                MetadataDirective="REPLACE", Metadata={"fresh": "yes"}, ContentType="text/plain")
copy = ann.head_object(Bucket="ann-tour", Key="meta-copy.html")
assert copy["Metadata"] == {"fresh": "yes"} and copy["ContentType"] == "text/plain", copy
assert error_code(lambda: ann.copy_object(Bucket="ann-tour", Key="meta.html",
                                          CopySource={"Bucket": "ann-tour", "Key": "meta.html"})) == "InvalidRequest"
ann.copy_object(Bucket="ann-tour", Key="meta.html", CopySource={"Bucket": "ann-tour", "Key": "meta.html"},
                MetadataDirective="REPLACE", Metadata={"again": "1"})
assert ann.head_object(Bucket="ann-tour", Key="meta.html")["Metadata"] == {"again": "1"}
assert ann.get_object(Bucket="ann-tour", Key="meta.html")["Body"].read() == body
# PUT conditions (RFC 9110): If-Match with the stored ETag writes, another ETag (or a missing
# key) does not; If-None-Match with an ETag writes unless it is the object's (a missing key
# writes); nothing is stored on a refusal.
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="meta.html", Body=b"x", IfMatch='"0000"'), "PreconditionFailed")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="nothing-here", Body=b"x", IfMatch=md5), "PreconditionFailed")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="nothing-here", Body=b"x", IfMatch="*"), "PreconditionFailed")
expect_error(lambda: ann.head_object(Bucket="ann-tour", Key="nothing-here"), "404", "NoSuchKey")
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="meta.html", Body=b"x", IfNoneMatch=md5), "PreconditionFailed")
assert ann.get_object(Bucket="ann-tour", Key="meta.html")["Body"].read() == body
ann.put_object(Bucket="ann-tour", Key="meta.html", Body=b"second", IfMatch=md5)
assert ann.get_object(Bucket="ann-tour", Key="meta.html")["Body"].read() == b"second"
expect_error(lambda: ann.put_object(Bucket="ann-tour", Key="meta.html", Body=b"third", IfMatch=md5), "PreconditionFailed")
ann.put_object(Bucket="ann-tour", Key="meta.html", Body=b"third", IfNoneMatch=md5)
assert ann.get_object(Bucket="ann-tour", Key="meta.html")["Body"].read() == b"third"
ann.put_object(Bucket="ann-tour", Key="nothing-here", Body=b"new", IfNoneMatch=md5)
assert ann.get_object(Bucket="ann-tour", Key="nothing-here")["Body"].read() == b"new"
ann.delete_object(Bucket="ann-tour", Key="nothing-here")
# Oversized metadata: a clear S3 error, nothing stored.
assert error_code(lambda: ann.put_object(Bucket="ann-tour", Key="huge-meta", Body=b"x",
                                         Metadata={"big": "v" * 9000})) in ("MetadataTooLarge", "400")
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="huge-meta")) in ("404", "NoSuchKey")
for key in ("meta.html", "meta-copy.html"):
    ann.delete_object(Bucket="ann-tour", Key=key)

# Listings: S3's order is by whole key ("a-c" < "a/b"), pages follow on.
for key in ["a/b", "a-c", "a/a/x", "b"]:
    ann.put_object(Bucket="ann-tour", Key=key, Body=key.encode())
keys = [o["Key"] for o in ann.list_objects_v2(Bucket="ann-tour")["Contents"]]
assert keys == ["a-c", "a/a/x", "a/b", "b", "dir/sub/big.bin", "hello.txt"], keys
pages = ann.get_paginator("list_objects_v2").paginate(Bucket="ann-tour", PaginationConfig={"PageSize": 2})
assert [o["Key"] for page in pages for o in page["Contents"]] == keys
top = ann.list_objects_v2(Bucket="ann-tour", Delimiter="/")
assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "dir/"], top
assert [o["Key"] for o in top["Contents"]] == ["a-c", "b", "hello.txt"]
under = ann.list_objects_v2(Bucket="ann-tour", Prefix="a/", Delimiter="/")
assert [p["Prefix"] for p in under["CommonPrefixes"]] == ["a/a/"]
assert [o["Key"] for o in under["Contents"]] == ["a/b"]
after = ann.list_objects_v2(Bucket="ann-tour", StartAfter="a/b")
assert [o["Key"] for o in after["Contents"]] == ["b", "dir/sub/big.bin", "hello.txt"]
v1 = ann.list_objects(Bucket="ann-tour", Prefix="a", MaxKeys=2)
assert [o["Key"] for o in v1["Contents"]] == ["a-c", "a/a/x"] and v1["IsTruncated"]
v1 = ann.list_objects(Bucket="ann-tour", Prefix="a", Marker="a/a/x")
assert [o["Key"] for o in v1["Contents"]] == ["a/b"] and not v1["IsTruncated"]
# Owners: always in version 1, in V2 only with fetch-owner.
assert all(o["Owner"]["DisplayName"] == "ann" for o in v1["Contents"]), v1
assert all("Owner" not in o for o in after["Contents"]), after
owned = ann.list_objects_v2(Bucket="ann-tour", StartAfter="a/b", FetchOwner=True)
assert all(o["Owner"]["DisplayName"] == "ann" for o in owned["Contents"]), owned
# encoding-type=url as S3 writes it (a space is '+'); version 1 echoes its prefix as given.
ann.put_object(Bucket="ann-tour", Key="q ab+c/d", Body=b"q")
encoded = ann.list_objects_v2(Bucket="ann-tour", Prefix="q", Delimiter="/", EncodingType="url")
assert [p["Prefix"] for p in encoded["CommonPrefixes"]] == ["q+ab%2Bc/"], encoded
assert ann.list_objects(Bucket="ann-tour", Prefix="q ab")["Prefix"] == "q ab"
ann.delete_object(Bucket="ann-tour", Key="q ab+c/d")
# RGW's allow-unordered: accepted, but not with a delimiter.
unordered = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
unordered.meta.events.register("before-call.s3.ListObjectsV2",
                               lambda **kwargs: kwargs["params"].update(url=kwargs["params"]["url"] + "&allow-unordered=true"))
assert len(unordered.list_objects_v2(Bucket="ann-tour")["Contents"]) == len(keys)
expect_error(lambda: unordered.list_objects_v2(Bucket="ann-tour", Delimiter="/"), "InvalidArgument")
# ListObjectVersions pages with a version-id marker too (each key has one version, "null").
versions = ann.list_object_versions(Bucket="ann-tour", MaxKeys=1)
assert versions["IsTruncated"] and versions["NextVersionIdMarker"] == "null", versions

# A presigned GET works with no credentials of its own, for 1 s to 7 days: past those bounds,
# or negative, it is refused as expired (403 AccessDenied), before its signature is checked.
url = ann.generate_presigned_url("get_object", Params={"Bucket": "ann-tour", "Key": "hello.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == b"hello, s3"
# With curl: a presigned PUT, then a presigned GET of what it stored.
with tempfile.NamedTemporaryFile() as upload:
    upload.write(b"put by curl")
    upload.flush()
    url = ann.generate_presigned_url("put_object", Params={"Bucket": "ann-tour", "Key": "curl.txt"}, ExpiresIn=60)
    subprocess.run(["curl", "-sSf", "-T", upload.name, url], check=True)
url = ann.generate_presigned_url("get_object", Params={"Bucket": "ann-tour", "Key": "curl.txt"}, ExpiresIn=60)
assert subprocess.run(["curl", "-sSf", url], capture_output=True, check=True).stdout == b"put by curl"
ann.delete_object(Bucket="ann-tour", Key="curl.txt")
v4 = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"], signature_version="s3v4")
for expires in (604801, -7):
    url = v4.generate_presigned_url("get_object", Params={"Bucket": "ann-tour", "Key": "hello.txt"}, ExpiresIn=expires)
    try:
        urllib.request.urlopen(url)
        raise AssertionError("a presigned URL valid for %d s worked" % expires)
    except urllib.error.HTTPError as error:
        assert error.code == 403 and b"<Code>AccessDenied</Code>" in error.read(), expires
url = v4.generate_presigned_url("put_object", Params={"Bucket": "ann-tour", "Key": "expired"}, ExpiresIn=-1000)
try:
    urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="PUT"))
    raise AssertionError("an expired presigned PUT worked")
except urllib.error.HTTPError as error:
    assert error.code == 403
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="expired")) in ("404", "NoSuchKey")

# Browser form uploads (POST object, a policy signed with the key): stored when the fields meet
# the policy; a field failing a condition is 403 AccessDenied and nothing is stored.
def post_form(fields, content="from a form"):
    boundary = "dfs-form-boundary"
    body = b""
    for name, value in list(fields.items()) + [("file", content)]:
        body += b"--%s\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n\r\n%s\r\n" % (
            boundary.encode(), name.encode(), b'; filename="f.txt"' if name == "file" else b"", value.encode())
    body += b"--%s--\r\n" % boundary.encode()
    request = urllib.request.Request(URL + "/ann-tour", data=body, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    try:
        return urllib.request.urlopen(request).status, b""
    except urllib.error.HTTPError as error:
        return error.code, error.read()
form = ann.generate_presigned_post("ann-tour", "form.txt", Fields={"x-amz-meta-foo": "bar"},
                                   Conditions=[["starts-with", "$x-amz-meta-foo", "ba"]], ExpiresIn=600)
assert post_form(form["fields"])[0] == 204
assert ann.get_object(Bucket="ann-tour", Key="form.txt")["Body"].read() == b"from a form"
ann.delete_object(Bucket="ann-tour", Key="form.txt")
# ${filename} in the key is the name of the form's file (post_form sends f.txt).
named = ann.generate_presigned_post("ann-tour", "up/${filename}", ExpiresIn=600)
assert post_form(named["fields"])[0] == 204
assert ann.get_object(Bucket="ann-tour", Key="up/f.txt")["Body"].read() == b"from a form"
ann.delete_object(Bucket="ann-tour", Key="up/f.txt")
# An empty file is an empty object; a form's Content-MD5 field is checked as the header is.
empty = ann.generate_presigned_post("ann-tour", "empty-form.txt", ExpiresIn=600)
assert post_form(empty["fields"], content="")[0] == 204
assert ann.get_object(Bucket="ann-tour", Key="empty-form.txt")["Body"].read() == b""
ann.delete_object(Bucket="ann-tour", Key="empty-form.txt")
for content, status in (("from a form", 204), ("other bytes", 400)):
    digest = base64.b64encode(hashlib.md5(b"from a form").digest()).decode()
    checked = ann.generate_presigned_post("ann-tour", "md5-form.txt", Fields={"Content-MD5": digest},
                                          Conditions=[{"Content-MD5": digest}], ExpiresIn=600)
    got, answer = post_form(checked["fields"], content=content)
    assert got == status and (status == 204 or b"<Code>BadDigest</Code>" in answer), (got, answer)
assert ann.get_object(Bucket="ann-tour", Key="md5-form.txt")["Body"].read() == b"from a form"
ann.delete_object(Bucket="ann-tour", Key="md5-form.txt")
form = ann.generate_presigned_post("ann-tour", "form.txt", Fields={"x-amz-meta-foo": "nope"},
                                   Conditions=[["starts-with", "$x-amz-meta-foo", "ba"]], ExpiresIn=600)
status, answer = post_form(form["fields"])
assert status == 403 and b"<Code>AccessDenied</Code>" in answer and b"Invalid according to Policy" in answer, answer
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="form.txt")) in ("404", "NoSuchKey")
# A policy without a signature is 400 InvalidArgument; a policy whose expiration is not
# ISO 8601 is 400 InvalidPolicyDocument (both before s3s reads the form); nothing stored.
form = ann.generate_presigned_post("ann-tour", "form.txt", Fields={"x-amz-meta-foo": "bar"},
                                   Conditions=[["starts-with", "$x-amz-meta-foo", "ba"]], ExpiresIn=600)
unsigned = {name: value for name, value in form["fields"].items() if name.lower() not in ("signature", "x-amz-signature")}
status, answer = post_form(unsigned)
assert status == 400 and b"<Code>InvalidArgument</Code>" in answer, answer
policy = json.loads(base64.b64decode(form["fields"]["policy"]))
policy["expiration"] = "2030-01-01 00:00:00.000000+00:00"
misdated = dict(form["fields"], policy=base64.b64encode(json.dumps(policy).encode()).decode())
status, answer = post_form(misdated)
assert status == 400 and b"<Code>InvalidPolicyDocument</Code>" in answer, answer
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="form.txt")) in ("404", "NoSuchKey")

# A file written by `dfs put` reads the same through S3.
with open(os.environ["FROM_DFS"], "rb") as f:
    assert ann.get_object(Bucket="ann-data", Key="from-dfs.bin")["Body"].read() == f.read()

# Refusals: another user's private bucket, a wrong secret, an unknown key, no signature.
expect_error(lambda: bob.get_object(Bucket="ann-tour", Key="hello.txt"), "AccessDenied")
expect_error(lambda: bob.put_object(Bucket="ann-tour", Key="evil", Body=b"x"), "AccessDenied")
expect_error(lambda: bob.list_objects_v2(Bucket="ann-tour"), "AccessDenied")
expect_error(lambda: bob.delete_bucket(Bucket="ann-tour"), "AccessDenied")
wrong = client(os.environ["ANN_ID"], "x" * 40)
expect_error(lambda: wrong.get_object(Bucket="ann-tour", Key="hello.txt"), "SignatureDoesNotMatch")
unknown = client("AKDFSNOSUCHKEY000000", "x" * 40)
expect_error(lambda: unknown.list_buckets(), "InvalidAccessKeyId")
anonymous = boto3.client("s3", endpoint_url=URL, region_name="us-east-1", config=Config(signature_version=UNSIGNED))
expect_error(lambda: anonymous.get_object(Bucket="ann-tour", Key="hello.txt"), "AccessDenied")
expect_error(lambda: anonymous.put_object(Bucket="ann-tour", Key="anon", Body=b"x"), "AccessDenied")
# An anonymous caller owns no bucket: ListBuckets answers none.
assert anonymous.list_buckets()["Buckets"] == []
try:
    urllib.request.urlopen(URL + "/ann-tour/hello.txt")
    raise AssertionError("an unsigned GET succeeded")
except urllib.error.HTTPError as error:
    # Every answer names its request id, and an error's body says it too.
    request_id = error.headers["x-amz-request-id"]
    answer = error.read()
    assert error.code == 403 and b"<Code>AccessDenied</Code>" in answer
    assert request_id and b"<RequestId>%s</RequestId>" % request_id.encode() in answer, (request_id, answer)
try:
    ann.get_object(Bucket="ann-tour", Key="missing")
    raise AssertionError("a missing key was found")
except ClientError as error:
    assert error.response["Error"]["Code"] == "NoSuchKey"
    assert error.response["ResponseMetadata"]["RequestId"], error.response
    assert error.response["Error"].get("RequestId", error.response["ResponseMetadata"]["RequestId"]) \
        == error.response["ResponseMetadata"]["RequestId"]
assert ann.head_bucket(Bucket="ann-tour")["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]

# Deletes: a non-empty bucket stays; deleting a missing key succeeds.
expect_error(lambda: ann.delete_bucket(Bucket="ann-tour"), "BucketNotEmpty")
ann.delete_object(Bucket="ann-tour", Key="hello.txt")
ann.delete_object(Bucket="ann-tour", Key="hello.txt")
assert error_code(lambda: ann.head_object(Bucket="ann-tour", Key="hello.txt")) in ("404", "NoSuchKey")
rest = [{"Key": o["Key"]} for o in ann.list_objects_v2(Bucket="ann-tour")["Contents"]]
deleted = ann.delete_objects(Bucket="ann-tour", Delete={"Objects": rest})
assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted(o["Key"] for o in rest)
assert ann.list_objects_v2(Bucket="ann-tour")["KeyCount"] == 0
ann.delete_bucket(Bucket="ann-tour")
assert [b["Name"] for b in ann.list_buckets()["Buckets"]] == ["ann-data"]

# Left for s3.rs to read with `dfs get`.
ann.put_object(Bucket="ann-data", Key="from-s3/note.txt", Body=b"written through S3")
print("ok")
