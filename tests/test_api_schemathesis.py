"""schemathesis (`--checks all`, a bounded number of examples per operation) against the
API's own OpenAPI schema, on a real server over a real deployment: it must report nothing."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from storyworld.api.app import create_app
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import Runtime

ST = Path(sys.executable).parent / "st"
TOKEN = "schemathesis-token"

pytestmark = pytest.mark.skipif(not ST.exists(), reason="needs schemathesis (pip install)")


@pytest.fixture
def api_url(runtime: Runtime) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(runtime, api_token=TOKEN)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


# Whether a script can be planned (a paragraph per beat, durations such as [6s] that are
# more than 0, text rather than control characters...) is more than a JSON Schema can say:
# for the two operations that take a script, a 422 naming the script's problem is an
# accepted answer to schema-valid data (as schemathesis advises for rules a schema cannot
# express). Every other check, and every other operation, stays as `--checks all` has it.
CONFIG = """
[[operations]]
include-name = "POST /v1/episodes"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422",
]

[[operations]]
include-name = "POST /v1/episodes/plan"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422",
]
"""


# The artifact routes (and approve, reroll, retry, cancel) get a rendered episode and its
# beat 0, so they answer with files (their content types checked) rather than 404s for
# random ids.
ARTIFACTS = """
[[operations]]
include-path-regex = "/(video|clip|keyframe|approve|reroll|retry|cancel)$"
parameters = {{ "episode_id" = "{episode}", "n" = 0 }}
"""


def _rendered_episode(runtime: Runtime, background: Any) -> str:
    background.engine(runtime)
    background.worker(runtime)
    ep = services.create_episode(runtime, plan_script("[1s] The lamp is lit."), script="x")
    deadline = time.monotonic() + 60
    while services.episode_detail(runtime, ep["id"])["state"] != "completed":
        assert time.monotonic() < deadline, "the episode did not render"
        time.sleep(0.1)
    return ep["id"]


def test_schemathesis_reports_nothing(
    api_url: str, runtime: Runtime, background: Any, tmp_path: Path
) -> None:
    assert httpx.get(f"{api_url}/healthz").status_code == 200
    episode = _rendered_episode(runtime, background)
    (tmp_path / "schemathesis.toml").write_text(CONFIG + ARTIFACTS.format(episode=episode))
    out = subprocess.run(
        [str(ST), "run", f"{api_url}/openapi.json", "--checks", "all",
         "--max-examples", "15", "--seed", "1", "--generation-deterministic",
         "-H", f"Authorization: Bearer {TOKEN}", "--workers", "1", "--no-color",
         *os.environ.get("ST_EXTRA", "").split()],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    report = out.stdout[-8000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "FAILURES" not in out.stdout and "WARNINGS" not in out.stdout, report
    selected = re.search(r"Selected: (\d+)/(\d+)", out.stdout)
    assert selected and selected.group(1) == selected.group(2), report
    assert f"Tested: {selected.group(1)}" in out.stdout, report
