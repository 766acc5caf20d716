"""Fixtures for the S3 store tests: a real S3 server (Ceph RADOS Gateway) on loopback.

`s3_server` starts a single-node Ceph cluster once per test session with
`scripts/s3-test-server.sh` and stops it at the end. Without the Ceph binaries the tests
that use it are skipped on a developer machine, and fail under `CI=true`: CI must run
them (`apt-get install -y ceph-mon ceph-osd radosgw ceph-common`).

For end-to-end tests elsewhere:

    def test_something(s3_settings):          # Settings pointed at a fresh bucket
        store = open_store(s3_settings)

    def test_other(s3_server, tmp_path):
        settings = s3_server.settings(s3_server.make_bucket(), STORYWORLD_HOME=str(tmp_path))
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storyworld.config import Settings, load_settings

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "s3-test-server.sh"
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
APT_LINE = "apt-get install -y ceph-mon ceph-osd radosgw ceph-common"

# Fixed keys the start script gives its users (test-only, loopback-only).
ACCESS_KEY = "STORYWORLDTESTACCESS"
SECRET_KEY = "storyworld-test-secret-key-not-for-production"
OTHER_ACCESS_KEY = "STORYWORLDTESTOTHER0"
OTHER_SECRET_KEY = "storyworld-test-other-secret-not-for-production"


@dataclass(frozen=True)
class S3TestServer:
    """A running RADOS Gateway. `other_*` is a second user who owns nothing."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    other_access_key: str = OTHER_ACCESS_KEY
    other_secret_key: str = OTHER_SECRET_KEY
    region: str = "auto"
    directory: Path = Path()

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A plain boto3 client for arranging and inspecting test state."""
        return _client(
            self.endpoint,
            self.region,
            access_key or self.access_key,
            secret_key or self.secret_key,
        )

    def make_bucket(self, prefix: str = "sw") -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, **extra: str) -> dict[str, str]:
        """Environment variables for a StoryWorld process using this server and bucket."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_BUCKET": bucket,
            "S3_REGION": self.region,
            "S3_ACCESS_KEY": self.access_key,
            "S3_SECRET_KEY": self.secret_key,
            "S3_PATH_STYLE": "true",
            **extra,
        }

    def settings(self, bucket: str, **extra: str) -> Settings:
        """StoryWorld settings for this server and bucket; `extra` adds or overrides
        environment names (e.g. `S3_PREFIX="run-1"`, `STORYWORLD_HOME=...`)."""
        return load_settings(env=self.env(bucket, **extra), env_file=None)


@functools.cache
def _client(endpoint: str, region: str, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Ceph's admin sockets are Unix sockets, whose paths are limited to 107 bytes.
    d = tmp_path_factory.mktemp("ceph")
    if len(str(d)) > 60:
        d = Path(tempfile.mkdtemp(prefix="sw-ceph-", dir="/tmp"))
    return d


def _missing_binaries() -> list[str]:
    return [b for b in CEPH_BINARIES if shutil.which(b) is None]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3TestServer]:
    """A Ceph RADOS Gateway on loopback for the whole session (about 2 s to start)."""
    missing = _missing_binaries()
    if missing:
        reason = f"S3 test server needs Ceph ({', '.join(missing)} not found); {APT_LINE}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    directory = _server_dir(tmp_path_factory)
    errors = []
    # A port found free can be taken by someone else before the daemons bind it; a
    # second try with fresh ports covers that.
    for _ in range(2):
        mon_port, rgw_port = _free_ports(2)
        proc = subprocess.run(
            [str(SCRIPT), "start", str(directory), str(mon_port), str(rgw_port)],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if proc.returncode == 0:
            break
        errors.append(proc.stderr[-4000:])
    else:
        pytest.fail("S3 test server did not start:\n" + "\n".join(errors), pytrace=False)
    server = S3TestServer(endpoint=proc.stdout.strip().splitlines()[-1], directory=directory)
    try:
        yield server
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], timeout=60, check=False)


@pytest.fixture
def s3_bucket(s3_server: S3TestServer) -> str:
    """A fresh, empty bucket on the test server."""
    return s3_server.make_bucket()


@pytest.fixture
def s3_settings(s3_server: S3TestServer, s3_bucket: str, tmp_path: Path) -> Settings:
    """Settings pointed at the test server and a fresh bucket, home in `tmp_path`."""
    return s3_server.settings(s3_bucket, STORYWORLD_HOME=str(tmp_path / "home"))
