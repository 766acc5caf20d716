"""The HTTP API against a real isolated deployment (Redis, SQLite, local artifact folder)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from conftest import make_env
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyworld.api.app import create_app
from storyworld.api.server import build_app
from storyworld.config import load_settings
from storyworld.engine.models import Beat, Episode, Transition
from storyworld.engine.runtime import Runtime, open_runtime
from storyworld.queue import Keys
from storyworld.storage import ArtifactStore, StoredObject

SCRIPT = "# Three beats\n\n[1s] A door opens.\n\n[1s] A cat walks in.\n\n[1s] The door closes.\n"
SCRIPT_BEATS = ["A door opens.", "A cat walks in.", "The door closes."]
BAD_SCRIPT = "# Broken\n\n[1s] Fine.\n\n[soon] Not a duration.\n"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as c:
        yield c


def _redis(rt: Runtime) -> redis.Redis:
    return rt.clients.fast


def _create(client: TestClient, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/episodes", json={"script": SCRIPT, **extra})
    assert r.status_code == 201, r.text
    return r.json()


# --------------------------------------------------------------------------- health
def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["ok"] is True
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "ready": True,
        "checks": {"redis": "ok", "database": "ok", "storage": "ok"},
    }


def test_readiness_says_why_without_the_password(tmp_path: Path, key_prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    env = make_env(tmp_path, f"redis://:hunter2secret@127.0.0.1:{port}/0", key_prefix)
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        client = TestClient(create_app(rt))
        r = client.get("/readyz")
        stats = client.get("/v1/queue")
    assert stats.status_code == 503 and "Redis unreachable" in stats.json()["error"]
    assert "hunter2secret" not in stats.text
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False and "Redis unreachable" in body["error"]
    assert body["checks"]["database"] == "ok"
    assert "hunter2secret" not in r.text


# --------------------------------------------------------------------------- episodes
def test_create_episode_records_it_and_wakes_the_engine(
    client: TestClient, runtime: Runtime
) -> None:
    r = client.post(
        "/v1/episodes",
        json={"script": SCRIPT, "title": "Door", "size": "80x64", "fps": 10, "seed": 7},
    )
    assert r.status_code == 201, r.text
    d = r.json()
    assert r.headers["location"] == f"/v1/episodes/{d['id']}"
    assert {k: d[k] for k in ("state", "title", "size", "fps", "seed")} == {
        "state": "planned",
        "title": "Door",
        "size": "80x64",
        "fps": 10,
        "seed": 7,
    }
    assert [b["text"] for b in d["beats"]] == SCRIPT_BEATS
    with runtime.sessions() as s:
        ep = s.get(Episode, d["id"])
        assert ep is not None and (ep.width, ep.height, ep.backend) == (80, 64, "animatic")
        assert len(s.scalars(select(Beat).where(Beat.episode_id == d["id"])).all()) == 3
    wake = _redis(runtime).xrange(runtime.settings.result_queue, "-", "+")
    assert any(b'"type": "wake"' in fields[b"r"] for _id, fields in wake)


def test_invalid_script_is_422_naming_the_line(client: TestClient, runtime: Runtime) -> None:
    r = client.post("/v1/episodes", json={"script": BAD_SCRIPT})
    assert r.status_code == 422
    assert "line 5" in r.json()["error"] and "[soon]" in r.json()["error"]
    r = client.post("/v1/episodes/plan", json={"script": BAD_SCRIPT})
    assert r.status_code == 422 and "line 5" in r.json()["error"]
    with runtime.sessions() as s:
        assert s.scalars(select(Episode)).all() == []


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"backend": "dalle"}, "backend: Input should be 'animatic'"),
        ({"size": "huge"}, "size: String should match pattern"),
        ({"size": "10x10"}, "size: String should match pattern"),
        ({"script": "  \n "}, "the script is empty"),
        ({"script": ""}, "script: String should have at least 1 character"),
        ({"fps": 0}, "fps: Input should be greater than or equal to 1"),
        # Strict types: nothing is coerced.
        ({"fps": True}, "fps: Input should be a valid integer"),
        ({"fps": "12"}, "fps: Input should be a valid integer"),
        ({"steps": 2.5}, "steps: Input should be a valid integer"),
        ({"title": 7}, "title: Input should be a valid string"),
        # Seeds: 0 <= seed < 2^63 (a BIGINT column).
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"seed": 2**63}, "seed: Input should be less than or equal to 9223372036854775807"),
        ({"format": "docx"}, "format"),
        ({"scrip": "typo"}, "scrip"),
    ],
)
def test_bad_options_are_422(client: TestClient, extra: dict[str, Any], words: str) -> None:
    r = client.post("/v1/episodes", json={"script": SCRIPT, **extra})
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]


def test_plan_previews_beats_without_writing(client: TestClient, runtime: Runtime) -> None:
    r = client.post("/v1/episodes/plan", json={"script": SCRIPT})
    assert r.status_code == 200, r.text
    p = r.json()
    assert {k: p[k] for k in ("title", "format", "beats_total", "total_s")} == {
        "title": "Three beats",
        "format": "plain",
        "beats_total": 3,
        "total_s": 3.0,
    }
    assert [b["line"] for b in p["beats"]] == [3, 5, 7]
    assert client.get("/v1/episodes").json() == []


def test_list_detail_and_unknown_ids(client: TestClient) -> None:
    first = _create(client, title="One")
    second = _create(client, title="Two")
    listed = client.get("/v1/episodes").json()
    assert {e["id"] for e in listed} == {first["id"], second["id"]}
    assert all("beats" not in e and e["beats_total"] == 3 for e in listed)
    assert len(client.get("/v1/episodes", params={"limit": 1}).json()) == 1
    d = client.get(f"/v1/episodes/{first['id']}").json()
    assert d["title"] == "One" and len(d["beats"]) == 3 and d["history"]
    for path in ("/v1/episodes/nope", "/v1/episodes/nope/video", "/v1/episodes/nope/cancel"):
        method = client.post if path.endswith("cancel") else client.get
        r = method(path)
        assert r.status_code == 404 and "no episode 'nope'" in r.json()["error"]
    r = client.get(f"/v1/episodes/{first['id']}/beats/9/clip")
    assert r.status_code == 404 and "no beat 9" in r.json()["error"]
    assert client.get("/v1/nothing-here").json() == {"error": "Not Found"}


def test_cancel_then_retry(client: TestClient, runtime: Runtime) -> None:
    d = _create(client)
    # Nothing failed yet: a retry is not a valid state change.
    r = client.post(f"/v1/episodes/{d['id']}/retry")
    assert r.status_code == 409 and "no failed or cancelled beats" in r.json()["error"]

    r = client.post(f"/v1/episodes/{d['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    with runtime.sessions() as s:
        ep = s.get(Episode, d["id"])
        assert ep is not None and ep.state == "cancelled" and ep.finished_at
        assert {b.state for b in ep.beats} == {"cancelled"}
    r = client.post(f"/v1/episodes/{d['id']}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["error"]

    r = client.post(f"/v1/episodes/{d['id']}/retry", json={"beat": 1})
    assert r.status_code == 200, r.text
    with runtime.sessions() as s:
        ep = s.get(Episode, d["id"])
        assert ep is not None and ep.state == "rendering"
        assert [b.state for b in ep.beats] == ["cancelled", "pending", "cancelled"]
    r = client.post(f"/v1/episodes/{d['id']}/retry")
    assert r.status_code == 200 and r.json()["state"] == "rendering"
    with runtime.sessions() as s:
        ep = s.get(Episode, d["id"])
        assert ep is not None and {b.state for b in ep.beats} == {"pending"}
        reasons = s.scalars(select(Transition.reason).where(Transition.entity_id == d["id"])).all()
        assert "cancelled by the operator" in reasons
        assert "retry requested by the operator" in reasons
    r = client.post(f"/v1/episodes/{d['id']}/retry", json={"beat": 7})
    assert r.status_code == 409 and "there is no beat 7" in r.json()["error"]


# --------------------------------------------------------------------------- queue
def _dead_letter(rt: Runtime, job_id: str, payload: str) -> None:
    rt.queue.dead_letter(payload, job_id, "worker-x", f"{job_id} failed on every delivery")


def test_queue_stats_dead_letters_requeue_and_drop(client: TestClient, runtime: Runtime) -> None:
    r_ = _redis(runtime)
    keys = Keys.from_settings(runtime.settings)
    for n in (1, 2, 3):
        job_id = f"job-{n}"
        _dead_letter(runtime, job_id, json.dumps({"job_id": job_id, "backend": "animatic"}))
    _dead_letter(runtime, "job-bad", "not json")

    stats = client.get("/v1/queue").json()
    assert stats["queue"] == runtime.settings.job_queue
    assert (stats["dead"], stats["waiting"]) == (4, 0)
    dead = client.get("/v1/queue/dead").json()
    assert {d["job_id"] for d in dead} == {"job-1", "job-2", "job-3", "job-bad"}
    assert all(d["worker"] == "worker-x" and "every delivery" in d["reason"] for d in dead)

    r = client.post("/v1/queue/dead/requeue", json={})
    assert r.status_code == 422 and "job_ids" in r.json()["error"]
    r = client.post("/v1/queue/dead/requeue", json={"job_ids": ["job-1", "job-bad"]})
    assert r.json() == {"requeued": 1, "refused": ["job-bad"], "unmatched": []}
    assert [x.decode() for x in r_.zrange(keys.waiting, 0, -1)] == ["job-1"]
    assert r_.hlen(keys.dead) == 3

    r = client.post("/v1/queue/dead/drop", json={"job_ids": ["job-bad"]})
    assert r.json() == {"dropped": 1, "unmatched": []}
    for verb in ("requeue", "drop"):
        r = client.post(f"/v1/queue/dead/{verb}", json={"job_ids": ["no-such-job"]})
        assert r.status_code == 404 and "no-such-job" in r.json()["error"]
    r = client.post("/v1/queue/dead/requeue", json={"all": True})
    assert r.json() == {"requeued": 2, "refused": [], "unmatched": []}
    assert r_.llen(runtime.settings.job_queue) == 3 and r_.hlen(keys.dead) == 0

    _dead_letter(runtime, "job-4", "{}")
    dropped = client.post("/v1/queue/dead/drop", json={"all": True}).json()
    assert dropped == {"dropped": 1, "unmatched": []}
    assert client.get("/v1/queue").json()["dead"] == 0


def test_pause_and_resume(client: TestClient, runtime: Runtime) -> None:
    paused_key = Keys.from_settings(runtime.settings).paused
    assert client.post("/v1/queue/pause").json() == {"paused": True}
    assert _redis(runtime).exists(paused_key) == 1
    assert client.get("/v1/queue").json()["paused"] is True
    assert client.post("/v1/queue/resume").json() == {"paused": False}
    assert _redis(runtime).exists(paused_key) == 0


def test_workers_show_heartbeats(client: TestClient, runtime: Runtime, background: Any) -> None:
    w = background.worker(runtime)
    rows = wait_for(lambda: [x for x in client.get("/v1/workers").json() if x["id"] == w.id])
    assert rows[0]["backends"] == "animatic"
    assert rows[0]["gpu"] is None or isinstance(rows[0]["gpu"], dict)


# --------------------------------------------------------------------------- access
def test_bearer_token_guards_v1(runtime: Runtime, test_env: dict[str, str]) -> None:
    from storyworld.config import load_settings

    runtime.settings = load_settings(
        env={**test_env, "API_TOKEN": "s3cret-token-value"}, env_file=None
    )
    client = TestClient(build_app(runtime))
    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = client.get("/v1/episodes", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "s3cret-token-value" not in r.text
    assert client.post("/v1/queue/pause").status_code == 401
    assert _redis(runtime).exists(Keys.from_settings(runtime.settings).paused) == 0
    ok = {"Authorization": "Bearer s3cret-token-value"}
    assert client.get("/v1/episodes", headers=ok).status_code == 200

    runtime.settings = load_settings(env=test_env, env_file=None)
    assert TestClient(build_app(runtime)).get("/v1/episodes").status_code == 200


def test_read_only_refuses_changes(runtime: Runtime) -> None:
    client = TestClient(create_app(runtime, read_only=True))
    assert client.post("/v1/episodes", json={"script": SCRIPT}).status_code == 403
    assert client.post("/v1/queue/pause").json() == {"error": "this API is read-only"}
    assert client.get("/v1/episodes").status_code == 200
    assert client.post("/v1/episodes/plan", json={"script": SCRIPT}).status_code == 200


# --------------------------------------------------------------------------- artifacts
def test_render_through_the_api_and_fetch_the_video(
    client: TestClient, runtime: Runtime, background: Any
) -> None:
    d = _create(client)
    r = client.get(f"/v1/episodes/{d['id']}/video")
    assert r.status_code == 409 and "not composed yet" in r.json()["error"]
    background.engine(runtime)
    background.worker(runtime)

    def finished() -> dict[str, Any] | None:
        e = client.get(f"/v1/episodes/{d['id']}").json()
        return e if e["state"] in ("completed", "failed") else None

    done = wait_for(finished)
    assert done["state"] == "completed", done["error"]
    r = client.get(f"/v1/episodes/{d['id']}/video")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content[4:8] == b"ftyp"
    assert len(r.content) == next(a["size"] for a in done["artifacts"] if a["kind"] == "episode")
    clip = client.get(f"/v1/episodes/{d['id']}/beats/2/clip")
    assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"
    frame = client.get(f"/v1/episodes/{d['id']}/beats/0/keyframe")
    assert frame.status_code == 200 and frame.content.startswith(b"\x89PNG")


class _LinkOnlyStore(ArtifactStore):
    """Stands in for S3: only makes links."""

    kind = "s3"

    def put_file(self, key, path, *, content_type=None, metadata=None) -> StoredObject:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_file(self, key, dest, *, verify=True) -> StoredObject:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def head(self, key: str) -> StoredObject | None:
        return None

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def url_for(self, key: str, expires_s: int | None = None) -> str:
        return f"https://bucket.example/{key}?X-Amz-Expires={expires_s}"

    def check(self) -> None:
        return None


def test_remote_store_redirects(client: TestClient, runtime: Runtime) -> None:
    d = _create(client)
    with runtime.sessions.begin() as s:
        ep = s.get(Episode, d["id"])
        assert ep is not None
        ep.output_key = f"episodes/{d['id']}/episode.mp4"
    runtime.store = _LinkOnlyStore()
    r = client.get(f"/v1/episodes/{d['id']}/video", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == (
        f"https://bucket.example/episodes/{d['id']}/episode.mp4?X-Amz-Expires="
        f"{runtime.settings.s3_presign_expiry_s}"
    )


# --------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_storyworld_serve_starts_and_stops_on_sigterm(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    port = _free_port()
    env = {**os.environ, **make_env(tmp_path, redis_url, key_prefix)}
    env.pop("API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyworld.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lease = Keys(jobs=f"{key_prefix}:jobs", results=f"{key_prefix}:results").engine_lease
    r = redis.Redis.from_url(redis_url)
    try:

        def healthy() -> bool:
            assert proc.poll() is None, proc.communicate()[0].decode()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, interval=0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        wait_for(lambda: r.exists(lease), timeout=10)  # the engine thread dispatches
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        assert r.exists(lease) == 0  # the engine gave its lease back
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        r.close()


# --------------------------------------------------------------------------- round 2
def test_idempotency_key_gives_one_episode_per_key(client: TestClient, runtime: Runtime) -> None:
    first = client.post("/v1/episodes", json={"script": SCRIPT}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    # The same key and body (keys in another order): the same episode, never a second one.
    again = client.post(
        "/v1/episodes",
        content=json.dumps({"title": None, "script": SCRIPT}),
        headers={"Idempotency-Key": "k-1", "Content-Type": "application/json"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/v1/episodes/{first.json()['id']}"
    # Another body with the same key: 409, nothing created.
    other = client.post(
        "/v1/episodes", json={"script": SCRIPT, "fps": 12}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409 and "different request body" in other.json()["error"]
    # A request that fails (422) does not take the key.
    bad = client.post(
        "/v1/episodes", json={"script": BAD_SCRIPT}, headers={"Idempotency-Key": "k-2"}
    )
    assert bad.status_code == 422
    ok = client.post("/v1/episodes", json={"script": SCRIPT}, headers={"Idempotency-Key": "k-2"})
    assert ok.status_code == 201
    with runtime.sessions() as s:
        assert len(s.scalars(select(Episode)).all()) == 2
    too_long = client.post(
        "/v1/episodes", json={"script": SCRIPT}, headers={"Idempotency-Key": "x" * 201}
    )
    assert too_long.status_code == 422


def test_a_body_over_the_limit_is_413(client: TestClient, runtime: Runtime) -> None:
    from storyworld.api.app import MAX_BODY_BYTES

    big = b'{"script": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}'
    r = client.post("/v1/episodes", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # streamed: no Content-Length to refuse early
        yield b'{"script": "'
        for _ in range(MAX_BODY_BYTES // 1_000_000 + 1):
            yield b"a" * 1_000_000
        yield b'"}'

    r = client.post(
        "/v1/episodes/plan", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    with runtime.sessions() as s:
        assert s.scalars(select(Episode)).all() == []


def test_openapi_lists_every_status_a_route_can_answer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}

    def codes(path: str, method: str) -> dict[str, Any]:
        return paths[path][method]["responses"]

    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            responses = op["responses"]
            for code in ("401", "422", "503"):
                assert code in responses, (method, path, code)
            for code, entry in responses.items():
                if code.startswith(("4", "5")):
                    schema = entry["content"]["application/json"]["schema"]
                    assert schema == error_ref, (method, path, code, schema)
            if method == "post" and path != "/v1/episodes/plan":  # every change can be refused
                assert "403" in responses, (method, path)
    assert {"200", "201", "403", "409", "413"} <= set(codes("/v1/episodes", "post"))
    assert {"404", "409"} <= set(codes("/v1/episodes/{episode_id}/retry", "post"))
    assert {"404", "409"} <= set(codes("/v1/episodes/{episode_id}/cancel", "post"))
    assert {"404", "413"} <= set(codes("/v1/queue/dead/requeue", "post"))
    assert {"200", "307", "404", "502"} <= set(codes("/v1/episodes/{episode_id}/video", "get"))
    assert "503" in paths["/readyz"]["get"]["responses"]
    create = spec["components"]["schemas"]["EpisodeCreate"]["properties"]
    seed = next(s for s in create["seed"]["anyOf"] if s.get("type") == "integer")
    assert (seed["minimum"], seed["maximum"]) == (0, 2**63 - 1)
    assert isinstance(seed["maximum"], int)
    header = next(p for p in paths["/v1/episodes"]["post"]["parameters"]
                  if p["name"] == "idempotency-key")  # fmt: skip
    assert header["in"] == "header"
