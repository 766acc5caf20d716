"""The S3 store: Cloudflare R2 in production, AWS S3 or any S3-compatible server.

The client is configured so that one code path works on R2 and AWS:

- signature v4, region `auto` by default (R2), path-style addressing when asked;
- checksums only `when_required`: since boto3 1.36 the SDK adds CRC trailers to every
  upload by default, which R2 (and older S3-compatible servers) reject;
- no ACL headers (R2 has no ACLs; buckets are private, links are presigned or public);
- request bodies are not hashed a second time for the signature (UNSIGNED-PAYLOAD);
- botocore's `standard` retry mode: throttling, 5xx and connection errors are retried
  with exponential backoff and jitter; connect and read timeouts are bounded.

Every object carries its SHA-256 in its metadata (`x-amz-meta-sha256`) so a download
can be verified end to end, whichever way the object was uploaded (single PUT or
multipart, whose ETag is not a digest of the content).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from storyworld.config import ConfigError, Secret, Settings, redact
from storyworld.storage.base import (
    ArtifactStore,
    ProgressCallback,
    StorageError,
    StoredObject,
    content_type_for,
    sha256_file,
)

__all__ = ["S3Store"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600
_SHA_META = "sha256"
_CHECK_PREFIX = ".storyworld-check"

# Error codes that mean "the credentials are wrong", as AWS, R2 and Ceph spell them.
_BAD_KEY_CODES = {"InvalidAccessKeyId", "InvalidToken", "ExpiredToken", "Unauthorized"}
_BAD_SECRET_CODES = {"SignatureDoesNotMatch"}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "TooManyRequests",
    "RequestLimitExceeded",
}


_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def _session() -> boto3.session.Session:
    """One boto3 session for the process (call with `_SESSION_LOCK` held).

    Building a session loads the service models (~0.3 s); clients made from one are
    thread-safe, but making clients is not, hence the lock. Not boto3's default session,
    which other code may configure.
    """
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    return _SESSION


def _validate(
    bucket: str,
    endpoint: str,
    access_key: Secret,
    secret_key: Secret,
    presign_expiry_s: int,
    multipart_threshold_mb: float,
    retry_mode: str,
) -> None:
    """Refuse settings that cannot work, saying which one and how to fix it."""
    if not bucket:
        raise ConfigError("S3_BUCKET is not set (or use STORAGE_URL=s3://bucket/prefix)")
    if bool(access_key) != bool(secret_key):
        missing = "S3_SECRET_KEY" if access_key else "S3_ACCESS_KEY"
        raise ConfigError(f"{missing} is not set; set both S3_ACCESS_KEY and S3_SECRET_KEY")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "S3_ENDPOINT must be a URL such as "
                f"https://<account>.r2.cloudflarestorage.com (got {endpoint!r})"
            )
        if parts.path.strip("/"):
            raise ConfigError(
                "S3_ENDPOINT must not contain the bucket or a path; put the bucket in "
                f"S3_BUCKET and the path in S3_PREFIX (got {endpoint!r})"
            )
    if not 0 < presign_expiry_s <= MAX_PRESIGN_EXPIRY_S:
        raise ConfigError(f"S3_PRESIGN_EXPIRY must be between 1 and {MAX_PRESIGN_EXPIRY_S} seconds")
    if multipart_threshold_mb <= 0:
        raise ConfigError("S3_MULTIPART_THRESHOLD_MB must be positive")
    if retry_mode not in ("standard", "adaptive", "legacy"):
        raise ConfigError("retry mode must be standard, adaptive or legacy")


def _client_config(
    region_name: str | None,
    path_style: bool,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_attempts: int,
    retry_mode: str,
    max_pool_connections: int,
) -> Config:
    """botocore settings that work on R2 and AWS (see the module docstring)."""
    return Config(
        region_name=region_name,
        signature_version="s3v4",
        s3={
            "addressing_style": "path" if path_style else "auto",
            # Without a Content-MD5 or CRC header (`when_required` sends none), botocore
            # SHA-256-hashes every request body to sign it: a second pass over each
            # upload. The body is covered by TLS on the way and, end to end, by the
            # signed x-amz-meta-sha256 that get_file verifies; R2 and AWS accept
            # UNSIGNED-PAYLOAD.
            "payload_signing_enabled": False,
        },
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Attempts in all, the first included: throttling, 5xx and connection errors
        # are retried with exponential backoff and jitter.
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        max_pool_connections=max_pool_connections,
    )


class S3Store(ArtifactStore):
    """Artifacts in an S3 bucket, under an optional key prefix.

    Links are made on demand by `url_for` and never stored: presigned GETs, or plain
    URLs under `public_base_url` (an R2 custom domain or public bucket). The tuning
    arguments (part size, threads, timeouts, attempts) have no environment names; their
    defaults suit R2 over a WAN link.
    """

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str = "",
        region: str = "auto",
        access_key: Secret | None = None,
        secret_key: Secret | None = None,
        prefix: str = "",
        path_style: bool = False,
        public_base_url: str = "",
        presign_expiry_s: int = 3600,
        multipart_threshold_mb: float = 16,
        multipart_chunk_mb: float = 8,
        max_concurrency: int = 10,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 5,
        retry_mode: str = "standard",
    ) -> None:
        access_key = access_key or Secret("")
        secret_key = secret_key or Secret("")
        _validate(
            bucket,
            endpoint,
            access_key,
            secret_key,
            presign_expiry_s,
            multipart_threshold_mb,
            retry_mode,
        )
        self.bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self.region = region or "auto"
        self.prefix = prefix.strip("/")
        self.path_style = path_style
        self.public_base_url = public_base_url.rstrip("/")
        self.presign_expiry_s = presign_expiry_s
        self._secrets = (access_key, secret_key)
        self._transfer_config = TransferConfig(
            multipart_threshold=int(multipart_threshold_mb * MiB),
            # S3 and R2 refuse parts under 5 MiB (except the last); R2 also wants every
            # part but the last to be the same size, which s3transfer does.
            multipart_chunksize=max(5 * MiB, int(multipart_chunk_mb * MiB)),
            max_request_concurrency=max_concurrency,
            io_chunksize=1 * MiB,
        )
        # `auto` is R2's region; on AWS without an endpoint it is no region at all, so let
        # botocore start at us-east-1 and follow the bucket's region redirect.
        region_name = None if (self.region == "auto" and not self.endpoint) else self.region
        config = _client_config(
            region_name,
            path_style,
            connect_timeout_s,
            read_timeout_s,
            max_attempts,
            retry_mode,
            max_pool_connections=max(10, max_concurrency + 2),
        )
        with _SESSION_LOCK:
            self._client: Any = _session().client(
                "s3",
                endpoint_url=self.endpoint or None,
                aws_access_key_id=access_key.get() or None,
                aws_secret_access_key=secret_key.get() or None,
                config=config,
            )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> S3Store:
        """The store described by `STORAGE_URL=s3://bucket/prefix` or `S3_BUCKET` and
        `S3_PREFIX`, with the other `S3_*` settings. `overrides` go to the constructor
        (tests use them for timeouts and retries)."""
        bucket, prefix = settings.s3_bucket, settings.s3_prefix
        url = settings.storage_url.strip()
        if url.startswith("s3://"):
            parts = urlsplit(url)
            if not parts.netloc:
                raise ConfigError(
                    f"STORAGE_URL has no bucket: use s3://bucket/prefix (got {url!r})"
                )
            bucket = parts.netloc
            prefix = parts.path.strip("/") or prefix
        kwargs: dict[str, Any] = {
            "endpoint": settings.s3_endpoint.strip(),
            "region": settings.s3_region.strip(),
            "access_key": settings.s3_access_key,
            "secret_key": settings.s3_secret_key,
            "prefix": prefix,
            "path_style": settings.s3_path_style,
            "public_base_url": settings.s3_public_base_url.strip(),
            "presign_expiry_s": settings.s3_presign_expiry_s,
            "multipart_threshold_mb": settings.s3_multipart_threshold_mb,
        }
        kwargs.update(overrides)
        return cls(bucket, **kwargs)

    # -- keys and messages -------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The object key in the bucket: the prefix, then the store-relative key."""
        key = key.lstrip("/")
        if not key:
            raise StorageError("empty artifact key")
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def _where(self) -> str:
        return self.endpoint or "AWS S3"

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret.get(), "****")
        return redact(text)

    def _error(self, exc: BaseException, action: str) -> StorageError:
        """Turn a botocore error into a StorageError an operator can act on."""
        transient = False
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            transient = status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
            detail = self._explain(code, status) or f"{code or status}: {err.get('Message', '')}"
        elif isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            detail = "no S3 credentials: set S3_ACCESS_KEY and S3_SECRET_KEY"
        elif isinstance(exc, ConnectionError):
            transient = True
            detail = f"cannot reach the S3 endpoint {self._where} ({exc}); check S3_ENDPOINT"
        elif isinstance(exc, (HTTPClientError, IncompleteReadError)):
            transient = True
            detail = f"connection to {self._where} failed ({exc})"
        else:
            detail = str(exc) or type(exc).__name__
        return StorageError(self._clean(f"{action}: {detail}"), transient=transient)

    def _explain(self, code: str, status: int) -> str:
        if code in ("NoSuchBucket",) or (status == 404 and code in ("", "404")):
            return (
                f"S3 bucket {self.bucket!r} does not exist at {self._where}; "
                "create it or fix S3_BUCKET"
            )
        if code in _BAD_KEY_CODES:
            return (
                f"the access key is not recognised by {self._where} ({code}); "
                "check S3_ACCESS_KEY (and S3_ENDPOINT: is it the right account?)"
            )
        if code in _BAD_SECRET_CODES:
            return (
                f"the request signature was refused by {self._where} ({code}); "
                "S3_SECRET_KEY does not match S3_ACCESS_KEY"
            )
        if code == "AuthorizationHeaderMalformed":
            return f"{self._where} refused the region {self.region!r}; check S3_REGION"
        if code == "AccessDenied" or status == 403:
            return (
                f"access denied to bucket {self.bucket!r} at {self._where}; "
                "the credentials are not allowed to do this"
            )
        return ""

    def describe(self) -> str:
        """One line for logs and the console; no secrets."""
        where = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        link = "public links" if self.public_base_url else "presigned links"
        return f"s3 bucket {where} at {self._where} (region {self.region}, {link})"

    def __repr__(self) -> str:
        return f"S3Store({self.describe()!r})"

    # -- the ArtifactStore interface ----------------------------------------------------

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> StoredObject:
        """Upload `path` under `key`; multipart above the configured threshold.

        An upload that fails or is interrupted leaves no object behind: a single PUT is
        atomic, and a failed multipart upload is aborted (its parts deleted) before this
        returns. `progress`, if given, is called with the bytes sent so far.
        """
        start = time.perf_counter()
        content_type = content_type or content_type_for(key)
        user_meta = _check_metadata(metadata)
        try:
            size = os.path.getsize(path)
            digest = sha256_file(path)
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror}") from None
        extra = {"ContentType": content_type, "Metadata": {**user_meta, _SHA_META: digest}}
        subscribers = [_Progress(progress)] if progress else None
        try:
            with TransferManager(self._client, self._transfer_config) as manager:
                future = manager.upload(
                    str(path),
                    self.bucket,
                    self.full_key(key),
                    extra_args=extra,
                    subscribers=subscribers,
                )
                future.result()
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, f"upload of {key!r} to {self.describe()} failed") from e
        return StoredObject(
            key=key,
            size=size,
            sha256=digest,
            content_type=content_type,
            seconds=time.perf_counter() - start,
            metadata=user_meta,
        )

    def head(self, key: str) -> StoredObject | None:
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as e:
            if _status(e) == 404 and _code(e) != "NoSuchBucket":
                return None
            raise self._error(e, f"cannot look up {key!r}") from e
        except BotoCoreError as e:
            raise self._error(e, f"cannot look up {key!r}") from e
        return self._stored(key, resp)

    def _stored(self, key: str, resp: dict[str, Any], seconds: float = 0.0) -> StoredObject:
        meta = dict(resp.get("Metadata") or {})
        digest = meta.pop(_SHA_META, "")
        return StoredObject(
            key=key,
            size=int(resp.get("ContentLength") or 0),
            sha256=digest,
            content_type=resp.get("ContentType") or content_type_for(key),
            seconds=seconds,
            metadata=meta,
        )

    def get_file(self, key: str, dest: str | Path, *, verify: bool = True) -> StoredObject:
        """Download to `dest` (atomically: a temporary file renamed into place).

        With `verify`, the SHA-256 of the bytes received must equal the one recorded at
        upload; otherwise `dest` is left untouched and StorageError is raised.
        """
        start = time.perf_counter()
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                resp, digest, received = self._download(key, out)
            info = self._stored(key, resp)
            if received != info.size:
                raise StorageError(
                    f"download of {key!r} was cut short ({received} of {info.size} bytes)",
                    transient=True,
                )
            if verify:
                if not info.sha256:
                    raise StorageError(
                        f"artifact {key!r} has no sha256 metadata, so it cannot be verified "
                        "(it was not uploaded by StoryWorld); use verify=False"
                    )
                if digest != info.sha256:
                    raise StorageError(
                        f"artifact {key!r} is corrupt: checksum mismatch "
                        f"(stored {info.sha256[:12]}…, received {digest[:12]}…)"
                    )
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return StoredObject(
            key=key,
            size=info.size,
            sha256=info.sha256 or digest,
            content_type=info.content_type,
            seconds=time.perf_counter() - start,
            metadata=info.metadata,
        )

    def _download(self, key: str, out: Any) -> tuple[dict[str, Any], str, int]:
        h = hashlib.sha256()
        received = 0
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self.full_key(key))
            body = resp["Body"]
            try:
                for block in body.iter_chunks(1 * MiB):
                    h.update(block)
                    out.write(block)
                    received += len(block)
            finally:
                body.close()
        except ClientError as e:
            if _code(e) == "NoSuchKey":
                raise StorageError(f"artifact {key!r} not found in {self.describe()}") from e
            raise self._error(e, f"download of {key!r} failed") from e
        except BotoCoreError as e:
            raise self._error(e, f"download of {key!r} failed") from e
        return resp, h.hexdigest(), received

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as e:
            if _code(e) == "NoSuchKey":
                return
            raise self._error(e, f"cannot delete {key!r}") from e
        except BotoCoreError as e:
            raise self._error(e, f"cannot delete {key!r}") from e

    def url_for(self, key: str, expires_s: int | None = None) -> str:
        """A public URL when `S3_PUBLIC_BASE_URL` is set, else a presigned GET valid for
        `expires_s` (default `S3_PRESIGN_EXPIRY`). Computed locally; no request is made."""
        full = self.full_key(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(full, safe='/')}"
        expires = self.presign_expiry_s if expires_s is None else int(expires_s)
        if not 0 < expires <= MAX_PRESIGN_EXPIRY_S:
            raise StorageError(
                f"a presigned link must expire within 1 to {MAX_PRESIGN_EXPIRY_S} seconds"
            )
        try:
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires
            )
        except BotoCoreError as e:
            raise self._error(e, f"cannot make a link for {key!r}") from e
        return url

    def check(self) -> None:
        """Write, read back and delete a small probe object under the prefix.

        This is the only way to learn that the bucket exists, the credentials are right
        and they may write, in one go; each failure gets its own message.
        """
        probe = f"{_CHECK_PREFIX}/{uuid.uuid4().hex}"
        full = self.full_key(probe)
        what = self.describe()
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=b"storyworld check\n",
                ContentType="text/plain",
            )
        except ClientError as e:
            err = self._error(e, f"storage check failed for {what}")
            denied = _code(e) == "AccessDenied" or _status(e) == 403
            if denied and _code(e) not in _BAD_KEY_CODES | _BAD_SECRET_CODES:
                err = StorageError(
                    self._clean(
                        f"storage check failed for {what}: the credentials may not write to "
                        f"bucket {self.bucket!r}; give them write permission (on R2: an API "
                        "token with Object Read & Write on this bucket)"
                    )
                )
            raise err from e
        except BotoCoreError as e:
            raise self._error(e, f"storage check failed for {what}") from e
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except (BotoCoreError, ClientError) as e:
            raise self._error(
                e, f"storage check failed for {what}: wrote a probe but cannot read it back"
            ) from e
        finally:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full)
            except (BotoCoreError, ClientError) as e:
                log.warning("%s", self._error(e, f"could not delete the check probe {full!r}"))


class _Progress(BaseSubscriber):
    """Adapts s3transfer's per-chunk callbacks (from several threads) to a running total."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._sent = 0
        self._lock = threading.Lock()

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        with self._lock:
            # Negative when a part is retried: s3transfer rewinds its count.
            self._sent += bytes_transferred
            sent = self._sent
        self._callback(sent)


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """S3 user metadata travels in HTTP headers: ASCII only, keys case-insensitive."""
    out: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        key, value = str(k).lower(), str(v)
        if not (key.isascii() and value.isascii()):
            raise StorageError(f"metadata {k!r} must be ASCII to be stored in S3")
        if key == _SHA_META:
            raise StorageError(f"metadata key {k!r} is reserved for the object's checksum")
        out[key] = value
    return out


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
