# Run by s3.rs with boto3 against a real cluster's S3 gateway: a bucket's CORS
# rules (PutBucketCors, GetBucketCors, DeleteBucketCors), kept by its owner
# only; a browser's preflight (OPTIONS, unsigned) answered from them; and the
# Access-Control-* headers on a signed answer to a request with an Origin.
# A preflight grants nothing: the request it clears is still signed and
# checked. Every step asserts; prints "ok" at the end.
# Env: S3_URL, ANN_ID, ANN_SECRET, BOB_ID, BOB_SECRET.
import os
import urllib.request

from s3util import URL, client, error_code

ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
bob = client(os.environ["BOB_ID"], os.environ["BOB_SECRET"])
B = "ann-cors"


def preflight(path, headers):
    """An unsigned OPTIONS request: (status, its Access-Control-* headers)."""
    request = urllib.request.Request(URL + path, method="OPTIONS", headers=headers)
    try:
        with urllib.request.urlopen(request) as answer:
            status, got = answer.status, answer.headers
    except urllib.error.HTTPError as error:
        status, got = error.code, error.headers
    return status, {k.lower(): v for k, v in got.items() if k.lower().startswith("access-control-")}


ann.create_bucket(Bucket=B)
ann.put_object(Bucket=B, Key="page.txt", Body=b"hello")
assert error_code(lambda: ann.get_bucket_cors(Bucket=B)) == "NoSuchCORSConfiguration"
# No rules: every preflight is refused.
assert preflight("/%s/page.txt" % B, {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}) \
    == (403, {})

rules = {"CORSRules": [
    {"AllowedOrigins": ["https://*.example"], "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["x-amz-*", "Content-Type"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
]}
ann.put_bucket_cors(Bucket=B, CORSConfiguration=rules)
got = ann.get_bucket_cors(Bucket=B)["CORSRules"]
assert [r["AllowedOrigins"] for r in got] == [["https://*.example"], ["*"]], got
assert got[0]["AllowedHeaders"] == ["x-amz-*", "content-type"] and got[0]["MaxAgeSeconds"] == 600, got

# Only the bucket's owner reads or changes them.
assert error_code(lambda: bob.get_bucket_cors(Bucket=B)) == "AccessDenied"
assert error_code(lambda: bob.put_bucket_cors(Bucket=B, CORSConfiguration=rules)) == "AccessDenied"
assert error_code(lambda: bob.delete_bucket_cors(Bucket=B)) == "AccessDenied"
# Rules S3 refuses are refused, and the rules kept stay.
for bad in ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
            {"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]}):
    assert error_code(lambda: ann.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": [bad]})) \
        == "InvalidRequest"
assert error_code(lambda: ann.put_bucket_cors(
    Bucket=B, CORSConfiguration={"CORSRules": [rules["CORSRules"][1]] * 101})) == "MalformedXML"
assert len(ann.get_bucket_cors(Bucket=B)["CORSRules"]) == 2

# Preflights: the first rule that allows origin, method and every header.
status, headers = preflight("/%s/page.txt" % B, {
    "Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "x-amz-date, content-type"})
assert status == 200, (status, headers)
assert headers == {"access-control-allow-origin": "https://app.example",
                   "access-control-allow-methods": "GET, PUT",
                   "access-control-allow-headers": "x-amz-date, content-type",
                   "access-control-expose-headers": "ETag", "access-control-max-age": "600"}, headers
assert preflight("/%s/page.txt" % B, {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                     "Access-Control-Request-Headers": "authorization"})[0] == 403
assert preflight("/%s/page.txt" % B, {"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"}) \
    == (403, {})
status, headers = preflight("/%s" % B, {"Origin": "https://evil.test", "Access-Control-Request-Method": "HEAD"})
assert (status, headers["access-control-allow-origin"]) == (200, "*"), (status, headers)
# Without an Origin or a method it is no preflight: 400.
assert preflight("/%s/page.txt" % B, {"Origin": "https://app.example"})[0] == 400
assert preflight("/%s/page.txt" % B, {})[0] == 400

# A signed request with an Origin: its answer carries the rule's headers;
# from an origin no rule allows, none.
def with_origin(origin):
    def add(request, **kwargs):
        request.headers["Origin"] = origin
    return add


ann.meta.events.register("before-sign.s3.GetObject", with_origin("https://app.example"))
answer = ann.get_object(Bucket=B, Key="page.txt")
assert answer["Body"].read() == b"hello"
assert answer["ResponseMetadata"]["HTTPHeaders"]["access-control-allow-origin"] == "https://app.example"
other = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
other.meta.events.register("before-sign.s3.GetObject", with_origin("https://evil.test"))
answer = other.get_object(Bucket=B, Key="page.txt")
assert "access-control-allow-origin" not in answer["ResponseMetadata"]["HTTPHeaders"]
# A preflight grants nothing: the unsigned GET it cleared is still refused, and so is
# bob's signed read of ann's private object.
request = urllib.request.Request(URL + "/%s/page.txt" % B, headers={"Origin": "https://app.example"})
try:
    urllib.request.urlopen(request)
    raise AssertionError("an unsigned GET was answered")
except urllib.error.HTTPError as error:
    assert error.code == 403 and b"<Code>AccessDenied</Code>" in error.read(), error.code
bob.meta.events.register("before-sign.s3.GetObject", with_origin("https://app.example"))
assert error_code(lambda: bob.get_object(Bucket=B, Key="page.txt")) == "AccessDenied"

# Rules are the bucket's own: another bucket of ann's answers no preflight.
ann.create_bucket(Bucket=B + "-other")
assert preflight("/%s-other/page.txt" % B, {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}) \
    == (403, {})

# DeleteBucketCors: gone, and preflights refused again.
ann.delete_bucket_cors(Bucket=B)
assert error_code(lambda: ann.get_bucket_cors(Bucket=B)) == "NoSuchCORSConfiguration"
assert preflight("/%s/page.txt" % B, {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}) \
    == (403, {})
print("ok")
