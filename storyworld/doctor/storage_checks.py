"""Storage: the bucket exists; a probe object is written, read back with its checksum,
fetched through a presigned GET and deleted; R2's settings when the endpoint is R2."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from storyworld.config import ConfigError, Settings
from storyworld.doctor.report import Check, Status
from storyworld.storage import ArtifactStore, LocalStore, StorageError, open_store

__all__ = ["check_storage"]

PROBE_PREFIX = ".storyworld-doctor"


def check_storage(settings: Settings) -> list[Check]:
    try:
        store = open_store(settings)
    except (ConfigError, StorageError) as e:
        return [
            Check(
                "storage.config",
                Status.FAIL,
                str(e),
                fix="set S3_BUCKET, S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY "
                "(or STORAGE_URL=file:///folder)",
            )
        ]
    if isinstance(store, LocalStore):
        try:
            store.check()
        except StorageError as e:
            return [
                Check(
                    "storage.local",
                    Status.FAIL,
                    str(e),
                    fix="make the folder writable or point STORAGE_URL elsewhere",
                )
            ]
        return [
            Check(
                "storage.local",
                Status.OK,
                f"{store.describe()} is writable",
                data={"kind": "local"},
            )
        ]
    out = []
    if _is_r2(settings.s3_endpoint):
        out += _r2_settings(settings, store)
    bucket = _bucket_exists(store)
    out.append(bucket)
    if bucket.status == Status.FAIL:
        return out
    out += _round_trip(store)
    return out


def _is_r2(endpoint: str) -> bool:
    host = urlsplit(endpoint.strip()).hostname or ""
    return host.endswith(".r2.cloudflarestorage.com")


def _r2_settings(settings: Settings, store: Any) -> list[Check]:
    out = []
    if settings.s3_region.strip() != "auto":
        out.append(
            Check(
                "storage.r2_region",
                Status.WARN,
                f"S3_REGION is {settings.s3_region!r}; R2's region is 'auto'",
                fix="set S3_REGION=auto",
            )
        )
    else:
        out.append(Check("storage.r2_region", Status.OK, "R2 endpoint with region auto"))
    cfg = store._client.meta.config
    mode = getattr(cfg, "request_checksum_calculation", None)
    if mode == "when_required":
        out.append(
            Check(
                "storage.r2_checksums",
                Status.OK,
                "checksums only when required (R2 refuses the SDK's default CRC trailers)",
            )
        )
    else:
        out.append(
            Check(
                "storage.r2_checksums",
                Status.FAIL,
                f"checksum mode is {mode!r}; R2 refuses it",
                fix="unset AWS_REQUEST_CHECKSUM_CALCULATION (it must be when_required for R2)",
            )
        )
    return out


def _bucket_exists(store: Any) -> Check:
    try:
        store._client.head_bucket(Bucket=store.bucket)
    except Exception as e:
        err = store._error(e, f"bucket {store.bucket!r}")
        code = _code(e)
        fix = "create the bucket, or fix S3_BUCKET (and S3_ENDPOINT: is it the right account?)"
        if code in ("403", "AccessDenied"):
            fix = (
                "give the credentials access to this bucket (on R2: an API token with "
                "Object Read & Write on it)"
            )
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            fix = "copy S3_ACCESS_KEY and S3_SECRET_KEY again from the provider's console"
        elif not code:
            fix = "check S3_ENDPOINT (scheme, host, port) and that the server is reachable"
        return Check("storage.bucket", Status.FAIL, str(err), fix=fix, data={"code": code})
    return Check(
        "storage.bucket",
        Status.OK,
        f"{store.describe()}: bucket exists",
        data={"kind": "s3", "bucket": store.bucket},
    )


def _code(e: BaseException) -> str:
    resp = getattr(e, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", "") or "")


def _round_trip(store: ArtifactStore) -> list[Check]:
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}.txt"
    body = f"storyworld doctor probe {uuid.uuid4().hex}\n".encode()
    digest = hashlib.sha256(body).hexdigest()
    out: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="sw-doctor-") as tmp:
        src = Path(tmp) / "probe.txt"
        src.write_bytes(body)
        try:
            store.put_file(key, src, content_type="text/plain")
        except StorageError as e:
            return [
                Check(
                    "storage.write",
                    Status.FAIL,
                    str(e),
                    fix="give the credentials write permission on the bucket (on R2: an API token "
                    "with Object Read & Write)",
                )
            ]
        out.append(Check("storage.write", Status.OK, f"wrote a probe object {key}"))
        try:
            try:
                got = store.get_file(key, Path(tmp) / "back.txt", verify=True)
                same = got.sha256 == digest and (Path(tmp) / "back.txt").read_bytes() == body
                out.append(
                    Check(
                        "storage.read",
                        Status.OK if same else Status.FAIL,
                        "read it back, SHA-256 matches" if same else "read back different bytes",
                        fix="the store or a proxy alters objects; check S3_ENDPOINT",
                    )
                )
            except StorageError as e:
                out.append(
                    Check(
                        "storage.read",
                        Status.FAIL,
                        str(e),
                        fix="give the credentials read permission on the bucket",
                    )
                )
            out.append(_presigned(store, key, body))
        finally:
            try:
                store.delete(key)
                gone = store.head(key) is None
                out.append(
                    Check(
                        "storage.delete",
                        Status.OK if gone else Status.FAIL,
                        "deleted the probe" if gone else f"the probe {key} is still there",
                        fix="give the credentials delete permission on the bucket",
                    )
                )
            except StorageError as e:
                out.append(
                    Check(
                        "storage.delete",
                        Status.FAIL,
                        str(e),
                        fix="give the credentials delete permission on the bucket",
                    )
                )
    return out


def _presigned(store: ArtifactStore, key: str, body: bytes) -> Check:
    try:
        url = store.url_for(key, 120)
        resp = httpx.get(url, timeout=15.0)
    except (StorageError, httpx.HTTPError) as e:
        return Check(
            "storage.link",
            Status.FAIL,
            f"cannot fetch a link: {type(e).__name__}",
            fix="check S3_ENDPOINT is reachable from here, and S3_PUBLIC_BASE_URL",
        )
    if resp.status_code == 200 and resp.content == body:
        return Check("storage.link", Status.OK, "a presigned (or public) link downloads it")
    return Check(
        "storage.link",
        Status.FAIL,
        f"the link answered HTTP {resp.status_code}",
        fix="if S3_PUBLIC_BASE_URL is set it must serve this bucket; otherwise check "
        "S3_REGION and the clock (presigned links are signed with both)",
    )
