"""Dramatiq: broker, actor and producer for bench/peers.py (runs in the peers' venv)."""

import os
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

PORT = int(os.environ["PEER_REDIS_PORT"])
dramatiq.set_broker(RedisBroker(host="127.0.0.1", port=PORT))


@dramatiq.actor
def task(mark: str) -> None:
    r = redis.Redis(port=PORT)
    if mark == "lat":
        r.rpush("peer:started", repr(time.time()))
    else:
        r.incr("peer:done")


if __name__ == "__main__":
    n, mark = int(sys.argv[2]), sys.argv[3]
    for _ in range(n):
        task.send(mark)
