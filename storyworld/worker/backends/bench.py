"""`bench`: renders nothing, stores nothing. Measures the queue's own overhead: a job of
this backend costs the worker one script (report it, take the next) and no encoding,
upload or model. Never offered by default: a worker serves it only with `--backends bench`.
"""

from __future__ import annotations

from storyworld.worker.backends.base import RenderBackend, RenderContext, RenderOutput


class BenchBackend(RenderBackend):
    name = "bench"
    #: Offered only when asked for by name.
    by_name_only = True

    def render(self, ctx: RenderContext) -> RenderOutput:
        return RenderOutput(fps=ctx.job.spec.fps, nothing=True)
