"""Limits on every field that crosses a process boundary.

A message over a limit is refused where it is built (the engine never queues it) and, if
one arrives anyway, dead-lettered or ignored by its reader with the reason. The numbers
are generous for real scripts and small enough that no single message can keep a worker
or the engine busy for long (a 5 MB beat text once held a worker at 100 % CPU).
"""

from __future__ import annotations

__all__ = [
    "MAX_ARTIFACTS",
    "MAX_CAPTIONS",
    "MAX_CAPTION_CHARS",
    "MAX_ERROR_CHARS",
    "MAX_ID_CHARS",
    "MAX_JOB_BYTES",
    "MAX_KEY_CHARS",
    "MAX_OPTIONS_BYTES",
    "MAX_PROMPT_CHARS",
    "MAX_RESULT_BYTES",
    "MAX_SEED",
    "MAX_TEXT_CHARS",
    "MAX_TITLE_CHARS",
    "MAX_UPLOADS",
    "MAX_WAKE_BYTES",
]

#: A beat's text (the planner refuses longer beats with the line number).
MAX_TEXT_CHARS = 4000
#: Scene heading, title.
MAX_TITLE_CHARS = 300
#: Dialogue lines attached to one beat, and the length of each.
MAX_CAPTIONS = 64
MAX_CAPTION_CHARS = 500
#: Negative prompt and any other free prompt text.
MAX_PROMPT_CHARS = 2000
#: Backend-specific options of a job, as JSON.
MAX_OPTIONS_BYTES = 16 * 1024
#: A whole job message (JSON bytes).
MAX_JOB_BYTES = 64 * 1024
#: A whole result message (JSON bytes); artifacts and uploads are bounded in count.
MAX_RESULT_BYTES = 256 * 1024
MAX_ARTIFACTS = 64
MAX_UPLOADS = 64
#: An error text in a result or a dead letter is cut to this length (never refused).
MAX_ERROR_CHARS = 4000
#: Store keys.
MAX_KEY_CHARS = 500
#: Worker, engine, job and episode identifiers.
MAX_ID_CHARS = 128
#: Seeds are stored as SQL BIGINT: 0 <= seed < 2**63.
MAX_SEED = 2**63 - 1
#: A wake nudge.
MAX_WAKE_BYTES = 1024
