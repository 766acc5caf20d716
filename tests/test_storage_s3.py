"""The S3 store against a real S3 server (Ceph RADOS Gateway, see s3_fixtures.py).

Tests marked `s3` need the server; the others check configuration and error mapping
without a network.
"""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from storyworld.config import ConfigError, Secret, Settings
from storyworld.storage import (
    StorageError,
    clip_key,
    episode_key,
    keyframe_key,
    open_store,
    settings_key,
    sha256_file,
)
from storyworld.storage.s3 import S3Store

s3 = pytest.mark.s3

MiB = 1024 * 1024


def _file(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _store(settings: Settings) -> S3Store:
    assert isinstance(open_store(settings), S3Store)
    # Few retries: a test that expects an error should not wait out the backoff.
    return S3Store.from_settings(settings, max_attempts=2)


class _Interrupted(Exception):
    """Raised from a progress callback to cut an upload short."""


def _interrupt_after(limit: int) -> Any:
    def progress(sent: int) -> None:
        if sent >= limit:
            raise _Interrupted(f"stopped after {sent} bytes")

    return progress


def _sent_headers(store: S3Store) -> list[tuple[str, dict[str, str]]]:
    """Record (method, headers) of every request the store's client sends."""
    seen: list[tuple[str, dict[str, str]]] = []

    def text(value: str | bytes) -> str:
        return value.decode() if isinstance(value, bytes) else value

    def hook(request: Any, **kwargs: Any) -> None:
        seen.append((request.method, {k.lower(): text(v) for k, v in request.headers.items()}))

    store._client.meta.events.register("before-send.s3", hook)
    return seen


# -- with the server -------------------------------------------------------------------


@s3
def test_put_and_get_round_trip_with_checksum(s3_server, s3_settings, tmp_path):
    store = _store(s3_settings)
    src = _file(tmp_path / "clip.mp4", 300_000)
    key = clip_key("ep1", 3, 2)

    put = store.put_file(key, src, metadata={"Backend": "animatic"})

    assert put.key == key
    assert put.size == 300_000
    assert put.sha256 == sha256_file(src)
    assert put.content_type == "video/mp4"
    assert put.seconds > 0 and put.bytes_per_s > 0
    assert put.metadata == {"backend": "animatic"}
    raw = s3_server.client().head_object(Bucket=store.bucket, Key=key)
    assert raw["ContentType"] == "video/mp4"
    assert raw["ContentLength"] == 300_000
    assert raw["Metadata"] == {"sha256": put.sha256, "backend": "animatic"}

    assert store.head(key) == put.__class__(
        key=key,
        size=300_000,
        sha256=put.sha256,
        content_type="video/mp4",
        metadata={"backend": "animatic"},
    )
    got = store.get_file(key, tmp_path / "out" / "clip.mp4")
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == src.read_bytes()
    assert got.sha256 == put.sha256 and got.size == put.size
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "clip.mp4"]


@s3
def test_keys_prefix_and_content_types(s3_server, s3_bucket, tmp_path):
    settings = s3_server.settings(s3_bucket, STORAGE_URL=f"s3://{s3_bucket}/runs/7")
    store = _store(settings)
    assert store.prefix == "runs/7"
    png = _file(tmp_path / "k.png", 1000)
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"seed": 1}))
    store.put_file(keyframe_key("ep", 0, 1), png)
    store.put_file(settings_key("ep", 0, 1), js)
    store.put_file(episode_key("ep"), _file(tmp_path / "e.mp4", 1000))

    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(o["Key"] for o in listing) == [
        "runs/7/episodes/ep/beats/000/attempt-1/keyframe.png",
        "runs/7/episodes/ep/beats/000/attempt-1/settings.json",
        "runs/7/episodes/ep/episode.mp4",
    ]
    types = {
        o["Key"].rsplit("/", 1)[1]: client.head_object(Bucket=s3_bucket, Key=o["Key"])[
            "ContentType"
        ]
        for o in listing
    }
    assert types == {
        "keyframe.png": "image/png",
        "settings.json": "application/json",
        "episode.mp4": "video/mp4",
    }


@s3
def test_requests_carry_no_checksum_trailers_or_acl(s3_server, s3_bucket, tmp_path):
    """R2 refuses boto3's default CRC trailers (boto3 >= 1.36) and has no ACLs. Ceph
    accepts both, so look at what is sent, for single and multipart uploads."""
    settings = s3_server.settings(s3_bucket, S3_MULTIPART_THRESHOLD_MB="5")
    store = _store(settings)
    seen = _sent_headers(store)
    store.put_file("small.mp4", _file(tmp_path / "a.mp4", 10_000))
    store.put_file("large.mp4", _file(tmp_path / "b.mp4", 11 * MiB))
    store.get_file("large.mp4", tmp_path / "c.mp4")

    assert {m for m, _ in seen} >= {"PUT", "POST", "GET"}
    for _, headers in seen:
        assert "authorization" in headers and "AWS4-HMAC-SHA256" in headers["authorization"]
        forbidden = [
            h
            for h in headers
            if h.startswith(
                (
                    "x-amz-checksum",
                    "x-amz-sdk-checksum",
                    "x-amz-acl",
                    "x-amz-trailer",
                    "x-amz-grant",
                )
            )
        ]
        assert forbidden == []
        assert "aws-chunked" not in headers.get("content-encoding", "")
    # Bodies are not hashed again for the signature (the sha256 metadata covers them).
    assert {h["x-amz-content-sha256"] for m, h in seen if m == "PUT"} == {"UNSIGNED-PAYLOAD"}


@s3
def test_multipart_upload_of_20_mb(s3_server, s3_bucket, tmp_path):
    settings = s3_server.settings(s3_bucket, S3_MULTIPART_THRESHOLD_MB="5")
    store = _store(settings)
    src = _file(tmp_path / "big.mp4", 20 * MiB, seed=7)
    sent: list[int] = []

    put = store.put_file(episode_key("big"), src, progress=sent.append)

    assert put.size == 20 * MiB and put.sha256 == sha256_file(src)
    assert sent[-1] == 20 * MiB
    raw = s3_server.client().head_object(Bucket=s3_bucket, Key=episode_key("big"))
    assert "-" in raw["ETag"], "expected a multipart ETag (md5-of-parts-N)"
    assert raw["Metadata"]["sha256"] == put.sha256
    got = store.get_file(episode_key("big"), tmp_path / "back.mp4")
    assert got.sha256 == put.sha256
    assert sha256_file(tmp_path / "back.mp4") == put.sha256


@s3
def test_interrupted_multipart_upload_leaves_nothing(s3_server, s3_bucket, tmp_path):
    settings = s3_server.settings(s3_bucket, S3_MULTIPART_THRESHOLD_MB="5")
    store = _store(settings)
    src = _file(tmp_path / "big.mp4", 20 * MiB)
    key = clip_key("ep", 1, 1)

    with pytest.raises(_Interrupted):
        store.put_file(key, src, progress=_interrupt_after(10 * MiB))

    client = s3_server.client()
    assert store.head(key) is None
    assert client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    # The multipart upload was aborted: no parts left behind to be billed for.
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    # And the key can be uploaded afterwards.
    assert store.put_file(key, src).sha256 == sha256_file(src)


@s3
def test_interrupted_single_upload_leaves_previous_object(s3_server, s3_settings, tmp_path):
    store = _store(s3_settings)
    key = clip_key("ep", 2, 1)
    first = store.put_file(key, _file(tmp_path / "one.mp4", 1 * MiB, seed=1))

    with pytest.raises(_Interrupted):
        store.put_file(
            key, _file(tmp_path / "two.mp4", 2 * MiB, seed=2), progress=_interrupt_after(MiB)
        )

    assert store.head(key) == first.__class__(
        key=key, size=first.size, sha256=first.sha256, content_type="video/mp4"
    )
    store.get_file(key, tmp_path / "back.mp4")
    assert (tmp_path / "back.mp4").read_bytes() == (tmp_path / "one.mp4").read_bytes()


@s3
def test_get_detects_a_tampered_object(s3_server, s3_settings, tmp_path):
    store = _store(s3_settings)
    key = clip_key("ep", 0, 1)
    put = store.put_file(key, _file(tmp_path / "a.mp4", 5000, seed=1))
    # Someone replaces the bytes but keeps the recorded checksum.
    s3_server.client().put_object(
        Bucket=store.bucket,
        Key=key,
        Body=_file(tmp_path / "b.mp4", 5000, seed=2).read_bytes(),
        Metadata={"sha256": put.sha256},
        ContentType="video/mp4",
    )
    dest = tmp_path / "out.mp4"
    dest.write_bytes(b"previous")

    with pytest.raises(StorageError, match="corrupt: checksum mismatch") as info:
        store.get_file(key, dest)

    assert not info.value.transient
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "out.mp4"]
    assert store.get_file(key, dest, verify=False).sha256 == put.sha256
    assert dest.read_bytes() == (tmp_path / "b.mp4").read_bytes()


@s3
def test_missing_objects_and_delete(s3_settings, tmp_path):
    store = _store(s3_settings)
    assert store.head("episodes/none/episode.mp4") is None
    with pytest.raises(StorageError, match="not found") as info:
        store.get_file("episodes/none/episode.mp4", tmp_path / "x.mp4")
    assert not info.value.transient
    assert not (tmp_path / "x.mp4").exists()
    store.delete("episodes/none/episode.mp4")  # absent: no error

    store.put_file("episodes/e/episode.mp4", _file(tmp_path / "e.mp4", 10))
    store.delete("episodes/e/episode.mp4")
    assert store.head("episodes/e/episode.mp4") is None


@s3
def test_presigned_link_downloads(s3_server, s3_bucket, tmp_path):
    store = _store(s3_server.settings(s3_bucket, S3_PRESIGN_EXPIRY="120", S3_PREFIX="p"))
    src = _file(tmp_path / "clip.mp4", 70_000)
    key = clip_key("ep", 4, 1)
    store.put_file(key, src)

    url = store.url_for(key)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert s3_server.secret_key not in url
    resp = httpx.get(url)
    assert resp.status_code == 200
    assert resp.content == src.read_bytes()
    assert resp.headers["content-type"] == "video/mp4"

    assert parse_qs(urlsplit(store.url_for(key, expires_s=60)).query)["X-Amz-Expires"] == ["60"]
    with pytest.raises(StorageError, match="expire"):
        store.url_for(key, expires_s=8 * 24 * 3600)


@s3
def test_tampered_or_wrongly_signed_links_are_refused(s3_server, s3_settings, tmp_path):
    store = _store(s3_settings)
    store.put_file("episodes/a/episode.mp4", _file(tmp_path / "a.mp4", 100, seed=1))
    store.put_file("episodes/b/episode.mp4", _file(tmp_path / "b.mp4", 100, seed=2))
    url = store.url_for("episodes/a/episode.mp4")
    assert httpx.get(url).status_code == 200

    other_key = url.replace("/episodes/a/", "/episodes/b/")
    assert httpx.get(other_key).status_code == 403
    sig = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    forged = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    assert httpx.get(forged).status_code == 403
    longer = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200")
    assert longer != url and httpx.get(longer).status_code == 403

    wrong = S3Store.from_settings(s3_settings, secret_key=Secret("not-the-secret-at-all"))
    assert httpx.get(wrong.url_for("episodes/a/episode.mp4")).status_code == 403


@s3
def test_public_base_url_links(s3_server, s3_bucket, tmp_path):
    # A public bucket stands in for an R2 custom domain: anyone may GET.
    s3_server.client().put_bucket_policy(
        Bucket=s3_bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{s3_bucket}/*",
                    }
                ],
            }
        ),
    )
    base = f"{s3_server.endpoint}/{s3_bucket}/"
    store = _store(s3_server.settings(s3_bucket, S3_PUBLIC_BASE_URL=base, S3_PREFIX="pub"))
    src = _file(tmp_path / "k.png", 2000)
    store.put_file(keyframe_key("ep", 1, 1), src)

    url = store.url_for(keyframe_key("ep", 1, 1))
    assert url == f"{base}pub/episodes/ep/beats/001/attempt-1/keyframe.png"
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == src.read_bytes()
    assert resp.headers["content-type"] == "image/png"


@s3
def test_check_passes_and_leaves_nothing(s3_server, s3_settings):
    store = _store(s3_settings)
    store.check()
    assert s3_server.client().list_objects_v2(Bucket=store.bucket)["KeyCount"] == 0


@s3
def test_check_reports_a_missing_bucket(s3_server):
    store = _store(s3_server.settings("sw-no-such-bucket"))
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert f"S3 bucket 'sw-no-such-bucket' does not exist at {s3_server.endpoint}" in message
    assert "S3_BUCKET" in message
    assert not info.value.transient
    _assert_no_secrets(message, s3_server.access_key, s3_server.secret_key)


@s3
def test_check_reports_an_unknown_access_key(s3_server, s3_bucket):
    store = S3Store.from_settings(
        s3_server.settings(s3_bucket),
        access_key=Secret("AKNOTAREALKEY0000000"),
        secret_key=Secret("a-secret-nobody-registered-1"),
        max_attempts=1,
    )
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert "access key is not recognised" in message and "S3_ACCESS_KEY" in message
    assert not info.value.transient
    _assert_no_secrets(message, "AKNOTAREALKEY0000000", "a-secret-nobody-registered-1")
    _assert_no_secrets(
        repr(store) + store.describe(), "AKNOTAREALKEY0000000", "a-secret-nobody-registered-1"
    )


@s3
def test_check_reports_a_wrong_secret(s3_server, s3_bucket):
    wrong = "a-wrong-secret-nobody-registered-2"
    store = S3Store.from_settings(
        s3_server.settings(s3_bucket), secret_key=Secret(wrong), max_attempts=1
    )
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert "S3_SECRET_KEY does not match S3_ACCESS_KEY" in message
    assert not info.value.transient
    _assert_no_secrets(message, s3_server.access_key, wrong)


@s3
def test_check_reports_no_write_permission(s3_server, s3_bucket):
    # The second user's keys are valid, but the bucket belongs to the first user.
    settings = s3_server.settings(
        s3_bucket,
        S3_ACCESS_KEY=s3_server.other_access_key,
        S3_SECRET_KEY=s3_server.other_secret_key,
    )
    store = _store(settings)
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert f"may not write to bucket {s3_bucket!r}" in message
    assert not info.value.transient
    _assert_no_secrets(message, s3_server.other_access_key, s3_server.other_secret_key)


# -- without a server ------------------------------------------------------------------


def _assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def _settings(**env: str) -> Settings:
    from storyworld.config import load_settings

    base = {
        "S3_BUCKET": "media",
        "S3_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
        "S3_ACCESS_KEY": "AKIDEXAMPLE123456789",
        "S3_SECRET_KEY": "sEcReT/example+key0",
    }
    return load_settings(env={**base, **env}, env_file=None)


def test_check_reports_an_unreachable_endpoint():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = S3Store.from_settings(
        _settings(S3_ENDPOINT=f"http://127.0.0.1:{port}"),
        max_attempts=1,
        connect_timeout_s=2,
    )
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{port}" in message
    assert "S3_ENDPOINT" in message
    assert info.value.transient
    _assert_no_secrets(message, "AKIDEXAMPLE123456789", "sEcReT/example+key0")


def test_client_settings_work_on_r2_and_aws():
    store = S3Store.from_settings(_settings(S3_PATH_STYLE="true"))
    config = store._client.meta.config
    assert config.signature_version == "s3v4"
    assert config.region_name == "auto"
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] >= 3
    assert config.connect_timeout and config.read_timeout

    aws = S3Store.from_settings(_settings(S3_ENDPOINT="", S3_REGION="auto"))
    assert aws._client.meta.config.s3["addressing_style"] == "auto"
    assert "amazonaws.com" in aws._client.meta.endpoint_url


def test_open_store_reads_storage_url_and_settings():
    store = open_store(_settings(STORAGE_URL="s3://clips/prod/v1", S3_PRESIGN_EXPIRY="900"))
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.presign_expiry_s) == ("clips", "prod/v1", 900)
    assert store.full_key("episodes/e/episode.mp4") == "prod/v1/episodes/e/episode.mp4"
    from_bucket = open_store(_settings(S3_PREFIX="/pre/"))
    assert isinstance(from_bucket, S3Store)
    assert (from_bucket.bucket, from_bucket.prefix) == ("media", "pre")
    assert from_bucket._transfer_config.multipart_threshold == 16 * MiB


def test_describe_and_repr_hide_secrets():
    store = S3Store.from_settings(_settings(S3_PREFIX="p"))
    line = store.describe()
    assert line == (
        "s3 bucket media/p at https://acct.r2.cloudflarestorage.com (region auto, presigned links)"
    )
    _assert_no_secrets(
        line + repr(store) + str(vars(store)), "AKIDEXAMPLE123456789", "sEcReT/example+key0"
    )


def test_public_url_is_quoted_and_not_signed():
    store = S3Store.from_settings(
        _settings(S3_PUBLIC_BASE_URL="https://media.example.com/", S3_PREFIX="v")
    )
    assert store.url_for("episodes/my ep/episode.mp4") == (
        "https://media.example.com/v/episodes/my%20ep/episode.mp4"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3_ENDPOINT": "acct.r2.cloudflarestorage.com"}, "S3_ENDPOINT must be a URL"),
        ({"S3_ENDPOINT": "https://acct.r2.cloudflarestorage.com/media"}, "must not contain"),
        ({"S3_SECRET_KEY": ""}, "S3_SECRET_KEY is not set"),
        ({"S3_ACCESS_KEY": ""}, "S3_ACCESS_KEY is not set"),
        ({"S3_PRESIGN_EXPIRY": "0"}, "S3_PRESIGN_EXPIRY"),
        ({"S3_MULTIPART_THRESHOLD_MB": "0"}, "S3_MULTIPART_THRESHOLD_MB"),
        ({"STORAGE_URL": "s3:///prefix"}, "STORAGE_URL has no bucket"),
    ],
)
def test_misconfiguration_is_reported_in_words(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_store(_settings(**env))
    _assert_no_secrets(str(info.value), "AKIDEXAMPLE123456789", "sEcReT/example+key0")


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (_client_error(503, "SlowDown"), True),
        (_client_error(500, "InternalError"), True),
        (_client_error(429, "TooManyRequests"), True),
        (_client_error(400, "RequestTimeout"), True),
        (_client_error(403, "AccessDenied"), False),
        (_client_error(403, "SignatureDoesNotMatch"), False),
        (_client_error(404, "NoSuchBucket"), False),
        (EndpointConnectionError(endpoint_url="https://x"), True),
        (ReadTimeoutError(endpoint_url="https://x"), True),
    ],
)
def test_errors_are_classified_transient_or_not(exc, transient):
    store = S3Store.from_settings(_settings())
    err = store._error(exc, "upload failed")
    assert isinstance(err, StorageError)
    assert err.transient is transient
    assert str(err).startswith("upload failed: ")
