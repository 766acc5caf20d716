"""`bench`: renders nothing, stores nothing. Measures the queue's own overhead: a job of
this backend costs the worker one script (report it, take the next) and no encoding,
upload or model. Never offered by default: a worker serves it only with `--backends bench`.

`spec.options["sleep_s"]` makes a job take that long (stoppable, for the chaos suite);
`spec.options["fail"]` makes it fail permanently with that message, and
`spec.options["ignore_stop"]` makes the sleep ignore a request to stop (a hung render).
"""

from __future__ import annotations

import time

from storyworld.worker.backends.base import (
    PermanentRenderError,
    RenderBackend,
    RenderContext,
    RenderOutput,
)


class BenchBackend(RenderBackend):
    name = "bench"
    #: Offered only when asked for by name.
    by_name_only = True

    def render(self, ctx: RenderContext) -> RenderOutput:
        opts = ctx.job.spec.options
        sleep_s = float(opts.get("sleep_s", 0) or 0)
        if sleep_s > 0 and opts.get("ignore_stop"):
            time.sleep(sleep_s)  # a render stuck where it cannot look at the stop request
        elif sleep_s > 0:
            ctx.cancel_event.wait(sleep_s)
            ctx.check_cancelled()
        if opts.get("fail"):
            raise PermanentRenderError(str(opts["fail"]))
        return RenderOutput(fps=ctx.job.spec.fps, nothing=True)
