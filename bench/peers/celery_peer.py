"""Celery: app, task and producer for bench/peers.py (runs in the peers' venv)."""

import os
import sys
import time

import redis
from celery import Celery

PORT = int(os.environ["PEER_REDIS_PORT"])
app = Celery("celery_peer", broker=f"redis://127.0.0.1:{PORT}/0")
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False


@app.task
def task(mark: str) -> None:
    r = redis.Redis(port=PORT)
    if mark == "lat":
        r.rpush("peer:started", repr(time.time()))
    else:
        r.incr("peer:done")


if __name__ == "__main__":
    n, mark = int(sys.argv[2]), sys.argv[3]
    for _ in range(n):
        task.delay(mark)
