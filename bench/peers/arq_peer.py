"""arq: worker settings, task and producer for bench/peers.py (runs in the peers' venv)."""

import asyncio
import os
import sys
import time

from arq import create_pool
from arq.connections import RedisSettings

PORT = int(os.environ["PEER_REDIS_PORT"])


async def task(ctx, mark: str) -> None:  # type: ignore[no-untyped-def]
    if mark == "lat":
        await ctx["redis"].rpush("peer:started", repr(time.time()))
    else:
        await ctx["redis"].incr("peer:done")


class WorkerSettings:
    functions = [task]
    redis_settings = RedisSettings(port=PORT)


async def produce(n: int, mark: str) -> None:
    pool = await create_pool(RedisSettings(port=PORT))
    for _ in range(n):
        await pool.enqueue_job("task", mark)


if __name__ == "__main__":
    asyncio.run(produce(int(sys.argv[2]), sys.argv[3]))
