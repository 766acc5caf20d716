"""`storyworld`: render scripts, manage episodes, run the engine, inspect the queue.

Every command that prints data has `--json`; the shapes are documented in docs/json.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from storyworld.config import ConfigError, Settings, load_settings, mask_url, redact
from storyworld.engine import services, sound
from storyworld.engine.cast import Cast, CastError, find_cast, load_cast
from storyworld.engine.errors import DEPENDENCY_ERRORS, EngineError, exit_code, translate
from storyworld.engine.host import EngineHost
from storyworld.engine.models import Episode, EpisodeState
from storyworld.engine.planner import ScriptError, ScriptPlan, plan_file
from storyworld.engine.runtime import Runtime, database_url, open_runtime
from storyworld.engine.schema import DatabaseTooNew
from storyworld.protocol import KNOWN_BACKENDS

__all__ = ["main"]

log = logging.getLogger("storyworld")


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit code 2."""


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(env_file=getattr(args, "env_file", ".env"))
    if getattr(args, "home", None):
        settings = settings.with_overrides(home=Path(args.home).expanduser())
    return settings


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _setup_logging(verbose: bool) -> None:
    class Redacting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("botocore", "urllib3", "httpx", "httpcore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- render
def _episode_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backend": args.backend,
        "size": args.size,
        "fps": args.fps,
        "steps": args.steps,
        "seed": args.seed,
    }


def _film_args(args: argparse.Namespace, script: Path, plan: ScriptPlan) -> dict[str, Any]:
    """The cast (given with --cast, else `<script>.cast.toml` beside the script) and the
    keyframe options, for `services.create_episode`. Cast errors stop here, before
    anything is queued; a character the script never names is a warning."""
    path = Path(args.cast) if getattr(args, "cast", None) else find_cast(script)
    cast: Cast | None = load_cast(path) if path is not None else None
    if cast is not None:
        for warning in cast.check_script(
            [(b.text, [d.speaker for d in b.dialogue]) for b in plan.beats]
        ):
            print(f"storyworld: warning: {warning}", file=sys.stderr)
    return {
        "cast": cast,
        "keyframes": getattr(args, "keyframes", None),
        "candidates": getattr(args, "candidates", None),
        "approve": bool(getattr(args, "approve", False)),
    }


def _sound_args(args: argparse.Namespace, film_args: dict[str, Any], plan: ScriptPlan) -> dict:
    """The episode's music bed, ambience and subtitle burning; every voice of the cast and
    every sound file is checked here, before anything is queued."""
    cast = film_args.get("cast")
    opts = sound.sound_options(
        cast_path=str(cast.path) if cast is not None else None,
        cast_json=cast.to_json() if cast is not None else None,
        music=getattr(args, "music", None),
        ambience=getattr(args, "ambience", None),
        burn_subtitles=bool(getattr(args, "burn_subtitles", False)),
    )
    film = {"cast": cast.to_json()} if cast is not None else {}
    sound.check_sound(plan, {"film": film, sound.SOUND: opts})
    return opts


def _film_key(film: dict[str, Any]) -> dict[str, Any]:
    cast = film["cast"]
    return {
        "cast": cast.to_json() if cast else None,
        "keyframes": film["keyframes"],
        "candidates": film["candidates"],
        "approve": film["approve"],
    }


def _script_key(text: str, opts: dict[str, Any]) -> str:
    blob = json.dumps({"script": text, **opts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _find_resumable(rt: Runtime, key: str) -> Episode | None:
    with rt.sessions() as s:
        for ep in s.scalars(select(Episode).order_by(Episode.created_at.desc())):
            if (ep.options or {}).get("script_key") == key and ep.state != EpisodeState.CANCELLED:
                return ep
    return None


class ProgressView:
    """Progress of a render. On a terminal, a rich progress bar (beats done, %, ETA) with
    a bar for each beat in flight; on a pipe, a line per change of state (beat by beat for
    a short episode, every 5 % for a long one)."""

    #: Episodes longer than this show only the beats in flight, not one bar per beat.
    ALL_BARS = 24

    def __init__(self, stream: Any = sys.stderr, clock: Any = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: dict[int, str] = {}
        self.clock = clock
        self.started = clock()
        self.first_done: int | None = None
        self.last_step = -1
        self._progress: Any = None
        self._main: Any = None
        self._beat_tasks: dict[int, Any] = {}
        self._failed_shown: set[int] = set()

    def headline(self, detail: dict[str, Any]) -> str:
        """`Title [state] 12/900 beats 1% ETA 14:05` (ETA once a beat is done here)."""
        done, total = detail["beats_done"], detail["beats_total"]
        pct = int(100 * done / total) if total else 100
        if self.first_done is None:
            self.first_done = done  # beats done before this run (a resume) do not count
        eta = ""
        made = done - self.first_done
        if made > 0 and done < total:
            left = (self.clock() - self.started) / made * (total - done)
            eta = f" ETA {int(left // 60)}:{int(left % 60):02d}"
        return f"{detail['title']} [{detail['state']}] {done}/{total} beats {pct}%{eta}"

    def show(self, detail: dict[str, Any], progress: dict[int, float]) -> None:
        head = self.headline(detail)
        beats = detail["beats"]
        if len(beats) > self.ALL_BARS or detail["beats_total"] > self.ALL_BARS:
            beats = [b for b in beats if b["state"] in ("rendering", "failed")][:8]
        if self.tty:
            self._show_rich(detail, beats, progress)
            return
        if detail["beats_total"] > self.ALL_BARS:
            step = int(20 * detail["beats_done"] / max(1, detail["beats_total"]))
            if step != self.last_step:
                self.last_step = step
                self.stream.write(head + "\n")
        else:
            for b in detail["beats"]:
                if self.last.get(b["index"]) != b["state"]:
                    self.last[b["index"]] = b["state"]
                    self.stream.write(f"beat {b['index'] + 1}: {b['state']}\n")
        if self.last.get(-1) != detail["state"]:
            self.last[-1] = detail["state"]
            self.stream.write(f"episode {detail['id']}: {detail['state']}\n")
        self.stream.flush()

    def _show_rich(
        self, detail: dict[str, Any], beats: list[dict[str, Any]], progress: dict[int, float]
    ) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        done, total = detail["beats_done"], max(1, detail["beats_total"])
        title = escape(f"{detail['title']} [{detail['state']}]")
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self._progress.start()
            self._main = self._progress.add_task(title, total=total, completed=done)
        p = self._progress
        p.update(self._main, description=title, completed=done, total=total)
        flying = {b["index"]: b for b in beats if b["state"] == "rendering"}
        for index in [i for i in self._beat_tasks if i not in flying]:
            p.remove_task(self._beat_tasks.pop(index))
        for index in flying:
            if index not in self._beat_tasks:
                self._beat_tasks[index] = p.add_task(f"  beat {index + 1}", total=1.0)
            p.update(self._beat_tasks[index], completed=progress.get(index, 0.0))
        for b in beats:
            if b["state"] == "failed" and b["index"] not in self._failed_shown:
                self._failed_shown.add(b["index"])
                p.console.print(f"beat {b['index'] + 1} failed: {(b['error'] or '')[:200]}",
                                markup=False, highlight=False)  # fmt: skip

    def close(self) -> None:
        """Leave the bar on screen as it last was."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def cmd_render(args: argparse.Namespace) -> int:
    settings = _settings(args)
    script_path = Path(args.script)
    plan = plan_file(
        script_path,
        default_beat_s=settings.default_beat_seconds,
        max_beat_s=settings.max_beat_seconds,
        max_beats=settings.max_beats,
    )
    text = script_path.read_text(encoding="utf-8-sig")
    backend = services.check_backend(args.backend or settings.default_backend)
    size = services.parse_size(args.size) if args.size else None
    opts = _episode_options(args)
    opts["backend"] = backend
    film_args = _film_args(args, script_path, plan)
    sound_opts = _sound_args(args, film_args, plan)
    if any(v for k, v in _film_key(film_args).items()):
        opts["film"] = _film_key(film_args)
    if sound_opts:
        opts[sound.SOUND] = sound_opts
    key = _script_key(text, opts)
    local = settings.local_mode and not settings.redis_url
    workers = args.workers if args.workers is not None else (2 if local else 0)

    rt = open_runtime(settings, role="storyworld-render")
    fleet = None
    stop = threading.Event()
    engine: EngineHost | None = None
    view: ProgressView | None = None

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        services.check_storage(rt)
        existing = None if args.new else _find_resumable(rt, key)
        if existing is not None and existing.state == EpisodeState.COMPLETED:
            print(
                f"already rendered as episode {existing.id} (use --new to render again)",
                file=sys.stderr,
            )
            print(_output_location(rt, existing.output_key or ""))
            return 0
        if existing is not None:
            episode_id = existing.id
            if existing.state == EpisodeState.FAILED:
                services.retry_episode(rt, episode_id)
            print(f"resuming episode {episode_id}", file=sys.stderr)
        else:
            detail = services.create_episode(
                rt,
                plan,
                script=text,
                title=args.title,
                backend=backend,
                size=size,
                fps=args.fps,
                steps=args.steps,
                seed=args.seed,
                options={
                    "script_key": key,
                    "script_path": str(script_path.resolve()),
                    sound.SOUND: sound_opts,
                },
                reuse=not args.new,
                **film_args,
            )
            episode_id = detail["id"]
            print(
                f"episode {episode_id}: {len(plan.beats)} beats, "
                f"{plan.total_seconds:g}s on {backend}",
                file=sys.stderr,
            )
        engine = EngineHost(rt).start()
        if workers:
            shown = services.episode_detail(rt, episode_id)
            film_state = shown.get("film") or {}
            stages = [backend]
            # A keyframe worker only where some beat draws a keyframe first (a Veo episode
            # without references needs none, and its pod may have no keyframe model).
            drawn = film_state.get("approve") or any(
                b.get("stage") == "keyframe" for b in shown.get("beats", [])
            )
            if drawn and film_state.get("keyframe_backend") not in (None, backend):
                stages.append(film_state["keyframe_backend"])
            fleet = services.local_fleet(rt, stages, workers)
            fleet.start()
        view = ProgressView()
        last_progress = 0.0
        progress: dict[int, float] = {}
        poll = 1.0 if local else 5.0
        while not stop.is_set():
            detail = services.episode_progress(rt, episode_id)
            if time.monotonic() - last_progress >= poll:
                progress = services.beat_progress(rt, episode_id)
                last_progress = time.monotonic()
            view.show(detail, progress)
            if detail["state"] == EpisodeState.COMPLETED:
                print(_output_location(rt, detail["output_key"]))
                return 0
            if detail["state"] == EpisodeState.AWAITING_APPROVAL:
                print(
                    f"episode {episode_id} awaits approval of its keyframes: "
                    f"storyworld episode approve {episode_id} (or episode reroll "
                    f"{episode_id} --beat N), then run this command again",
                    file=sys.stderr,
                )
                return 0
            if detail["state"] in (EpisodeState.FAILED, EpisodeState.CANCELLED):
                print(
                    f"storyworld: episode {episode_id} {detail['state']}: {detail['error']}",
                    file=sys.stderr,
                )
                return 1
            if fleet is not None and workers and fleet.alive() == 0:
                print(
                    f"storyworld: every local worker exited; see {fleet.log_dir}", file=sys.stderr
                )
                return 1
            stop.wait(0.25)
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        stop.set()
        if view is not None:
            view.close()
        if fleet is not None:
            fleet.stop()
        if engine is not None:
            engine.stop()
        rt.close()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _output_location(rt: Runtime, key: str) -> str:
    return services.artifact_location(rt, key)


# --------------------------------------------------------------------------- episodes
def _with_runtime(args: argparse.Namespace, role: str = "storyworld-cli") -> Runtime:
    return open_runtime(_settings(args), role=role)


def cmd_episode_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = plan_file(
        args.script,
        default_beat_s=settings.default_beat_seconds,
        max_beat_s=settings.max_beat_seconds,
        max_beats=settings.max_beats,
    )
    text = Path(args.script).read_text(encoding="utf-8-sig")
    size = services.parse_size(args.size) if args.size else None
    film_args = _film_args(args, Path(args.script), plan)
    sound_opts = _sound_args(args, film_args, plan)
    with open_runtime(settings, role="storyworld-cli") as rt:
        detail = services.create_episode(
            rt,
            plan,
            script=text,
            title=args.title,
            backend=args.backend,
            size=size,
            fps=args.fps,
            steps=args.steps,
            seed=args.seed,
            options={sound.SOUND: sound_opts} if sound_opts else None,
            **film_args,
        )
    if args.json:
        _print_json(detail)
    else:
        print(
            f"created episode {detail['id']} ({detail['beats_total']} beats, "
            f"{detail['backend']}): {detail['title']}; saved, the engine dispatches it"
        )
    return 0


def cmd_episode_list(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        eps = services.list_episodes(rt, args.limit)
    if args.json:
        _print_json(eps)
        return 0
    if not eps:
        print("no episodes")
    for e in eps:
        print(
            f"{e['id']}  {e['state']:<10} {e['beats_done']:>3}/{e['beats_total']:<3} "
            f"{e['backend']:<11} {e['title']}"
        )
    return 0


def cmd_episode_show(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        d = services.episode_detail(rt, args.id)
    if args.json:
        _print_json(d)
        return 0
    print(
        f"{d['title']}  ({d['id']})\nstate {d['state']}, {d['beats_done']}/{d['beats_total']} "
        f"beats, {d['size']} @ {d['fps']} fps, backend {d['backend']}"
    )
    if d["error"]:
        print(f"error: {d['error']}")
    if d["output_key"]:
        print(f"episode: {d['output_key']}")
    for b in d["beats"]:
        print(
            f"  {b['index'] + 1:>3} {b['state']:<9} attempts {b['attempts']} "
            f"{b['duration_s']:g}s  {b['text'][:60]}"
        )
        if b.get("characters") or b.get("keyframe"):
            score = f"{b['score']:.3f}" if isinstance(b.get("score"), float) else "-"
            reused = f", reused from {b['reused_from']}" if b.get("reused_from") else ""
            print(
                f"      characters {', '.join(b['characters']) or '-'}; keyframe "
                f"{b.get('stage') or '-'}, score {score}{reused}"
            )
        if b["error"]:
            print(f"      last error: {b['error']}")
    if len(d.get("revisions") or []) > 1:
        print("revisions:")
        for r in d["revisions"]:
            mark = "*" if r["id"] == d["id"] else " "
            print(f"  {mark} {r['revision']:>2} {r['id']} {r['state']}, {r['reused']} reused")
    return 0


def cmd_episode_approve(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        d = services.approve_episode(rt, args.id, args.beat)
    print(f"episode {d['id']}: {d['state']}")
    return 0


def cmd_episode_reroll(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        d = services.reroll_beat(rt, args.id, args.beat, seed=args.seed, text=args.text)
    print(f"episode {d['id']}: beat {args.beat} keyframe re-rolled ({d['state']})")
    return 0


def cmd_episode_retry(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        beat = None
        if args.beat is not None:
            # The CLI counts beats from 1, the services from 0: check here, in the CLI's terms.
            total = services.episode_detail(rt, args.id)["beats_total"]
            if not 1 <= args.beat <= total:
                raise CliError(
                    f"episode {args.id} has beats 1 to {total}; there is no beat {args.beat}"
                )
            beat = args.beat - 1
        d = services.retry_episode(rt, args.id, beat)
    print(f"episode {d['id']}: {d['state']}")
    return 0


def cmd_episode_cancel(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        d = services.cancel_episode(rt, args.id)
    print(f"episode {d['id']}: {d['state']}")
    return 0


# --------------------------------------------------------------------------- engine & queue
def cmd_engine(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.getLogger().setLevel(logging.INFO)
    with open_runtime(settings, role="storyworld-engine") as rt:
        services.check_storage(rt)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with EngineHost(rt, engine_id=args.id) as engine:
            while not stop.wait(1.0) and engine.running:
                pass
    return 0


def cmd_queue_stats(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        st = services.queue_stats(rt)
    if args.json:
        _print_json(st)
        return 0
    age = st["oldest_waiting_s"]
    print(
        f"waiting {st['waiting']}  in flight {st['in_flight']}  dead {st['dead']}  "
        f"results pending {st['results_pending']}  workers {st['workers']}"
    )
    if age is not None:
        print(f"oldest waiting job: {age:.0f} s")
    for name, load in st["fleet"]["by_backend"].items():
        if load["waiting"] or load["workers"]:
            print(
                f"  {name:<12} waiting {load['waiting']:>4}  workers {load['workers']:>3}"
                f"  busy {load['busy']:>3}"
            )
    eng = st["engine"]
    print(f"engine: {eng.get('engine') if eng else 'none'}{' (paused)' if st['paused'] else ''}")
    for u in st.get("unserved", []):
        print(f"warning: {u['message']}")
    return 0


def cmd_queue_dead(args: argparse.Namespace) -> int:
    with _with_runtime(args) as rt:
        dead = services.dead_letters(rt, args.limit)
    if args.json:
        _print_json(dead)
        return 0
    if not dead:
        print("no dead letters")
    for d in dead:
        name = d["job_id"] or f"{d['ref']} (unreadable: no job id)"
        print(f"{name}  {d['reason']}")
    return 0


def _unmatched(out: dict[str, Any]) -> int:
    """Say which names matched no dead letter; the exit status is 1 if any."""
    if out.get("unmatched"):
        print(f"no dead letter matches {', '.join(out['unmatched'])}", file=sys.stderr)
        return 1
    return 0


def cmd_queue_requeue(args: argparse.Namespace) -> int:
    if not args.job_ids and not args.all:
        raise CliError("name job ids to requeue, or --all")
    with _with_runtime(args) as rt:
        out = services.requeue_dead(rt, None if args.all else args.job_ids)
    print(
        f"requeued {out['requeued']}"
        + (
            f"; cannot requeue {', '.join(x or '(unreadable)' for x in out['refused'])}"
            if out["refused"]
            else ""
        )
    )
    return _unmatched(out)


def cmd_queue_drop(args: argparse.Namespace) -> int:
    if not args.job_ids and not args.all:
        raise CliError("name job ids to drop, or --all")
    with _with_runtime(args) as rt:
        out = services.drop_dead(rt, None if args.all else args.job_ids)
    print(f"dropped {out['dropped']}")
    return _unmatched(out)


def cmd_queue_pause(args: argparse.Namespace, paused: bool) -> int:
    with _with_runtime(args) as rt:
        services.set_paused(rt, paused)
    print("dispatch paused" if paused else "dispatch resumed")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`db upgrade` brings the schema to this program's revision (every start does it too);
    `db status` only reports."""
    from storyworld.engine.models import make_engine
    from storyworld.engine.schema import current_revision, head_revision, upgrade_database

    settings = _settings(args)
    if settings.local_mode and not settings.database_url:
        Path(settings.home).mkdir(parents=True, exist_ok=True)
    db = make_engine(database_url(settings), upgrade=False)
    try:
        url = db.url.render_as_string(hide_password=True)
        with db.connect() as conn:
            before = current_revision(conn)
        after = upgrade_database(db) if args.db_command == "upgrade" else before
    finally:
        db.dispose()
    out = {"database": redact(url), "revision": after, "before": before, "head": head_revision()}
    if args.json:
        _print_json(out)
    elif args.db_command == "status":
        print(f"{out['database']}: revision {before or 'none'} (this program: {out['head']})")
    elif before == after:
        print(f"{out['database']} is at revision {after}; nothing to do")
    else:
        print(f"{out['database']} upgraded from {before or 'none'} to {after}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    out = settings.describe_env()
    # What the programs will open, with the defaults resolved (DATABASE_URL may be unset).
    out["database (in use)"] = mask_url(database_url(settings))
    _print_json(out)
    return 0


def cmd_worker(args: argparse.Namespace, rest: list[str]) -> int:
    from storyworld.worker.cli import main as worker_main

    return worker_main(rest)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from storyworld.api.server import serve
    except ImportError as e:
        raise CliError(f"the HTTP API needs {e.name}: pip install 'storyworld[api]'") from None
    return serve(
        _settings(args),
        host=args.host,
        port=args.port,
        run_engine=not args.no_engine,
        read_only=args.read_only,
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from storyworld.doctor import run_doctor

    report = run_doctor(env_file=args.env_file, role=args.role, home=args.home)
    print(report.as_json() if args.json else report.text())
    return 0 if report.ok else 1


def cmd_smoke(args: argparse.Namespace) -> int:
    from storyworld.smoke import run_smoke

    outcome = run_smoke(
        _settings(args),
        api=args.api,
        backend=args.backend,
        timeout_s=args.timeout,
        api_token=args.api_token,
    )
    print(outcome.as_json() if args.json else outcome.text())
    return 0 if outcome.ok else 1


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="storyworld", description=__doc__.split("\n")[0])
    p.add_argument("--home", help="data directory of the local default (STORYWORLD_HOME)")
    p.add_argument("--env-file", default=".env", help="settings file (default .env)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = p.add_subparsers(dest="command", required=True)

    def episode_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--title", help="episode title (default: the script's # Title line)")
        sp.add_argument(
            "--backend", choices=KNOWN_BACKENDS, help="render backend (default: DEFAULT_BACKEND)"
        )
        sp.add_argument("--size", help="WIDTHxHEIGHT, e.g. 512x288")
        sp.add_argument("--fps", type=int, help="frames per second, 1-120 (default: DEFAULT_FPS)")
        sp.add_argument("--steps", type=int, help="diffusion steps")
        sp.add_argument(
            "--seed", type=int, help="random seed, 0 to 2^63-1 (same seed, same frames)"
        )
        sp.add_argument("--cast", help="cast file (default: <script>.cast.toml beside it)")
        sp.add_argument(
            "--keyframes",
            choices=("off", "auto", "on"),
            help="keyframes first: auto (default) when a beat has references, --approve, "
            "--candidates > 1 or an image-to-video backend",
        )
        sp.add_argument("--candidates", type=int, help="keyframes drawn per beat (1-8)")
        sp.add_argument(
            "--approve", action="store_true", help="stop for approval once keyframes exist"
        )
        sp.add_argument("--music", help="music bed under the episode (any file PyAV decodes)")
        sp.add_argument("--ambience", help="ambience under the whole episode")
        sp.add_argument(
            "--burn-subtitles",
            action="store_true",
            help="draw the subtitles into the picture (instead of a subtitle track)",
        )

    r = sub.add_parser("render", help="render a script to an episode and wait for it")
    r.add_argument("script", help="plain text or .fountain script")
    episode_opts(r)
    r.add_argument("--workers", type=int, help="local worker processes (local default: 2)")
    r.add_argument("--new", action="store_true", help="render again even if already rendered")
    r.set_defaults(func=cmd_render)

    ep = sub.add_parser("episode", help="create, list, show, retry, cancel episodes")
    eps = ep.add_subparsers(dest="episode_command", required=True)
    c = eps.add_parser("create", help="plan a script into an episode for the engine")
    c.add_argument("script", help="plain text or .fountain script")
    episode_opts(c)
    c.add_argument("--json", action="store_true", help="print the episode as JSON")
    c.set_defaults(func=cmd_episode_create)
    ls = eps.add_parser("list", help="newest episodes with their progress")
    ls.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    ls.add_argument("--json", action="store_true", help="print them as JSON")
    ls.set_defaults(func=cmd_episode_list)
    sh = eps.add_parser("show", help="one episode: beats, attempts, errors, artifacts")
    sh.add_argument("id", help="episode id (a unique prefix works)")
    sh.add_argument("--json", action="store_true", help="print it as JSON (with history)")
    sh.set_defaults(func=cmd_episode_show)
    rt = eps.add_parser("retry", help="render failed beats again (or one beat)")
    rt.add_argument("id", help="episode id (a unique prefix works)")
    rt.add_argument("--beat", type=int, help="beat number (1-based)")
    rt.set_defaults(func=cmd_episode_retry)
    ap = eps.add_parser("approve", help="approve keyframes: their clips render")
    ap.add_argument("id", help="episode id (a unique prefix works)")
    ap.add_argument("--beat", type=int, help="beat number (1-based); default every beat")
    ap.set_defaults(func=cmd_episode_approve)
    rr = eps.add_parser("reroll", help="draw one beat's keyframe again")
    rr.add_argument("id", help="episode id (a unique prefix works)")
    rr.add_argument("--beat", type=int, required=True, help="beat number (1-based)")
    rr.add_argument("--seed", type=int, help="seed of the new draw (default: a new one)")
    rr.add_argument("--text", help="new action text for the beat's prompt")
    rr.set_defaults(func=cmd_episode_reroll)
    cn = eps.add_parser("cancel", help="stop an episode: waiting jobs withdrawn, workers stop")
    cn.add_argument("id", help="episode id (a unique prefix works)")
    cn.set_defaults(func=cmd_episode_cancel)

    e = sub.add_parser("engine", help="run the decision loop (headless)")
    e.add_argument("--id", help="engine id shown to standbys and consoles (default: host-pid)")
    e.set_defaults(func=cmd_engine)

    q = sub.add_parser("queue", help="queue depths, dead letters, pause")
    qs = q.add_subparsers(dest="queue_command", required=True)
    st = qs.add_parser("stats", help="jobs waiting, in flight, dead; workers; the engine")
    st.add_argument("--json", action="store_true", help="print them as JSON")
    st.set_defaults(func=cmd_queue_stats)
    dd = qs.add_parser("dead", help="dead letters: job id (or ref), reason")
    dd.add_argument("--limit", type=int, default=100, help="how many (default 100)")
    dd.add_argument("--json", action="store_true", help="print them as JSON (with payloads)")
    dd.set_defaults(func=cmd_queue_dead)
    rq = qs.add_parser("requeue", help="send dead letters again")
    rq.add_argument(
        "job_ids", nargs="*", metavar="ID", help="job ids, or refs (entry:...) of unreadable ones"
    )
    rq.add_argument("--all", action="store_true", help="every dead letter")
    rq.set_defaults(func=cmd_queue_requeue)
    dr = qs.add_parser("drop", help="discard dead letters")
    dr.add_argument(
        "job_ids", nargs="*", metavar="ID", help="job ids, or refs (entry:...) of unreadable ones"
    )
    dr.add_argument("--all", action="store_true", help="every dead letter")
    dr.set_defaults(func=cmd_queue_drop)
    pa = qs.add_parser("pause", help="stop dispatching new jobs")
    pa.set_defaults(func=lambda a: cmd_queue_pause(a, True))
    re_ = qs.add_parser("resume", help="dispatch new jobs again")
    re_.set_defaults(func=lambda a: cmd_queue_pause(a, False))

    w = sub.add_parser("worker", help="run a worker (same as storyworld-worker)", add_help=False)
    w.set_defaults(func=None)

    db = sub.add_parser("db", help="database schema: upgrade, status")
    dbs = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "migrate to this program's schema"), ("status", "show it")):
        sp = dbs.add_parser(name, help=text)
        sp.add_argument("--json", action="store_true", help="print it as JSON")
        sp.set_defaults(func=cmd_db)

    cf = sub.add_parser("config", help="show the settings in force (secrets masked)")
    cf.set_defaults(func=cmd_config)

    sv = sub.add_parser("serve", help="run the HTTP API (and the engine)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--no-engine", action="store_true", help="API only; another engine dispatches")
    sv.add_argument("--read-only", action="store_true", help="refuse every change (403)")
    sv.set_defaults(func=cmd_serve)
    dc = sub.add_parser("doctor", help="check this machine's deployment, one line per check")
    dc.add_argument(
        "--role",
        choices=("engine", "worker", "console"),
        help="which checks (default: guessed from the settings)",
    )
    dc.add_argument("--json", action="store_true", help="print the checks as JSON")
    dc.set_defaults(func=cmd_doctor)

    sm = sub.add_parser("smoke", help="render one tagged beat end to end and time each step")
    sm.add_argument("--api", metavar="URL", help="create the episode through this HTTP API")
    sm.add_argument("--api-token", help="token for --api (default: API_TOKEN)")
    sm.add_argument(
        "--backend",
        choices=KNOWN_BACKENDS,
        help="backend to test (default: the cheapest the live fleet serves)",
    )
    sm.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="longest wait of any one step, seconds (default 120)",
    )
    sm.add_argument("--json", action="store_true", help="print the timings as JSON")
    sm.set_defaults(func=cmd_smoke)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        from storyworld.worker.cli import main as worker_main

        return worker_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except EngineError as e:  # the engine's vocabulary, mapped once (engine.errors)
        print(f"storyworld: {redact(str(e))}", file=sys.stderr)
        return exit_code(e)
    except (ConfigError, ScriptError, CastError, CliError, DatabaseTooNew) as e:
        print(f"storyworld: {redact(str(e))}", file=sys.stderr)
        return 2
    except DEPENDENCY_ERRORS as e:  # Redis, storage: the same vocabulary
        err = translate(e)
        assert err is not None
        print(f"storyworld: {redact(str(err))}", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
