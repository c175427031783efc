# Run by s3_multipart.rs with boto3 against a real cluster's S3 gateway:
# multipart uploads, each step asserting; prints "ok" at the end.
# Env: S3_URL, ANN_ID, ANN_SECRET, BOB_ID, BOB_SECRET, BIG_MIB (the size of
# the large round trip), OUT (a directory: what s3_multipart.rs reads back
# with `dfs get` is described in OUT/expected.json).
import hashlib, json, os, urllib.request, urllib.error
import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from boto3.s3.transfer import TransferConfig

from s3util import URL, client, error_code

MIB = 1024 * 1024
BUCKET = "ann-parts"


def md5(data):
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


def keys(bucket):
    return [o["Key"] for o in ann.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(bucket, **args):
    return [(u["Key"], u["UploadId"]) for u in ann.list_multipart_uploads(Bucket=bucket, **args).get("Uploads", [])]


ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])
ann.create_bucket(Bucket=BUCKET)
expected = {}

# Three explicit parts of unequal sizes (none a multiple of the 8 MiB
# chunk: the object's chunks are not all one size), Content-Type and
# metadata given at the start; the ETag is S3's md5-of-md5s "-3".
parts = [os.urandom(9 * MIB + 1), os.urandom(5 * MIB + 7), os.urandom(3 * MIB + 5)]
whole = b"".join(parts)
created = ann.create_multipart_upload(Bucket=BUCKET, Key="three/parts.bin", ContentType="application/x-three",
                                      Metadata={"origin": "boto3"})
uid = created["UploadId"]
assert created["Key"] == "three/parts.bin"
assert uploads(BUCKET) == [("three/parts.bin", uid)]
etags = []
for number, data in enumerate(parts, start=1):
    put = ann.upload_part(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid, PartNumber=number, Body=data)
    assert put["ETag"] == '"%s"' % md5(data), put
    etags.append(put["ETag"])
# A part sent again replaces the first one.
ann.upload_part(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid, PartNumber=2, Body=parts[1])
listed = ann.list_parts(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid)
assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == \
    [(n, etags[n - 1], len(parts[n - 1])) for n in (1, 2, 3)], listed["Parts"]
assert not listed["IsTruncated"]
page = ann.list_parts(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid, MaxParts=2)
assert [p["PartNumber"] for p in page["Parts"]] == [1, 2] and page["IsTruncated"]
assert page["NextPartNumberMarker"] == 2
rest = ann.list_parts(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid, PartNumberMarker=2)
assert [p["PartNumber"] for p in rest["Parts"]] == [3] and not rest["IsTruncated"]
# Parts are not objects: no listing shows them, no bucket is made of them.
assert keys(BUCKET) == []
names = [b["Name"] for b in ann.list_buckets()["Buckets"]]
assert BUCKET in names and not [n for n in names if n.startswith(".")], names
# Another user cannot see, use or end ann's upload.
assert error_code(lambda: bob.list_parts(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid)) in ("AccessDenied", "NoSuchUpload")
assert error_code(lambda: bob.upload_part(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid, PartNumber=4, Body=b"x")) \
    in ("AccessDenied", "NoSuchUpload")
assert error_code(lambda: bob.abort_multipart_upload(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid)) \
    in ("AccessDenied", "NoSuchUpload")

# Refused Completes store nothing and keep the upload.
def complete(key, upload_id, numbered):
    return ann.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in numbered]})

assert error_code(lambda: complete("three/parts.bin", uid, [(2, etags[1]), (1, etags[0]), (3, etags[2])])) \
    == "InvalidPartOrder"
assert error_code(lambda: complete("three/parts.bin", uid, [(1, etags[0]), (2, '"%s"' % ("0" * 32)), (3, etags[2])])) \
    == "InvalidPart"
assert error_code(lambda: complete("three/parts.bin", uid, [(1, etags[0]), (4, etags[2])])) == "InvalidPart"
assert error_code(lambda: complete("three/parts.bin", "0123456789abcdef0123456789abcdef", [(1, etags[0])])) \
    == "NoSuchUpload"
assert error_code(lambda: complete("other/key.bin", uid, [(1, etags[0])])) == "NoSuchUpload"

# Malformed XML, sent signed by hand (boto3 would not send it).
def raw_complete(key, upload_id, body):
    request = AWSRequest(method="POST", url="%s/%s/%s?uploadId=%s" % (URL, BUCKET, key, upload_id), data=body)
    S3SigV4Auth(Credentials(os.environ["ANN_ID"], os.environ["ANN_SECRET"]), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    try:
        urllib.request.urlopen(urllib.request.Request(prepared.url, data=body, headers=dict(prepared.headers),
                                                      method="POST"))
        raise AssertionError("a malformed Complete succeeded")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

status, body = raw_complete("three/parts.bin", uid, b"<CompleteMultipartUpload><Part><PartNumber>1</Part>")
assert status == 400 and "<Code>MalformedXML</Code>" in body, (status, body)
assert keys(BUCKET) == [] and uploads(BUCKET) == [("three/parts.bin", uid)]

done = complete("three/parts.bin", uid, list(enumerate(etags, start=1)))
assert done["ETag"] == multipart_etag(parts), (done["ETag"], multipart_etag(parts))
assert uploads(BUCKET) == []
assert error_code(lambda: ann.list_parts(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid)) == "NoSuchUpload"
got = ann.get_object(Bucket=BUCKET, Key="three/parts.bin")
assert got["ContentLength"] == len(whole)
assert got["ETag"] == done["ETag"], (got["ETag"], done["ETag"])
assert got["Body"].read() == whole
head = ann.head_object(Bucket=BUCKET, Key="three/parts.bin")
assert head["ETag"] == done["ETag"] and head["ContentLength"] == len(whole)
[listed] = ann.list_objects_v2(Bucket=BUCKET)["Contents"]
assert listed["ETag"] == done["ETag"] and listed["Size"] == len(whole)
# Ranges across the parts' boundaries (and the chunks' inside them).
for start, end in [(9 * MIB - 3, 9 * MIB + 4), (len(parts[0]) - 2, len(parts[0]) + 2),
                   (len(parts[0]) + len(parts[1]) - 1, len(whole) - 1), (0, len(whole) - 1)]:
    ranged = ann.get_object(Bucket=BUCKET, Key="three/parts.bin", Range="bytes=%d-%d" % (start, end))
    assert ranged["Body"].read() == whole[start:end + 1], (start, end)
# partNumber reads: each part's bytes, from the part sizes kept with the object.
for number, data in enumerate(parts, start=1):
    one = ann.get_object(Bucket=BUCKET, Key="three/parts.bin", PartNumber=number)
    assert one["PartsCount"] == 3 and one["ContentLength"] == len(data), one
    assert one["Body"].read() == data
    assert ann.head_object(Bucket=BUCKET, Key="three/parts.bin", PartNumber=number)["ContentLength"] == len(data)
assert error_code(lambda: ann.get_object(Bucket=BUCKET, Key="three/parts.bin", PartNumber=4)) in ("InvalidPartNumber", "InvalidArgument", "416")
expected["/buckets/%s/three/parts.bin" % BUCKET] = hashlib.sha256(whole).hexdigest()

# Conditional Complete: If-None-Match: * refuses an existing key, keeping it.
uid2 = ann.create_multipart_upload(Bucket=BUCKET, Key="three/parts.bin")["UploadId"]
etag2 = ann.upload_part(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid2, PartNumber=1, Body=b"small")["ETag"]
assert error_code(lambda: ann.complete_multipart_upload(
    Bucket=BUCKET, Key="three/parts.bin", UploadId=uid2, IfNoneMatch="*",
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag2}]})) == "PreconditionFailed"
# If-None-Match with the object's ETag, If-Match with another: refused the same way.
for condition in ({"IfNoneMatch": done["ETag"]}, {"IfMatch": '"%s"' % ("0" * 32)}):
    assert error_code(lambda: ann.complete_multipart_upload(
        Bucket=BUCKET, Key="three/parts.bin", UploadId=uid2,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag2}]}, **condition)) == "PreconditionFailed", condition
assert ann.get_object(Bucket=BUCKET, Key="three/parts.bin")["Body"].read() == whole

# A part too small (not the last): EntityTooSmall, nothing stored.
uid3 = ann.create_multipart_upload(Bucket=BUCKET, Key="small.bin")["UploadId"]
small = [ann.upload_part(Bucket=BUCKET, Key="small.bin", UploadId=uid3, PartNumber=n, Body=b"x" * 100)["ETag"]
         for n in (1, 2)]
assert error_code(lambda: complete("small.bin", uid3, [(1, small[0]), (2, small[1])])) == "EntityTooSmall"
assert "small.bin" not in keys(BUCKET)
# One small part alone is a whole object (the last part may be small). A part listed
# twice (sent again while the list was made) counts as listed last, as RGW does.
assert complete("small.bin", uid3, [(2, '"%s"' % ("0" * 32)), (2, small[1])])["ETag"] == multipart_etag([b"x" * 100])
assert ann.get_object(Bucket=BUCKET, Key="small.bin")["Body"].read() == b"x" * 100

# Abort: the upload and its parts go; its id is then unknown.
uid4 = ann.create_multipart_upload(Bucket=BUCKET, Key="aborted.bin")["UploadId"]
ann.upload_part(Bucket=BUCKET, Key="aborted.bin", UploadId=uid4, PartNumber=1, Body=os.urandom(MIB))
assert ("aborted.bin", uid4) in uploads(BUCKET)
ann.abort_multipart_upload(Bucket=BUCKET, Key="aborted.bin", UploadId=uid4)
assert ("aborted.bin", uid4) not in uploads(BUCKET)
assert error_code(lambda: ann.list_parts(Bucket=BUCKET, Key="aborted.bin", UploadId=uid4)) == "NoSuchUpload"
assert error_code(lambda: ann.abort_multipart_upload(Bucket=BUCKET, Key="aborted.bin", UploadId=uid4)) == "NoSuchUpload"
assert "aborted.bin" not in keys(BUCKET)
assert error_code(lambda: ann.upload_part(Bucket=BUCKET, Key="x", UploadId="not-an-id", PartNumber=1, Body=b"x")) \
    == "NoSuchUpload"
assert error_code(lambda: ann.upload_part(Bucket=BUCKET, Key="three/parts.bin", UploadId=uid2, PartNumber=10001,
                                          Body=b"x")) == "InvalidArgument"

# ListMultipartUploads: by key then id, prefix, delimiter, pages.
ids = {}
for key in ["p/b", "p/a", "q/x", "p/a"]:
    ids.setdefault(key, []).append(ann.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"])
everything = uploads(BUCKET)
assert [k for k, _ in everything] == ["p/a", "p/a", "p/b", "q/x", "three/parts.bin"], everything
assert everything[0][1] < everything[1][1]
assert [k for k, _ in uploads(BUCKET, Prefix="p/")] == ["p/a", "p/a", "p/b"]
top = ann.list_multipart_uploads(Bucket=BUCKET, Delimiter="/")
assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["p/", "q/", "three/"], top
first = ann.list_multipart_uploads(Bucket=BUCKET, MaxUploads=2)
assert first["IsTruncated"] and len(first["Uploads"]) == 2
following = ann.list_multipart_uploads(Bucket=BUCKET, KeyMarker=first["NextKeyMarker"],
                                       UploadIdMarker=first["NextUploadIdMarker"])
assert [(u["Key"], u["UploadId"]) for u in first["Uploads"] + following["Uploads"]] == everything
for key, upload_id in everything:
    ann.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
assert uploads(BUCKET) == []

# UploadPartCopy: a range of an object as a part (bytes through the gateway).
uid5 = ann.create_multipart_upload(Bucket=BUCKET, Key="copied.bin")["UploadId"]
first_part = ann.upload_part_copy(Bucket=BUCKET, Key="copied.bin", UploadId=uid5, PartNumber=1,
                                  CopySource={"Bucket": BUCKET, "Key": "three/parts.bin"},
                                  CopySourceRange="bytes=0-%d" % (6 * MIB - 1))
second_part = ann.upload_part_copy(Bucket=BUCKET, Key="copied.bin", UploadId=uid5, PartNumber=2,
                                   CopySource={"Bucket": BUCKET, "Key": "small.bin"})
assert first_part["CopyPartResult"]["ETag"] == '"%s"' % md5(whole[:6 * MIB])
# A copy range must be FIRST-LAST within the source (small.bin has 100 bytes): nothing stored else.
for bad, code in (("bytes=0-100", "InvalidRange"), ("bytes=-5", "InvalidArgument"), ("bytes=3-", "InvalidArgument")):
    assert error_code(lambda: ann.upload_part_copy(Bucket=BUCKET, Key="copied.bin", UploadId=uid5, PartNumber=3,
                                                   CopySource={"Bucket": BUCKET, "Key": "small.bin"},
                                                   CopySourceRange=bad)) == code, bad
assert [p["PartNumber"] for p in ann.list_parts(Bucket=BUCKET, Key="copied.bin", UploadId=uid5)["Parts"]] == [1, 2]
copied = complete("copied.bin", uid5, [(1, first_part["CopyPartResult"]["ETag"]),
                                       (2, second_part["CopyPartResult"]["ETag"])])
assert ann.get_object(Bucket=BUCKET, Key="copied.bin")["Body"].read() == whole[:6 * MIB] + b"x" * 100
assert copied["ETag"] == multipart_etag([whole[:6 * MIB], b"x" * 100])
bob.create_bucket(Bucket="bob-parts")
uid6 = bob.create_multipart_upload(Bucket="bob-parts", Key="stolen")["UploadId"]
assert error_code(lambda: bob.upload_part_copy(Bucket="bob-parts", Key="stolen", UploadId=uid6, PartNumber=1,
                                               CopySource={"Bucket": BUCKET, "Key": "small.bin"})) == "AccessDenied"
bob.abort_multipart_upload(Bucket="bob-parts", Key="stolen", UploadId=uid6)

# A large upload through boto3's transfer manager (multipart, parts in parallel).
big = os.urandom(int(os.environ.get("BIG_MIB", "40")) * MIB + 3)
path = os.path.join(os.environ["OUT"], "big.bin")
with open(path, "wb") as f:
    f.write(big)
config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
ann.upload_file(path, BUCKET, "big/big.bin", Config=config)
head = ann.head_object(Bucket=BUCKET, Key="big/big.bin")
parts_count = -(-len(big) // (8 * MIB))
assert head["ContentLength"] == len(big) and head["ETag"].endswith('-%d"' % parts_count), head
back = os.path.join(os.environ["OUT"], "big.back")
ann.download_file(BUCKET, "big/big.bin", back)
with open(back, "rb") as f:
    assert hashlib.sha256(f.read()).digest() == hashlib.sha256(big).digest()
os.remove(back)
expected["/buckets/%s/big/big.bin" % BUCKET] = hashlib.sha256(big).hexdigest()

with open(os.path.join(os.environ["OUT"], "expected.json"), "w") as f:
    json.dump(expected, f)
print("ok")
