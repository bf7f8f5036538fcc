"""A real S3 API for tests: moto's server on loopback, reached the way a user reaches S3.

``ENV`` points every botocore client at the server through environment variables only
(``AWS_ENDPOINT_URL`` and placeholder keys, which moto accepts), so specs use plain
``s3://bucket/...`` URLs and s3fs needs no options. ``tests/conftest.py`` puts ``ENV`` in the
environment when the test session starts, before any Ray starts, so Ray workers inherit it; the
server itself starts only when a test asks for the ``s3_server`` fixture.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.net import free_ports

[PORT] = free_ports(1)
ENDPOINT = f"http://127.0.0.1:{PORT}"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What a node's cloud identity would supply; moto accepts any key."""
ENV = {"AWS_ENDPOINT_URL": ENDPOINT, **CREDENTIALS}


@dataclass(frozen=True)
class S3:
    """The running server; ``client`` is a boto3 client that bypasses s3fs and its caches."""

    endpoint: str
    client: object

    def bucket(self, name: str) -> str:
        """Create the bucket ``name`` (if needed) and return its URL, ``s3://name``."""
        existing = {b["Name"] for b in self.client.list_buckets()["Buckets"]}
        if name not in existing:
            self.client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` in ``bucket``, listed by the server itself."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextmanager
def moto_server() -> Iterator[S3]:
    """moto's S3 server on ``ENDPOINT`` for the duration of the block."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=PORT, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server.start()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=ENDPOINT,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        yield S3(ENDPOINT, client)
    finally:
        server.stop()
