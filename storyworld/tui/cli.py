"""`storyworld-tui`: the operator console.

With nothing configured it starts on the local default (embedded Redis server, two local
animatic workers, local artifact folder). With a `.env` for production it connects to the
configured Redis, database and storage and runs the engine's decision loop unless another
engine holds the lease.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from storyworld.config import ConfigError, Settings, load_settings, redact
from storyworld.engine.errors import DEPENDENCY_ERRORS, EngineError, exit_code, translate
from storyworld.engine.runtime import open_runtime

__all__ = ["build_parser", "main"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lighthouse.txt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="storyworld-tui",
        description="The StoryWorld operator console: drive the engine, watch queues, "
        "workers, uploads and episodes.",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="show everything, change nothing (no actions, no engine, no workers)",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between full reads of Redis (default 900; changes show at once "
        "anyway, through the event stream)",
    )
    p.add_argument("--env-file", default=".env", help="settings file (default: ./.env)")
    p.add_argument("--home", help="data directory of the local default (STORYWORLD_HOME)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes to start (default: 2 on the local default, else 0)",
    )
    return p


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(env_file=args.env_file or None)
    if args.home:
        settings = settings.with_overrides(home=Path(args.home).expanduser())
    return settings


def _setup_logging(settings: Settings) -> None:
    """Log to a file in the data directory: the terminal belongs to the console."""

    class Redacting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    try:
        folder = Path(settings.home) / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(folder / "console.log", encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    logging.getLogger("storyworld").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.refresh is not None and args.refresh < 5:
        print("storyworld-tui: --refresh must be at least 5 seconds", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
        return run(settings, args)
    except ConfigError as e:
        print(f"storyworld-tui: {redact(str(e))}", file=sys.stderr)
        return 2
    except (*DEPENDENCY_ERRORS, EngineError) as e:  # mapped once (engine.errors)
        err = translate(e)
        assert err is not None
        print(f"storyworld-tui: {redact(str(err))}", file=sys.stderr)
        return exit_code(err)
    except SQLAlchemyError as e:
        print(
            f"storyworld-tui: the database cannot be opened ({type(e).__name__}); "
            "check DATABASE_URL",
            file=sys.stderr,
        )
        return 2


def run(settings: Settings, args: argparse.Namespace) -> int:
    from storyworld.tui.app import ConsoleApp
    from storyworld.tui.control import Actions, EngineHost, RingLog
    from storyworld.tui.source import DEFAULT_REFRESH_S, LiveSource

    _setup_logging(settings)
    from storyworld.tui import images

    images.probe()  # asks the terminal, which only works before Textual takes it over
    rt = open_runtime(settings, role="storyworld-tui")
    engine: EngineHost | None = None
    try:
        local = rt.embedded is not None
        ring = RingLog()
        if not args.read_only:
            workers = args.workers if args.workers is not None else (2 if local else 0)
            engine = EngineHost(rt, workers=workers, ring=ring)
            engine.start()
        else:
            ring.attach()
        source = LiveSource(
            rt,
            engine=engine,
            ring=ring,
            read_only=args.read_only,
            refresh_s=args.refresh or DEFAULT_REFRESH_S,
        )
        actions = None if args.read_only else Actions(rt, on_change=source.refresh)
        host = engine

        def shutdown() -> None:
            if host is not None:
                host.stop()

        app = ConsoleApp(
            source,
            actions,
            example_script=EXAMPLE.read_text(encoding="utf-8"),
            default_backend=settings.default_backend,
            shutdown=shutdown,
        )
        app.run()
        return int(app.return_code or 0)
    finally:
        if engine is not None:
            engine.stop()  # no-op when the app stopped it already
        rt.close()


if __name__ == "__main__":
    sys.exit(main())
