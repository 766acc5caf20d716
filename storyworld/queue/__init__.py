"""Redis: enqueue, reserve, heartbeat, ack, reclaim, dead-letter, stats."""

from storyworld.queue.connection import ProblemLog, RedisClients, connect, describe_redis_error
from storyworld.queue.jobqueue import (
    DeadLetter,
    HeartbeatReply,
    JobQueue,
    QueueStats,
    Reservation,
    TickResult,
)
from storyworld.queue.keys import Keys

__all__ = [
    "DeadLetter",
    "HeartbeatReply",
    "JobQueue",
    "Keys",
    "ProblemLog",
    "QueueStats",
    "RedisClients",
    "Reservation",
    "TickResult",
    "connect",
    "describe_redis_error",
]
