"""`storyworld serve`: the HTTP API under uvicorn, with the engine in a background thread.

The engine takes the dispatch lease in Redis if it is free and waits in standby otherwise,
so the server can run beside a console or a headless engine on the same deployment.
SIGTERM or SIGINT stops uvicorn gracefully, then the engine (releasing its lease), then
the connections.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from storyworld.api.app import create_app
from storyworld.config import Settings
from storyworld.engine import services
from storyworld.engine.host import EngineHost
from storyworld.engine.runtime import Runtime, open_runtime

__all__ = ["build_app", "serve"]

log = logging.getLogger("storyworld.api")

ENGINE_JOIN_S = 30.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def build_app(runtime: Runtime, *, read_only: bool = False) -> FastAPI:
    """The app `serve` runs: `create_app` with the API_TOKEN setting."""
    token = runtime.settings.api_token.get().strip() or None
    return create_app(runtime, read_only=read_only, api_token=token)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    run_engine: bool = True,
    *,
    read_only: bool = False,
) -> int:
    """Run the API until SIGTERM or SIGINT; returns the exit code (0 after a clean stop)."""
    for name in ("storyworld", "uvicorn"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # uvicorn replaces these handlers while it runs and raises the signal again once it has
    # shut down; ours then runs instead of the default, which would kill the process.
    old: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if not settings.api_token and host not in LOOPBACK:
        log.warning(
            "API_TOKEN is not set: anyone who can reach %s:%d can create and cancel episodes",
            host,
            port,
        )
    rt: Runtime | None = None
    engine: EngineHost | None = None
    try:
        rt = open_runtime(settings, role="storyworld-api")
        if run_engine:
            services.check_storage(rt)
            engine = EngineHost(rt).start()
        config = uvicorn.Config(
            build_app(rt, read_only=read_only),
            host=host,
            port=port,
            log_config=None,  # records go to the root logger, whose formatter redacts
            timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
            server_header=False,
        )
        server = uvicorn.Server(config)
        if not stop.is_set():
            try:
                server.run()
            except SystemExit:  # uvicorn exits when it cannot start; it logged why
                return 1
        return 0
    finally:
        stop.set()
        if rt is not None:
            if engine is not None:
                engine.stop(ENGINE_JOIN_S)
            rt.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
