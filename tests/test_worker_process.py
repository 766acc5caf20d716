"""Real `storyworld-worker` processes: SIGKILL, SIGTERM, dropped and restarted Redis, TLS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import free_port, make_env, start_redis_server
from test_e2e_local import wait_for

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime

pytestmark = pytest.mark.slow

LONG = "[1s] Short start.\n\n[30s] A long, slow shot that takes the worker a while.\n\n[1s] End."


def start_worker(env: dict[str, str], name: str, *extra: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storyworld.worker.cli",
            "--backends",
            "animatic",
            "--worker-id",
            name,
            "--env-file",
            "",
            *extra,
        ],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def busy_with(rt, worker: str) -> str | None:  # type: ignore[no-untyped-def]
    """The id of the long beat's job once `worker` holds its lease."""
    for member in rt.queue.r.zrange(rt.queue.keys.inflight, 0, -1):
        job, _, holder = member.decode().partition("|")
        if holder == worker and "-b001-" in job:
            return job
    return None


def finished(rt, ep: str, timeout: float = 90):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        d = services.episode_detail(rt, ep)
        return d if d["state"] in ("completed", "failed", "cancelled") else None

    return wait_for(check, timeout=timeout)


def test_sigkilled_worker_loses_nothing(runtime, background, test_env) -> None:
    ep = services.create_episode(runtime, plan_script(LONG), script=LONG, size=(640, 360), fps=24)[
        "id"
    ]
    background.engine(runtime)
    w1 = start_worker(test_env, "doomed")
    try:
        job_id = wait_for(lambda: busy_with(runtime, "doomed"), timeout=60)
        w1.kill()  # SIGKILL while it holds the long beat
        w1.wait(10)
        killed_at = time.monotonic()
        w2 = start_worker(test_env, "survivor")
        try:
            rerun = wait_for(
                lambda: runtime.queue.r.zscore(runtime.queue.keys.inflight, f"{job_id}|survivor"),
                timeout=45,
            )
            assert rerun and time.monotonic() - killed_at < 45
            d = finished(runtime, ep)
        finally:
            w2.send_signal(signal.SIGTERM)
            assert w2.wait(30) == 0
    finally:
        if w1.poll() is None:
            w1.kill()
    assert d["state"] == "completed", d["error"]
    for beat in d["beats"]:
        succeeded = [j for j in beat["jobs"] if j["state"] == "succeeded"]
        assert len(succeeded) == 1
    long_beat = d["beats"][1]
    assert long_beat["jobs"][0]["worker"] == "survivor"
    assert any("lease expired" in h["reason"] for h in d["history"])


def test_sigterm_hands_the_job_back(runtime, background, test_env) -> None:
    ep = services.create_episode(runtime, plan_script(LONG), script=LONG, size=(640, 360), fps=24)[
        "id"
    ]
    background.engine(runtime)
    env = {**test_env, "SHUTDOWN_GRACE_SECONDS": "0.2"}
    w1 = start_worker(env, "leaving")
    job_id = wait_for(lambda: busy_with(runtime, "leaving"), timeout=60)
    w1.send_signal(signal.SIGTERM)
    out = w1.communicate(timeout=30)[0].decode()
    assert w1.returncode == 0, out
    assert "handing job" in out
    # Back at the front of the queue at once (no lease wait), its delivery not counted.
    assert runtime.queue.r.exists(runtime.queue.keys.worker("leaving")) == 0
    q = runtime.queue
    assert q.r.zscore(q.keys.waiting, job_id) is not None
    assert q.r.lindex(q.keys.wake("animatic"), -1).decode() == job_id  # next to be taken
    assert json.loads(q.r.hget(q.keys.data, job_id))["delivery"] == 1
    background.worker(runtime)
    d = finished(runtime, ep)
    assert d["state"] == "completed"
    assert [j["state"] for j in d["beats"][1]["jobs"]] == ["succeeded"]


def test_malformed_job_is_dead_lettered_by_the_worker(runtime, test_env) -> None:
    bad = '{"v": 1, "job_id": "broken-1", "backend": "animatic", "spec": {"text": ""}}'
    runtime.queue.inject("broken-1", bad, "animatic")
    w = start_worker(test_env, "reader", "--max-jobs", "1", "--idle-exit", "3")
    try:
        wait_for(lambda: runtime.queue.r.hlen(runtime.queue.keys.dead) == 1, timeout=30)
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(30)
    dead = services.dead_letters(runtime)
    assert dead[0]["job_id"] == "broken-1"
    assert "job field" in dead[0]["reason"]
    assert dead[0]["payload"] == bad


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_redis_server(tmp_path / "redis", port)
    holder = {"proc": proc, "port": port}
    yield holder
    holder["proc"].terminate()
    holder["proc"].wait(10)


def test_dropped_and_restarted_redis(tmp_path: Path, own_redis, background) -> None:
    url = f"redis://127.0.0.1:{own_redis['port']}/0"
    settings = load_settings(env=make_env(tmp_path, url, "drop"), env_file=None)
    with open_runtime(settings, role="test") as rt:
        background.engine(rt)
        w = background.worker(rt)
        wait_for(lambda: rt.queue.r.exists(rt.queue.keys.worker(w.id)))
        # 1. Every client connection is cut while the worker waits for work.
        rt.queue.r.client_kill_filter(_type="normal", skipme=True)
        ep = services.create_episode(rt, plan_script("[1s] After the cut."), script="x")["id"]
        assert finished(rt, ep, 60)["state"] == "completed"
        # 2. The server goes away and comes back empty.
        own_redis["proc"].terminate()
        own_redis["proc"].wait(10)
        time.sleep(0.5)  # a real outage: nothing answers for a while
        own_redis["proc"] = start_redis_server(tmp_path / "redis2", own_redis["port"])
        ep2 = services.create_episode(rt, plan_script("[1s] After the restart."), script="y")
        assert finished(rt, ep2["id"], 90)["state"] == "completed"
        background.stop_all()


def _make_certs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=storyworld-test-ca",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="openssl not installed")
def test_rediss_with_certificate_verification(tmp_path: Path, background) -> None:
    certs = tmp_path / "certs"
    _make_certs(certs)
    port = free_port()
    try:
        proc = start_redis_server(
            tmp_path / "tls",
            free_port(),
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(certs / "server.pem"),
            "--tls-key-file",
            str(certs / "server.key"),
            "--tls-ca-cert-file",
            str(certs / "ca.pem"),
            "--tls-auth-clients",
            "no",
        )
    except RuntimeError:
        pytest.skip("this redis-server has no TLS support")
    try:
        url = f"rediss://localhost:{port}/0"
        env = make_env(tmp_path, url, "tls", REDIS_CA_CERT=str(certs / "ca.pem"))
        settings = load_settings(env=env, env_file=None)
        with open_runtime(settings, role="test") as rt:
            background.engine(rt)
            background.worker(rt)
            ep = services.create_episode(rt, plan_script("[1s] Over TLS."), script="t")["id"]
            assert finished(rt, ep, 60)["state"] == "completed"
            background.stop_all()
        # Without the CA the certificate is refused, with a clear message.
        bad = load_settings(env=make_env(tmp_path, url, "tls2"), env_file=None)
        from storyworld.queue import connect, describe_redis_error

        clients = connect(bad, role="test")
        with pytest.raises(redis.ConnectionError) as err:
            clients.fast.ping()
        assert "TLS" in describe_redis_error(err.value, clients.url_for_display)
        clients.close()
    finally:
        proc.terminate()
        proc.wait(10)
