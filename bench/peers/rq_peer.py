"""RQ: producer, worker and task for bench/peers.py (runs in the peers' venv)."""

import os
import sys
import time

import redis
from rq import Queue, Worker

PORT = int(os.environ["PEER_REDIS_PORT"])


def task(mark: str) -> None:
    r = redis.Redis(port=PORT)
    if mark == "lat":
        r.rpush("peer:started", repr(time.time()))
    else:
        r.incr("peer:done")


if __name__ == "__main__":
    conn = redis.Redis(port=PORT)
    if sys.argv[1] == "worker":
        Worker([Queue(connection=conn)], connection=conn).work()
    else:
        q = Queue(connection=conn)
        n, mark = int(sys.argv[2]), sys.argv[3]
        for _ in range(n):
            q.enqueue("rq_peer.task", mark)
