# Run by s3.rs against a real cluster's S3 gateway: requests a well-behaved
# client never sends (malformed XML, bodies that are not the length they
# declare, declared lengths past S3's limit), each refused with a clear S3
# error, and nothing stored. Each step asserts; prints "ok" at the end.
# Env: S3_URL, ANN_ID, ANN_SECRET.
import base64, hashlib, os, socket, urllib.parse, zlib
import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"]
HOST, PORT = urllib.parse.urlsplit(URL).hostname, urllib.parse.urlsplit(URL).port
GIB = 1 << 30
BUCKET = "ann-bad"
ann = boto3.client("s3", endpoint_url=URL, aws_access_key_id=os.environ["ANN_ID"],
                   aws_secret_access_key=os.environ["ANN_SECRET"], region_name="us-east-1",
                   config=Config(retries={"max_attempts": 1}))


class Signer(S3SigV4Auth):
    """SigV4 with the x-amz-content-sha256 given, whatever the body (botocore
    would hash the body it holds, and here the bytes go out by hand)."""

    def __init__(self, payload_hash):
        super().__init__(Credentials(os.environ["ANN_ID"], os.environ["ANN_SECRET"]), "s3", "us-east-1")
        self.payload_hash = payload_hash

    def payload(self, request):
        return self.payload_hash


def signed_head(method, target, headers, payload_hash):
    """The head of a signed request, as bytes to send."""
    request = AWSRequest(method=method, url=URL + target, headers=headers)
    Signer(payload_hash).add_auth(request)
    head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, target, HOST, PORT)
    head += "".join("%s: %s\r\n" % item for item in request.headers.items() if item[0].lower() != "host")
    return head.encode() + b"\r\n"


def answer_on(sock):
    """An answer's head and (S3 error) body read from `sock`."""
    answer = b""
    while b"\r\n\r\n" not in answer or (b"<Error>" in answer and b"</Error>" not in answer):
        piece = sock.recv(65536)
        if not piece:
            break
        answer += piece
    return answer


def send(method, target, headers, body, payload_hash, half_close=False):
    """One signed request over a socket of its own, `body` sent as it is
    whatever the headers say: (status, the answer's text)."""
    with socket.create_connection((HOST, PORT), timeout=30) as sock:
        sock.sendall(signed_head(method, target, headers, payload_hash) + body)
        if half_close:
            # The body ends here (the connection's write side closes), short of
            # what Content-Length declared.
            sock.shutdown(socket.SHUT_WR)
        answer = answer_on(sock)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer.decode(errors="replace")


def refused(answer, status, code):
    assert answer[0] == status and "<Code>%s</Code>" % code in answer[1], (status, code, answer)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def aws_chunked(data):
    """`data` in one aws-chunked chunk (unsigned), with a CRC32 trailer."""
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    return b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % (len(data), data, crc)


def chunked_headers(body, decoded_length):
    return {"Content-Length": str(len(body)), "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(decoded_length), "x-amz-trailer": "x-amz-checksum-crc32"}


def absent(key):
    try:
        ann.head_object(Bucket=BUCKET, Key=key)
    except ClientError as error:
        return error.response["Error"]["Code"] in ("404", "NoSuchKey")
    return False


def keys():
    return [o["Key"] for o in ann.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


ann.create_bucket(Bucket=BUCKET)
data = os.urandom(1000)

# A well-formed request of each kind goes through (the helpers send what S3 takes).
assert send("PUT", "/%s/plain" % BUCKET, {"Content-Length": "1000"}, data, sha256(data))[0] == 200
body = aws_chunked(data)
assert send("PUT", "/%s/chunked" % BUCKET, chunked_headers(body, 1000), body,
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER")[0] == 200
chunked = ann.get_object(Bucket=BUCKET, Key="chunked")
assert chunked["Body"].read() == data
# aws-chunked sent with HTTP's chunked framing, no Content-Length: the decoded length declares it.
streamed = {name: value for name, value in chunked_headers(body, 1000).items() if name != "Content-Length"}
streamed["Transfer-Encoding"] = "chunked"
framed = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
assert send("PUT", "/%s/streamed" % BUCKET, streamed, framed, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")[0] == 200
assert ann.get_object(Bucket=BUCKET, Key="streamed")["Body"].read() == data
ann.delete_object(Bucket=BUCKET, Key="streamed")
# aws-chunked is how the body was sent, not an encoding of the object (S3 keeps none).
assert "ContentEncoding" not in chunked, chunked
assert sorted(keys()) == ["chunked", "plain"]

# Content-Length lies. A body declared 5 GiB that ends after 1000 bytes (signed with the
# hash of what it promised, or unsigned as a presigned PUT sends it): IncompleteBody.
for payload_hash in ("ab" * 32, "UNSIGNED-PAYLOAD"):
    refused(send("PUT", "/%s/short" % BUCKET, {"Content-Length": str(5 * GIB)}, data, payload_hash,
                 half_close=True), 400, "IncompleteBody")
# Declared past S3's 5 GiB: EntityTooLarge before any byte is read.
refused(send("PUT", "/%s/huge" % BUCKET, {"Content-Length": str(5 * GIB + 1)}, data, "UNSIGNED-PAYLOAD",
             half_close=True), 400, "EntityTooLarge")
# More bytes than declared: the body is the declared 10 bytes (HTTP's framing), which are not
# what was signed, or not what Content-MD5 names.
refused(send("PUT", "/%s/long" % BUCKET, {"Content-Length": "10"}, data, sha256(data)),
        400, "XAmzContentSHA256Mismatch")
refused(send("PUT", "/%s/long" % BUCKET,
             {"Content-Length": "10", "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()},
             data, "UNSIGNED-PAYLOAD"), 400, "BadDigest")
# An empty Content-MD5 names no digest: InvalidDigest. A body of no declared length (plain
# HTTP chunked, no Content-Length): 411 MissingContentLength, as S3 answers.
refused(send("PUT", "/%s/nomd5" % BUCKET, {"Content-Length": "1000", "Content-MD5": ""}, data, sha256(data)),
        400, "InvalidDigest")
http_chunked = b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"
refused(send("PUT", "/%s/nolength" % BUCKET, {"Transfer-Encoding": "chunked"}, http_chunked, "UNSIGNED-PAYLOAD"),
        411, "MissingContentLength")
# aws-chunked (what boto3 sends by default): a decoded length that is not the chunks' total.
for declared, code in ((5 * GIB, "IncompleteBody"), (1001, "IncompleteBody"), (999, "InvalidRequest"),
                       (10, "InvalidRequest")):
    refused(send("PUT", "/%s/chunked-lie" % BUCKET, chunked_headers(body, declared), body,
                 "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), 400, code)
refused(send("PUT", "/%s/chunked-lie" % BUCKET, chunked_headers(body, 5 * GIB + 1), body,
             "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), 400, "EntityTooLarge")
for key in ("short", "huge", "long", "nomd5", "nolength", "chunked-lie"):
    assert absent(key), key
assert sorted(keys()) == ["chunked", "plain"]
# An object is not clobbered by a refused write of its key.
refused(send("PUT", "/%s/plain" % BUCKET, {"Content-Length": str(5 * GIB)}, b"new", "UNSIGNED-PAYLOAD",
             half_close=True), 400, "IncompleteBody")
assert ann.get_object(Bucket=BUCKET, Key="plain")["Body"].read() == data

# The same lies in UploadPart: no part is stored.
upload = ann.create_multipart_upload(Bucket=BUCKET, Key="parts")["UploadId"]
part = "/%s/parts?partNumber=1&uploadId=%s" % (BUCKET, upload)
refused(send("PUT", part, {"Content-Length": str(5 * GIB)}, data, "UNSIGNED-PAYLOAD", half_close=True),
        400, "IncompleteBody")
refused(send("PUT", part, {"Content-Length": str(5 * GIB + 1)}, data, "UNSIGNED-PAYLOAD", half_close=True),
        400, "EntityTooLarge")
refused(send("PUT", part, {"Content-Length": "10"}, data, sha256(data)), 400, "XAmzContentSHA256Mismatch")
refused(send("PUT", part, {"Transfer-Encoding": "chunked"}, http_chunked, "UNSIGNED-PAYLOAD"), 411,
        "MissingContentLength")
refused(send("PUT", part, chunked_headers(body, 999), body, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        400, "InvalidRequest")
assert ann.list_parts(Bucket=BUCKET, Key="parts", UploadId=upload).get("Parts", []) == []
ann.abort_multipart_upload(Bucket=BUCKET, Key="parts", UploadId=upload)

# Malformed XML: DeleteObjects deletes nothing (CompleteMultipartUpload's: boto3_multipart.py).
for xml in (b"<Delete><Object><Key>plain</Key></Object>", b"not xml at all",
            b"<Delete>" + b"<Object><Key>plain</Key></Object>" * 1001 + b"</Delete>"):
    headers = {"Content-Length": str(len(xml)), "Content-MD5": base64.b64encode(hashlib.md5(xml).digest()).decode()}
    refused(send("POST", "/%s?delete" % BUCKET, headers, xml, sha256(xml)), 400, "MalformedXML")
assert sorted(keys()) == ["chunked", "plain"]

# Server-side encryption is not served: asking for it (SSE-C, SSE-S3, SSE-KMS) is refused, nothing stored.
sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
for sse in (sse_c, {"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "key"}):
    try:
        ann.put_object(Bucket=BUCKET, Key="secret", Body=b"s", **sse)
        raise AssertionError("an SSE request was accepted")
    except ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidArgument", error.response
try:
    ann.get_object(Bucket=BUCKET, Key="plain", **sse_c)
    raise AssertionError("an SSE-C read was accepted")
except ClientError as error:
    assert error.response["Error"]["Code"] == "InvalidArgument", error.response
assert sorted(keys()) == ["chunked", "plain"]

# A PUT refused before its body was read (a failed condition), whose client
# sent the body anyway: boto3 asks `Expect: 100-continue` and sends the body
# after a second without an answer, as on a loaded machine. The body must not
# be read as the next request on the connection: the answer closes it.
with socket.create_connection((HOST, PORT), timeout=30) as sock:
    sock.sendall(signed_head("PUT", "/%s/plain" % BUCKET, {"Content-Length": "1000", "Expect": "100-continue",
                                                          "If-Match": '"0000"'}, sha256(data)))
    first = answer_on(sock)
    assert first.startswith(b"HTTP/1.1 412 ") and b"<Code>PreconditionFailed</Code>" in first, first
    assert b"\r\nconnection: close\r\n" in first.lower(), first
    # The body after the answer (the client's wait ran out first), then the
    # next request: it must not be misread (the connection is closed).
    try:
        sock.sendall(data + signed_head("HEAD", "/%s/plain" % BUCKET, {}, sha256(b"")))
        second = answer_on(sock)
    except OSError:
        second = b""
    assert second == b"" or second.startswith(b"HTTP/1.1 200 "), second
assert ann.get_object(Bucket=BUCKET, Key="plain")["Body"].read() == data, "the refused PUT stored nothing"

# Left for s3.rs to list with `dfs ls`: "chunked" and "plain" only.
print("ok")
