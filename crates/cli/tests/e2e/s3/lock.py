# Run by s3.rs with boto3 against a real cluster's S3 gateway: object lock on
# top of versions (CreateBucket with object lock, Put/GetObjectLockConfiguration,
# retention GOVERNANCE and COMPLIANCE with the bypass, legal holds), what the
# gateway refuses, and bad input. Every step asserts; prints "ok" at the end.
# Env: S3_URL, ANN_ID, ANN_SECRET, BOB_ID, BOB_SECRET.
import datetime
import os
import time

from s3util import client, error_code

ann = client(os.environ["ANN_ID"], os.environ["ANN_SECRET"])
B = "ann-lock"
def now():
    return datetime.datetime.now(datetime.timezone.utc)


later = now() + datetime.timedelta(days=2)

# A bucket without object lock refuses its operations.
ann.create_bucket(Bucket="ann-plain")
conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
assert error_code(lambda: ann.put_object_lock_configuration(Bucket="ann-plain", ObjectLockConfiguration=conf)) \
    == "InvalidBucketState"
assert error_code(lambda: ann.get_object_lock_configuration(Bucket="ann-plain")) \
    == "ObjectLockConfigurationNotFoundError"
ann.put_object(Bucket="ann-plain", Key="k", Body=b"x")
assert error_code(lambda: ann.get_object_retention(Bucket="ann-plain", Key="k")) == "InvalidRequest"
locked_put = lambda: ann.put_object(Bucket="ann-plain", Key="n", Body=b"x", ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=later)
assert error_code(locked_put) == "InvalidRequest"
assert error_code(lambda: ann.head_object(Bucket="ann-plain", Key="n")) == "404"

# A bucket with object lock has versioning, for good.
ann.create_bucket(Bucket=B, ObjectLockEnabledForBucket=True)
assert ann.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"
suspend = lambda: ann.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
assert error_code(suspend) == "InvalidBucketState"
for bad, code in [({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
                  ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidRetentionPeriod"),
                  ({"Mode": "SOMETIMES", "Days": 1}, "MalformedXML")]:
    bad_conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": bad}}
    assert error_code(lambda: ann.put_object_lock_configuration(Bucket=B, ObjectLockConfiguration=bad_conf)) == code
# Nothing stored by the refusals: no default retention yet.
assert ann.get_object_lock_configuration(Bucket=B)["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}
ann.put_object_lock_configuration(Bucket=B, ObjectLockConfiguration=conf)
assert ann.get_object_lock_configuration(Bucket=B)["ObjectLockConfiguration"] == conf

# The default retention applies to a write that names none.
v1 = ann.put_object(Bucket=B, Key="k", Body=b"one")["VersionId"]
head = ann.head_object(Bucket=B, Key="k")
assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] > later - datetime.timedelta(days=1, minutes=1)
assert error_code(lambda: ann.delete_object(Bucket=B, Key="k", VersionId=v1)) == "AccessDenied"
# A delete marker is allowed (the version stays); GOVERNANCE yields to the bypass.
marker = ann.delete_object(Bucket=B, Key="k")["VersionId"]
ann.delete_object(Bucket=B, Key="k", VersionId=marker)
assert ann.get_object(Bucket=B, Key="k")["Body"].read() == b"one"
ann.delete_object(Bucket=B, Key="k", VersionId=v1, BypassGovernanceRetention=True)
assert error_code(lambda: ann.head_object(Bucket=B, Key="k")) == "404"

# COMPLIANCE: no bypass, no shortening, no mode change.
soon = now() + datetime.timedelta(seconds=15)
v2 = ann.put_object(Bucket=B, Key="c", Body=b"two", ObjectLockMode="COMPLIANCE",
                    ObjectLockRetainUntilDate=soon)["VersionId"]
retention = ann.get_object_retention(Bucket=B, Key="c", VersionId=v2)["Retention"]
assert retention["Mode"] == "COMPLIANCE"
shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": soon - datetime.timedelta(seconds=2)}
assert error_code(lambda: ann.put_object_retention(Bucket=B, Key="c", VersionId=v2, Retention=shorter,
                                                   BypassGovernanceRetention=True)) == "AccessDenied"
governance = {"Mode": "GOVERNANCE", "RetainUntilDate": later}
assert error_code(lambda: ann.put_object_retention(Bucket=B, Key="c", VersionId=v2, Retention=governance)) \
    == "AccessDenied"
assert error_code(lambda: ann.delete_object(Bucket=B, Key="c", VersionId=v2, BypassGovernanceRetention=True)) \
    == "AccessDenied"
assert error_code(lambda: ann.put_object_retention(Bucket=B, Key="c", VersionId=v2,
                                                   Retention={"Mode": "NEVER", "RetainUntilDate": later})) \
    == "MalformedXML"
assert ann.get_object(Bucket=B, Key="c", VersionId=v2)["Body"].read() == b"two"

# Legal hold: no delete while ON, whatever the bypass; OFF lets it go (after its retention).
v3 = ann.put_object(Bucket=B, Key="h", Body=b"three", ObjectLockLegalHoldStatus="ON",
                    ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=soon)["VersionId"]
assert ann.get_object_legal_hold(Bucket=B, Key="h")["LegalHold"]["Status"] == "ON"
assert error_code(lambda: ann.delete_object(Bucket=B, Key="h", VersionId=v3, BypassGovernanceRetention=True)) \
    == "AccessDenied"
assert error_code(lambda: ann.put_object_legal_hold(Bucket=B, Key="h", LegalHold={"Status": "MAYBE"})) \
    == "MalformedXML"
ann.put_object_legal_hold(Bucket=B, Key="h", VersionId=v3, LegalHold={"Status": "OFF"})
assert ann.get_object_legal_hold(Bucket=B, Key="h")["LegalHold"]["Status"] == "OFF"
ann.delete_object(Bucket=B, Key="h", VersionId=v3, BypassGovernanceRetention=True)

# Once the COMPLIANCE date has passed, the version can be deleted.
time.sleep(max(0.0, (soon - now()).total_seconds() + 1))
ann.delete_object(Bucket=B, Key="c", VersionId=v2)
assert ann.list_object_versions(Bucket=B).get("Versions") is None
print("ok")
