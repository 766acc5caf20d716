"""Redis clients from settings: TLS, unix sockets, timeouts and reconnection.

Two clients share a URL: `fast` for ordinary commands (short socket timeout, so a dead
network is noticed) and `blocking` for BLMOVE/BLMPOP/XREAD BLOCK, whose socket timeout is
longer than the longest block so the client never cuts its own wait short.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from storyworld.config import ConfigError, Settings, mask_url

__all__ = ["ProblemLog", "RedisClients", "connect", "describe_redis_error"]

FAST_TIMEOUT_S = 10.0


@dataclass
class RedisClients:
    fast: redis.Redis
    blocking: redis.Redis
    url_for_display: str

    def close(self) -> None:
        for c in (self.fast, self.blocking):
            try:
                c.close()
            except Exception:
                pass


def _client(
    url: str, socket_timeout: float, settings: Settings, name: str, retries: int = 2
) -> redis.Redis:
    kwargs: dict = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 10.0,
        # The blocking client does not retry by itself: its callers loop anyway, and a
        # stop must be able to interrupt a wait by closing the connection.
        "retry": Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.1), retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": 0,
        "client_name": name,
        "decode_responses": False,
    }
    scheme = urlsplit(url).scheme
    if scheme in ("valkey", "valkeys"):
        url = ("rediss" if scheme == "valkeys" else "redis") + url[len(scheme) :]
        scheme = "rediss" if scheme == "valkeys" else "redis"
    if scheme == "rediss":
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = True
        if settings.redis_ca_cert:
            kwargs["ssl_ca_certs"] = settings.redis_ca_cert
    if scheme == "unix":
        kwargs.pop("socket_connect_timeout", None)
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as e:
        raise ConfigError(f"REDIS_URL {mask_url(url)!r} is not valid: {e}") from None


def connect(settings: Settings, url: str | None = None, role: str = "storyworld") -> RedisClients:
    """Clients for `url` (default: REDIS_URL). No command is sent yet."""
    url = url or settings.redis_url.get()
    if not url:
        raise ConfigError("REDIS_URL is not set (and the local default was not started)")
    longest_block = max(settings.worker_idle_block_s, settings.engine_idle_block_s, 300.0)
    return RedisClients(
        fast=_client(url, FAST_TIMEOUT_S, settings, role),
        blocking=_client(url, longest_block + 30.0, settings, f"{role}-wait", retries=0),
        url_for_display=mask_url(url),
    )


def describe_redis_error(exc: BaseException, url_for_display: str) -> str:
    """A one-line, secret-free explanation of a Redis failure."""
    if isinstance(exc, redis.AuthenticationError):
        return f"Redis at {url_for_display} refused the password (check REDIS_URL)"
    if isinstance(exc, redis.ResponseError) and "NOAUTH" in str(exc):
        return f"Redis at {url_for_display} needs a password (check REDIS_URL)"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        text = str(exc).split("\n")[0]
        if "certificate" in text.lower() or "ssl" in text.lower():
            return f"TLS to Redis at {url_for_display} failed: {text}"
        return f"Redis unreachable at {url_for_display}"
    return f"Redis error at {url_for_display}: {type(exc).__name__}"


class ProblemLog:
    """Logs what is wrong with the Redis connection (wrong CA, wrong password, TLS to a
    plain port, unreachable) each time the explanation changes, and again at most every
    `every_s` while it stays the same. For the engine and the worker."""

    def __init__(self, logger: Any, url_for_display: str, every_s: float = 60.0) -> None:
        self.logger = logger
        self.url = url_for_display
        self.every_s = every_s
        self.current: str | None = None
        self._logged_at = float("-inf")

    def report(self, exc: BaseException, retry_s: float) -> str:
        """Log (if due) and return the explanation of `exc`."""
        import time

        message = describe_redis_error(exc, self.url)
        now = time.monotonic()
        if message != self.current or now - self._logged_at >= self.every_s:
            self.logger.warning("%s; retrying in %.0f s", message, retry_s)
            self._logged_at = now
        self.current = message
        return message

    def recovered(self) -> None:
        if self.current is not None:
            self.logger.warning("Redis at %s answers again", self.url)
        self.current = None
