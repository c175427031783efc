# What the boto3 scripts here share (imported from the script's directory).
import os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"]


def client(key_id, secret, **config):
    """A boto3 S3 client of the gateway with this key, trying each call once."""
    return boto3.client("s3", endpoint_url=URL, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, **config))


def error_code(call):
    """The S3 error code `call` fails with (it must fail)."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def expect_error(call, *codes):
    """Asserts that `call` fails with one of `codes`, saying what it got if not."""
    try:
        call()
    except ClientError as error:
        got = error.response["Error"]
        assert got["Code"] in codes, f"expected {codes}, got {got} (HTTP {error.response['ResponseMetadata'].get('HTTPStatusCode')})"
        return
    raise AssertionError(f"expected {codes}: the call succeeded")
