"""A doctor's findings: one `Check` per thing looked at, printed one line each."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storyworld.config import redact

__all__ = ["Check", "Report", "Status"]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


GLYPHS = {Status.OK: "✓", Status.WARN: "⚠", Status.FAIL: "✗", Status.SKIP: "-"}


@dataclass
class Check:
    """One finding. `fix` says in words what to do, for a warning or a failure."""

    id: str
    status: Status
    summary: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{GLYPHS[self.status]} {self.id}: {self.summary}"
        if self.fix and self.status in (Status.WARN, Status.FAIL):
            text += f" — fix: {self.fix}"
        return redact(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "area": self.id.split(".")[0],
            "status": self.status.value,
            "summary": self.summary,
            "fix": self.fix,
            "data": self.data,
        }


@dataclass
class Report:
    role: str
    role_source: str
    checks: list[Check] = field(default_factory=list)

    def add(self, *checks: Check) -> None:
        self.checks.extend(checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status == s for c in self.checks) for s in Status}

    @property
    def ok(self) -> bool:
        return not any(c.status == Status.FAIL for c in self.checks)

    def text(self) -> str:
        n = self.counts()
        tail = (
            f"{n['ok']} ok, {n['warn']} warnings, {n['fail']} failed"
            + (f", {n['skip']} skipped" if n["skip"] else "")
            + f" (role {self.role}, {self.role_source})"
        )
        return "\n".join([*(c.line() for c in self.checks), tail])

    def as_json(self) -> str:
        doc = {
            "role": self.role,
            "role_source": self.role_source,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.as_dict() for c in self.checks],
        }
        # The whole document goes through redact: no secret in any field, however it got
        # there (an error message from a library, say).
        return redact(json.dumps(doc, indent=2, sort_keys=True, default=str))
