"""Failover with real engine processes: a standby (or the engine restarted) dispatches
soon after the leader dies, busy or idle; a clean stop hands over at once; fencing holds.

Every wait is for an event (a log line, a job on Redis); the timeouts only bound a hung
test. The settings make only the intended path able to pass: the idle lease is the
production default (30 min), so an idle takeover can only come from the challenge.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_env
from test_e2e_local import wait_for

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.orchestrator import Orchestrator
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import Runtime, open_runtime
from storyworld.protocol import LeaseHolder

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "[1s] One.\n\n[1s] Two."

pytestmark = pytest.mark.slow


class EngineProcess:
    """`storyworld engine --id NAME` with its log lines collected as they come."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "storyworld.cli",
                "--env-file",
                "/dev/null",
                "engine",
                "--id",
                name,
            ],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 60.0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._cond.wait(0.2)):
                    raise AssertionError(f"{self.name}: no line like {pattern!r}:\n" + self.log())
                self._cond.wait(min(left, 0.5))

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def engines(tmp_path, redis_url, key_prefix):  # type: ignore[no-untyped-def]
    started: list[EngineProcess] = []
    env = make_env(
        tmp_path,
        redis_url,
        key_prefix,
        ENGINE_LEASE_SECONDS="1800",
        ENGINE_IDLE_BLOCK_SECONDS="1200",
        ENGINE_BUSY_LEASE_SECONDS="3",
    )

    def start(name: str, **extra: str) -> EngineProcess:
        e = EngineProcess(name, {**env, **extra})
        started.append(e)
        return e

    rt = open_runtime(load_settings(env=env, env_file=None), role="test")
    start.rt = rt  # type: ignore[attr-defined]
    yield start
    for e in started:
        e.close()
    rt.close()


def _create(rt: Runtime) -> str:
    return services.create_episode(rt, plan_script(SCRIPT), script=SCRIPT)["id"]


def _waiting(rt: Runtime) -> int:
    return rt.queue.waiting()


def test_a_standby_takes_over_a_busy_leader_killed_mid_work(engines, background) -> None:
    rt = engines.rt
    a = engines("engine-a")
    a.wait_line("engine-a now dispatches")
    b = engines("engine-b")
    b.wait_line("engine-b stands by: engine-a dispatches")
    _create(rt)
    wait_for(lambda: _waiting(rt) == 2)  # dispatched by A, no worker yet: A is busy
    a.kill()
    killed = time.monotonic()
    b.wait_line("engine-b now dispatches")
    print(f"busy failover: {time.monotonic() - killed:.1f} s after SIGKILL")
    background.worker(rt)  # B applies the results and composes
    ep = services.list_episodes(rt)[0]["id"]
    d = wait_for(lambda: (x := services.episode_detail(rt, ep))["state"] == "completed" and x)
    assert all(len(beat["jobs"]) == 1 for beat in d["beats"])  # nothing sent twice


def test_an_idle_leader_killed_is_replaced_when_work_arrives(engines) -> None:
    rt = engines.rt
    a = engines("engine-a")
    a.wait_line("engine-a now dispatches")
    b = engines("engine-b")
    b.wait_line("engine-b stands by: engine-a dispatches")
    a.kill()  # idle: its lease has 30 minutes left
    _create(rt)
    b.wait_line("engine-a did not answer .* engine-b takes over")
    wait_for(lambda: _waiting(rt) == 2, timeout=60)


def test_the_engine_restarted_after_an_idle_death_takes_over(engines) -> None:
    rt = engines.rt
    a = engines("engine-a")
    a.wait_line("engine-a now dispatches")
    a.kill()
    _create(rt)  # its wake waits on the result list
    a2 = engines("engine-a2")
    a2.wait_line("engine-a2 now dispatches")
    wait_for(lambda: _waiting(rt) == 2, timeout=60)


def test_an_idle_leader_alive_answers_and_keeps_the_lease(engines) -> None:
    rt = engines.rt
    a = engines("engine-a")
    a.wait_line("engine-a now dispatches")
    b = engines("engine-b")
    b.wait_line("stands by: engine-a dispatches")
    _create(rt)
    wait_for(lambda: _waiting(rt) == 2)
    assert rt.queue.engine_holder()["engine"] == "engine-a"  # type: ignore[index]
    assert "takes over" not in b.log()


def test_a_clean_stop_hands_over_at_once(engines) -> None:
    rt = engines.rt
    # A busy lease of 10 minutes: only the handover can make B lead within the test.
    a = engines("engine-a", ENGINE_BUSY_LEASE_SECONDS="600")
    a.wait_line("engine-a now dispatches")
    b = engines("engine-b", ENGINE_BUSY_LEASE_SECONDS="600")
    b.wait_line("stands by: engine-a dispatches")
    _create(rt)
    wait_for(lambda: _waiting(rt) == 2)
    a.terminate()
    b.wait_line("engine-b now dispatches")


def test_an_old_leader_is_fenced_after_a_takeover(runtime) -> None:
    old = Orchestrator(
        runtime.settings, runtime.sessions, runtime.queue, runtime.store, engine_id="old"
    )
    old.step()
    assert old.is_leader
    value, _ = runtime.queue.engine_lease_state()
    assert value is not None
    new = runtime.queue.take_over_engine_lease(value, LeaseHolder.here("new"), 30)
    assert new is not None
    services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT)
    old._next_tick = 0.0
    old.step()  # its tick and its enqueue are refused
    assert not old.is_leader
    assert _waiting(runtime) == 0
    assert runtime.queue.engine_holder()["engine"] == "new"  # type: ignore[index]
    old.shutdown()  # releasing checks the token: the new lease stays
    assert runtime.queue.engine_holder()["engine"] == "new"  # type: ignore[index]


def test_engine_hosts_stop_at_once_leader_and_idle_standby(tmp_path, redis_url, key_prefix):
    from storyworld.engine.host import EngineHost

    env = make_env(
        tmp_path,
        redis_url,
        key_prefix,
        ENGINE_LEASE_SECONDS="1800",
        ENGINE_IDLE_BLOCK_SECONDS="1200",
    )
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        a = EngineHost(rt, engine_id="host-a").start()
        wait_for(lambda: a.is_leader)
        b = EngineHost(rt, engine_id="host-b").start()
        wait_for(lambda: b.status.startswith("standby: host-a"))
        b.stop(timeout_s=30)  # blocked on the result list for up to 20 minutes otherwise
        assert not b.running
        a.stop(timeout_s=30)
        assert not a.running and rt.queue.engine_holder() is None
