"""All sonic-bench state of one Locust process, on its Environment as one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult

from sonic_bench.loadgen.context import LoadgenContext
from sonic_bench.loadgen.options import LoadgenOptions

if TYPE_CHECKING:
    from sonic_bench.loadgen.recorder import RecordBuffer, RunRecorder

ATTRIBUTE = "sonic_bench"


@dataclass
class LoadgenState:
    options: LoadgenOptions
    pending: AsyncResult = field(default_factory=AsyncResult)  # the LoadgenContext, once built
    buffer: RecordBuffer | None = None  # where users run: their records until the next flush
    recorder: RunRecorder | None = None  # on the leading process, while a run is recorded
    warnings: list[str] = field(default_factory=list)
    step_watcher: Any = None  # the greenlet that fires sonic_step, while recording
    stop_reason: str | None = None  # set when the run must end early (the shape ends it)
    lost_worker: bool = False  # a worker stopped reporting mid-run
    sent_last: set[str] = field(default_factory=set)  # workers whose last records came

    def context(self) -> LoadgenContext:
        """The context, waiting (cooperatively) while it is still being built."""
        return self.pending.get()

    def warn_once(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def state_of(environment) -> LoadgenState:
    state = getattr(environment, ATTRIBUTE, None)
    if state is None:
        raise RuntimeError("sonic-bench's Locust listeners are not installed (import hooks)")
    return state


def context_of(environment) -> LoadgenContext:
    return state_of(environment).context()
