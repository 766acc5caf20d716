"""The deployment files: the worker image's Dockerfile (parsed: there is no Docker daemon
here, so it is linted, not built), its install script run for real in a fresh venv, the
KEDA ScaledObjects, and the plain autoscaling script against a real Redis."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import redis

from storyworld.autoscale import Booting, Pool, decide, read_pool
from storyworld.autoscale import main as autoscale_main
from storyworld.protocol import KNOWN_BACKENDS
from storyworld.queue import JobQueue, Keys
from tests.conftest import make_env
from tests.test_queue import make_job

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "worker" / "Dockerfile"
INSTALL = ROOT / "deploy" / "worker" / "install.sh"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "a continuation line ends the file"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _all(instructions: list[tuple[str, str]], name: str) -> list[str]:
    return [args for word, args in instructions if word == name]


def test_dockerfile_is_a_cuda_runtime_image_with_tini_non_root_and_offline(
    instructions: list[tuple[str, str]],
) -> None:
    known = {"ARG", "FROM", "ENV", "RUN", "COPY", "USER", "WORKDIR", "HEALTHCHECK",
             "STOPSIGNAL", "ENTRYPOINT", "CMD", "LABEL", "EXPOSE", "VOLUME"}  # fmt: skip
    assert {w for w, _ in instructions} <= known
    args = dict(a.split("=", 1) for a in _all(instructions, "ARG") if "=" in a)
    (base,) = _all(instructions, "FROM")
    assert base == "${CUDA_IMAGE}"
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "-runtime-" in args["CUDA_IMAGE"]
    env = " ".join(_all(instructions, "ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    assert "WORKER_HEALTH_DIR=" in env and "HF_HOME=${MODELS_DIR}" in env
    assert "BAKE_MODELS" in args and "MODELS_DIR" in args
    # Non-root from USER on, and the entry point is tini, in exec form.
    names = [w for w, _ in instructions]
    (user,) = _all(instructions, "USER")
    assert user not in ("root", "0")
    assert names.index("USER") < names.index("CMD")
    (entry,) = _all(instructions, "ENTRYPOINT")
    assert json.loads(entry)[0] == "/usr/bin/tini"
    assert "tini" in " ".join(_all(instructions, "RUN"))  # installed
    (cmd,) = _all(instructions, "CMD")
    assert json.loads(cmd)[0] == "storyworld-worker"
    (stop,) = _all(instructions, "STOPSIGNAL")
    assert stop == "SIGTERM"
    # The health check is the worker's own: storyworld-worker --healthcheck.
    (health,) = _all(instructions, "HEALTHCHECK")
    assert health.split("CMD", 1)[1].strip() == '["storyworld-worker", "--healthcheck"]'
    assert "--start-period=" in health


def test_dockerfile_installs_python_packages_only_through_install_sh(
    instructions: list[tuple[str, str]],
) -> None:
    runs = _all(instructions, "RUN")
    for run in runs:
        assert "pip install" not in run, "pip belongs in deploy/worker/install.sh"
    assert any("sh /src/deploy/worker/install.sh /src" in r for r in runs)
    # Every COPY source exists in the repository (the build context is its root).
    for copy in _all(instructions, "COPY"):
        *sources, _dest = shlex.split(copy)
        for src in sources:
            assert (ROOT / src).exists(), src


def test_install_script_in_a_fresh_venv(tmp_path: Path) -> None:
    """The image's install steps, for real: a fresh venv, StoryWorld built from a copy of
    the files the Dockerfile copies (dependencies come from this environment's
    site-packages, so it takes seconds), then its own checks: the worker, doctor and the
    healthcheck import and start."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "storyworld", src / "storyworld",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    here = sysconfig.get_path("purelib")
    # The dependencies: this environment's packages, after the venv's own.
    (site / "zz-deps.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{venv / 'bin'}:{env['PATH']}",
        PYTHON=str(venv / "bin" / "python"),
        STORYWORLD_NO_DEPS="1",
    )
    proc = subprocess.run(
        ["sh", str(INSTALL), str(src)], env=env, capture_output=True, text=True, timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"installed at {site}" in proc.stdout
    # The entry points are the venv's own, and the health check answers (unhealthy: no
    # worker runs here).
    assert (venv / "bin" / "storyworld-worker").is_file()
    hc = subprocess.run(
        [str(venv / "bin" / "storyworld-worker"), "--healthcheck"], env=env,
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert hc.returncode == 1 and "WORKER_HEALTH_DIR" in hc.stdout


def test_keda_scaled_objects_are_generated_from_the_queue_keys(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "keda"
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "keda" / "generate.py"), "--out", str(out)],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    committed = ROOT / "deploy" / "keda"
    for f in out.iterdir():
        assert (committed / f.name).read_text() == f.read_text(), (
            f"{f.name} is stale: run python deploy/keda/generate.py"
        )
    keys = Keys()
    for backend in KNOWN_BACKENDS:
        doc = yaml.safe_load((committed / f"{backend}.yaml").read_text())
        assert doc["kind"] == "ScaledObject"
        assert doc["spec"]["minReplicaCount"] == 0
        triggers = doc["spec"]["triggers"]
        names = [t["metadata"]["listName"] for t in triggers]
        assert names[0] == keys.wake(backend) == f"storyworld:gpu:wake:{backend}"
        for t in triggers:
            assert t["type"] == "redis"
            assert int(t["metadata"]["listLength"]) >= 1
            assert t["metadata"]["activationListLength"] == "0"
            assert t["authenticationRef"]["name"] == "storyworld-redis"
    auth = yaml.safe_load((committed / "trigger-authentication.yaml").read_text())
    assert auth["kind"] == "TriggerAuthentication"


# ------------------------------------------------------------------ the plain script
def test_decide() -> None:
    idle = [{"id": "a"}, {"id": "b"}]
    assert decide(Pool(5, 0, 0), per_worker=2, minimum=0, maximum=4, booting=0).start == 3
    assert decide(Pool(5, 0, 0), per_worker=2, minimum=0, maximum=4, booting=2).start == 1
    assert decide(Pool(50, 1, 1), per_worker=2, minimum=0, maximum=4, booting=0).start == 3
    plan = decide(Pool(0, 3, 1, idle), per_worker=2, minimum=0, maximum=4, booting=0)
    assert plan.start == 0 and [h["id"] for h in plan.stop] == ["a", "b"]  # busy one stays
    plan = decide(Pool(0, 2, 0, idle), per_worker=2, minimum=1, maximum=4, booting=0)
    assert [h["id"] for h in plan.stop] == ["a"]  # keeps --min
    assert decide(Pool(1, 2, 0, idle), per_worker=2, minimum=0, maximum=4, booting=0).stop == []


def _beat(q: JobQueue, worker: str, backends: str, vram_gb: float, job: str = "") -> None:
    gpu = json.dumps({"name": "X", "mem_total_mb": int(vram_gb * 1024)}) if vram_gb else ""
    state = "busy" if job else "idle"
    fields = {"id": worker, "host": f"pod-{worker}", "backends": backends, "gpu": gpu,
              "job": job, "state": state}  # fmt: skip
    q.heartbeat(worker, fields, [])


def test_autoscale_starts_and_stops_pods_through_the_operators_commands(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    env = make_env(tmp_path, redis_url, key_prefix)
    env_file = tmp_path / "a.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    q = JobQueue(
        redis.Redis.from_url(redis_url),
        keys=Keys(jobs=f"{key_prefix}:jobs", results=f"{key_prefix}:results"),
    )
    token = q.acquire_engine_lease({"engine": "test"}, 30)
    assert token
    # 5 svd jobs a 24 GB card can run, one that needs 48 GB, 2 animatic ones.
    jobs = [make_job(i, "svd", 20 if i % 2 else 0) for i in range(5)]
    jobs += [make_job(5, "svd", 40), make_job(6), make_job(7)]
    q.enqueue(jobs, token)
    _beat(q, "busy-24", "svd", 24, job="x")
    _beat(q, "small", "svd", 16)  # too small for this pool: not counted
    pool = read_pool(q, "svd", 24)
    assert (pool.waiting, pool.workers, pool.busy) == (5, 1, 1)

    log = tmp_path / "calls.log"
    start = (
        f"echo start $STORYWORLD_BACKEND $STORYWORLD_VRAM_CLASS $STORYWORLD_START_COUNT >> {log}"
    )
    stop = f"echo stop $STORYWORLD_WORKER_ID $STORYWORLD_WORKER_HOST >> {log}"
    state = tmp_path / "state.json"
    common = ["--env-file", str(env_file), "--backend", "svd", "--vram-class", "24",
              "--per-worker", "2", "--max", "4", "--start-cmd", start, "--stop-cmd", stop,
              "--state-file", str(state), "--once"]  # fmt: skip
    assert autoscale_main(common) == 0
    assert log.read_text().splitlines() == ["start svd 24 3"]  # 1 busy + ceil(5/2), less 1
    # The next run remembers the 3 pods booting: nothing more is started.
    assert autoscale_main(common) == 0
    assert log.read_text().splitlines() == ["start svd 24 3"]
    # Two of them arrive, the queue drains: the idle ones beyond what is wanted stop,
    # never the busy one.
    _beat(q, "new-1", "svd", 80)
    _beat(q, "new-2", "svd", 24)
    q.r.delete(q.keys.jobs, q.keys.waiting)
    for suffix in ("svd", "svd@24", "svd@48", "animatic"):
        q.r.delete(q.keys.wake(suffix))
    booting = Booting(str(state), 900)
    assert booting.count(booting.started[0], 3) == 1  # two of three arrived
    assert autoscale_main(common) == 0
    lines = log.read_text().splitlines()
    assert sorted(lines[1:]) == ["stop new-1 pod-new-1", "stop new-2 pod-new-2"]
    assert not any("busy-24" in line for line in lines)
