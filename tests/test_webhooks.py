"""Webhooks from the engine side, to a receiver on loopback: signed (HMAC-SHA256 of the raw
body), retried after a 500 with backoff, each event received once per id, and a failing
endpoint never holds up rendering."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from storyworld.engine import services
from storyworld.engine.models import WebhookDelivery
from storyworld.engine.planner import plan_script
from storyworld.engine.webhooks import WebhookDispatcher, deliveries, verify
from storyworld.worker.backends.animatic import AnimaticBackend
from storyworld.worker.backends.base import PermanentRenderError

SECRET = "whsec-test-0123456789"
ONE = "# One\n\n[1s] The lamp is lit.\n"
DOOMED = "# Doomed\n\n[1s] The lamp breaks.\n"


class Receiver:
    """An HTTP endpoint on loopback: answers 500 to the first `fail_first` requests."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": body})
                    fail = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ok(self) -> list[dict[str, Any]]:
        """Events of the requests answered 2xx."""
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests[self.fail_first :]]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.close()


class Breaks(AnimaticBackend):
    def render(self, ctx):  # type: ignore[no-untyped-def]
        if "breaks" in ctx.job.spec.text:
            raise PermanentRenderError("the lamp model is gone")
        return super().render(ctx)


def until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_signed_events_retried_after_a_500_and_received_once(runtime, background, receiver):
    hooks = WebhookDispatcher(
        runtime, urls=[receiver.url], secret=SECRET, poll_s=0.05, backoff_base_s=0.05
    ).start()
    try:
        background.engine(runtime)
        background.worker(runtime, backends={"animatic": Breaks(runtime.settings)})
        good = services.create_episode(runtime, plan_script(ONE), script=ONE)
        bad = services.create_episode(runtime, plan_script(DOOMED), script=DOOMED)
        until(lambda: len(receiver.ok()) >= 3)
        # Every request, the refused first one included, is signed over its raw body.
        for r in receiver.requests:
            h = r["headers"]
            assert h["X-StoryWorld-Signature"].startswith("sha256=")
            assert verify(SECRET, r["body"], h["X-StoryWorld-Signature"])
            assert abs(int(h["X-StoryWorld-Timestamp"]) - time.time()) < 300
            assert not verify("another secret", r["body"], h["X-StoryWorld-Signature"])
        events = receiver.ok()
        kinds = {(e["type"], e["data"]["episode_id"]) for e in events}
        assert kinds == {("episode.completed", good["id"]), ("beat.failed", bad["id"]),
                         ("episode.failed", bad["id"])}  # fmt: skip
        # The refused request was sent again (same event id) and is counted once.
        first = json.loads(receiver.requests[0]["body"])
        assert first["id"] in {e["id"] for e in events}
        assert len({e["id"] for e in events}) == len(events) == 3
        assert all(e["id"].startswith("evt_") and e["timestamp"] > 0 for e in events)
        # The receiver answered before the dispatcher records the delivery: await that.

        def delivered() -> list[WebhookDelivery]:
            with runtime.sessions() as s:
                rows = s.scalars(select(WebhookDelivery)).all()
            return rows if {r.state for r in rows} == {"delivered"} else []

        rows = until(delivered)
        assert max(r.attempts for r in rows) == 2
        # A second dispatcher (another engine process) delivers nothing again.
        other = WebhookDispatcher(runtime, urls=[receiver.url], secret=SECRET)
        assert other.collect() == 0 and other.deliver_due() == 0
        assert len(receiver.requests) == 4
        shown = deliveries(runtime)
        assert {d["host"] for d in shown} == {"127.0.0.1"}
        assert all("token" not in json.dumps(d) for d in shown)
    finally:
        hooks.stop()


def test_a_dead_endpoint_does_not_slow_rendering(runtime, background) -> None:
    hooks = WebhookDispatcher(
        runtime, urls=["http://127.0.0.1:9/nothing-listens"], secret=SECRET, poll_s=0.05,
        backoff_base_s=0.05,
    ).start()  # fmt: skip
    try:
        background.engine(runtime)
        background.worker(runtime)
        ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
        until(lambda: services.episode_detail(runtime, ep["id"])["state"] == "completed")
        rows = until(lambda: [d for d in deliveries(runtime) if d["attempts"] >= 2])
        assert rows[0]["state"] == "pending" and rows[0]["last_status"] is None
        assert "ConnectError" in rows[0]["last_error"]
    finally:
        hooks.stop()
