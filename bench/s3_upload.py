"""Upload throughput: `S3Store.put_file` against boto3's plain `upload_file`.

    .venv/bin/python bench/s3_upload.py [--size-mb 50] [--reps 7]

Starts a throwaway Ceph RADOS Gateway on loopback (scripts/s3-test-server.sh; needs
`apt-get install -y ceph-mon ceph-osd radosgw ceph-common`), or uses `--endpoint` with
`--access-key`/`--secret-key`/`--bucket` for another server. Each repetition uploads the
same file once per contender, in turn, to a fresh key, and deletes it afterwards. The
store's time includes computing the SHA-256 it records; boto3's does not.

Contenders:
- `store`: `S3Store.put_file` (R2-safe client, SHA-256, multipart above the threshold).
- `boto3 default`: `client.upload_file` with boto3's default client and transfer
  settings (which, since boto3 1.36, include CRC32 checksums that R2 refuses).
- `boto3 r2-safe`: `client.upload_file` with the store's client settings but boto3's
  default transfer settings (8 MiB parts, 10 threads).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from storyworld.config import Secret
from storyworld.storage.s3 import S3Store

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "s3-test-server.sh"
TEST_ACCESS_KEY = "STORYWORLDTESTACCESS"
TEST_SECRET_KEY = "storyworld-test-secret-key-not-for-production"
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boto3_client(endpoint: str, access: str, secret: str, r2_safe: bool) -> Any:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        **(
            {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            if r2_safe
            else {}
        ),
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="auto",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=config,
    )


def run(args: argparse.Namespace, endpoint: str, access: str, secret: str) -> str:
    """Run the benchmark and return a Markdown table."""
    bucket = args.bucket or f"bench-{uuid.uuid4().hex[:8]}"
    plain = _boto3_client(endpoint, access, secret, r2_safe=False)
    safe = _boto3_client(endpoint, access, secret, r2_safe=True)
    if not args.bucket:
        safe.create_bucket(Bucket=bucket)
    stores = {
        f"store {chunk:g} MiB x {threads}" if len(args.variants) > 1 else "store": S3Store(
            bucket,
            endpoint=endpoint,
            access_key=Secret(access),
            secret_key=Secret(secret),
            path_style=True,
            multipart_threshold_mb=args.threshold_mb,
            multipart_chunk_mb=chunk,
            max_concurrency=threads,
        )
        for chunk, threads in args.variants
    }
    size = args.size_mb * MiB
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        src.write_bytes(os.urandom(size))

        def with_store(store: S3Store) -> Callable[[str], None]:
            return lambda key: store.put_file(key, src) and None

        def with_boto3(client: Any) -> Callable[[str], None]:
            return lambda key: client.upload_file(
                str(src), bucket, key, ExtraArgs={"ContentType": "video/mp4"}
            )

        contenders = {
            **{name: with_store(store) for name, store in stores.items()},
            "boto3 default": with_boto3(plain),
            "boto3 r2-safe": with_boto3(safe),
        }
        # One unmeasured round first: connection pools, RGW's first writes.
        for name, upload in contenders.items():
            upload(f"warmup/{name}")
            safe.delete_object(Bucket=bucket, Key=f"warmup/{name}")
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for rep in range(args.reps):
            for name, upload in contenders.items():
                key = f"bench/{rep}/{name.replace(' ', '-')}.mp4"
                start = time.perf_counter()
                upload(key)
                times[name].append(time.perf_counter() - start)
                safe.delete_object(Bucket=bucket, Key=key)
                print(f"rep {rep + 1}/{args.reps} {name}: {times[name][-1]:.3f} s", file=sys.stderr)
    return _table(times, size, args)


def _table(times: dict[str, list[float]], size: int, args: argparse.Namespace) -> str:
    lines = [
        f"{args.size_mb} MiB file, {args.reps} repetitions; store: multipart threshold "
        f"{args.threshold_mb:g} MiB, "
        + ", ".join(f"{c:g} MiB parts x {t} threads" for c, t in args.variants),
        "",
        "| contender | median s | min s | max s | median MiB/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(
            f"| {name} | {med:.3f} | {min(ts):.3f} | {max(ts):.3f} | {size / MiB / med:.1f} |"
        )
    return "\n".join(lines)


def _variants(text: str) -> list[tuple[float, int]]:
    out = []
    for item in text.split(","):
        chunk, _, threads = item.strip().partition("x")
        out.append((float(chunk), int(threads)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threshold-mb", type=float, default=16)
    parser.add_argument(
        "--variants",
        type=_variants,
        default=[(8.0, 10)],
        help="store settings to compare, PART_MiBxTHREADS,... (default: 8x10, the store's)",
    )
    parser.add_argument("--endpoint", help="use this S3 server instead of starting Ceph")
    parser.add_argument("--access-key", default=TEST_ACCESS_KEY)
    parser.add_argument("--secret-key", default=TEST_SECRET_KEY)
    parser.add_argument("--bucket", help="an existing bucket (default: create one)")
    args = parser.parse_args(argv)

    if args.endpoint:
        print(run(args, args.endpoint, args.access_key, args.secret_key))
        return 0
    with tempfile.TemporaryDirectory(prefix="sw-bench-ceph-", dir="/tmp") as d:
        ports = [str(_free_port()), str(_free_port())]
        started = subprocess.run(
            [str(SCRIPT), "start", d, *ports], capture_output=True, text=True, timeout=240
        )
        if started.returncode != 0:
            print(started.stderr, file=sys.stderr)
            return 1
        try:
            endpoint = started.stdout.strip().splitlines()[-1]
            print(run(args, endpoint, TEST_ACCESS_KEY, TEST_SECRET_KEY))
        finally:
            subprocess.run([str(SCRIPT), "stop", d], timeout=60, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
