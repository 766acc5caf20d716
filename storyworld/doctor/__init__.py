"""`storyworld doctor`: every check that applies to this machine, one line each.

The deployment guide's checklist (configure `.env`, check the Redis URL, the R2
credentials, `nvidia-smi`) and its troubleshooting page as one command: each finding says
what was checked and, when it is not right, what to do. Nothing is changed, except a probe
object written to and deleted from the bucket. No secret is ever shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from storyworld.config import Settings
from storyworld.doctor.report import Check, Report, Status

__all__ = ["ROLES", "Check", "Report", "Status", "guess_role", "run_doctor"]

ROLES = ("engine", "worker", "console")


def guess_role(settings: Settings | None) -> tuple[str, str]:
    """(role, why): a worker when WORKER_BACKENDS is set or on a RunPod pod, else engine."""
    if settings is not None and settings.worker_backends.strip():
        return "worker", "guessed from WORKER_BACKENDS"
    if os.environ.get("RUNPOD_POD_ID"):
        return "worker", "guessed from RUNPOD_POD_ID"
    return "engine", "guessed: no WORKER_BACKENDS"


def run_doctor(
    env_file: str | None = ".env", role: str | None = None, home: str | None = None
) -> Report:
    """Run the checks of `role` (default: guessed from the settings)."""
    from storyworld.doctor.settings_checks import check_settings

    settings, checks = check_settings(env_file)
    if settings is not None and home:
        settings = settings.with_overrides(home=Path(home).expanduser())
    if role:
        source = "from --role"
    else:
        role, source = guess_role(settings)
    report = Report(role=role, role_source=source, checks=checks)
    if settings is None:
        report.add(Check("doctor", Status.SKIP, "other checks skipped until the settings load"))
        return report
    from storyworld.doctor.redis_checks import check_redis

    redis_checks, client = check_redis(settings, role)
    report.add(*redis_checks)
    if client is not None:
        client.close()
    from storyworld.doctor.storage_checks import check_storage

    report.add(*check_storage(settings))
    if role in ("engine", "console"):
        from storyworld.doctor.database_checks import check_database

        report.add(*check_database(settings))
    if role == "worker":
        from storyworld.doctor.worker_checks import check_worker

        report.add(*check_worker(settings))
    return report
