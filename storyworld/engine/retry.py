"""Retry policy: what a failed attempt leads to. Transient errors (out of memory, timeout,
429, network) retry with exponential backoff and jitter up to MAX_ATTEMPTS; permanent ones
fail at once, or fall back to another backend where one is configured or asked for."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from storyworld.config import Settings
from storyworld.engine.models import Beat, BeatState, Episode, JobRow, transition

__all__ = ["Decision", "RetryPolicy", "backoff_delay"]


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full-range jitter (0.5x to 1.5x)."""
    raw = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return raw * (0.5 + rng.random())


@dataclass(frozen=True)
class Decision:
    action: str  # "fallback" | "retry" | "fail"
    backend: str
    delay_s: float
    reason: str


class RetryPolicy:
    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Backoff before attempt `attempt + 1` of anything transient (renders, composing)."""
        s = self.settings
        return backoff_delay(attempt, s.retry_base_s, s.retry_max_s, self.rng)

    def configured_fallback(self, backend: str) -> str | None:
        for pair in self.settings.fallback_backends.split(","):
            src, _, dst = pair.partition("=")
            if src.strip() == backend and dst.strip():
                return dst.strip()
        if backend == "veo" and self.settings.veo_fallback_backend:
            return self.settings.veo_fallback_backend
        return None

    def decide(
        self,
        backend: str,
        used: int,
        attempt: int,
        error: str,
        *,
        transient: bool,
        fallback: str | None,
    ) -> Decision:
        """`used`: attempts counted against the limit (since the operator's last retry)."""
        fallback = fallback or self.configured_fallback(backend)
        if fallback and fallback != backend and not transient:
            return Decision(
                "fallback",
                fallback,
                0.0,
                f"attempt {attempt} failed permanently on {backend} ({error}); "
                f"falling back to {fallback}",
            )
        if transient and used < self.settings.max_attempts:
            delay = self.delay(used)
            target = fallback if fallback and fallback != backend else backend
            return Decision(
                "retry",
                target,
                delay,
                f"attempt {attempt} failed ({error}); retry in {delay:.1f} s",
            )
        why = "permanent error" if not transient else f"{used} attempts failed"
        return Decision("fail", backend, 0.0, f"{why}: {error}")

    def after_failure(
        self,
        s: Session,
        beat: Beat,
        episode: Episode,
        job: JobRow,
        error: str,
        *,
        transient: bool,
        fallback: str | None,
    ) -> Decision:
        """Apply the decision for the beat's current attempt `job` to the models."""
        beat.error = error
        d = self.decide(
            beat.backend,
            beat.attempts - beat.retry_offset,
            job.attempt,
            error,
            transient=transient,
            fallback=fallback,
        )
        if d.action == "fail":
            transition(s, beat, BeatState.FAILED, d.reason)
            episode.fail(s, f"beat {beat.index} failed: {error}")
            return d
        beat.backend = d.backend
        beat.not_before = time.time() + d.delay_s if d.delay_s else 0.0
        transition(s, beat, BeatState.PENDING, d.reason)
        return d
