"""Per-process state of a load test, attached to Locust's Environment at init."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sonic_bench.loadgen.options import LoadgenOptions
from sonic_bench.loadgen.scale import EventPlan, plan_events
from sonic_bench.loadgen.steps import StepLog
from sonic_bench.triton.client import EncodedBatches, Endpoint, InferClient
from sonic_bench.workload.pool import BatchPool, dataset_pool, simulated_pool

ATTRIBUTE = "sonic_bench"


@dataclass
class LoadgenContext:
    options: LoadgenOptions
    endpoint: Endpoint
    pool: BatchPool
    plans: list[EventPlan]
    encoded: EncodedBatches
    offsets: list[int]  # index of each plan's first batch in `encoded`
    steps: StepLog = field(default_factory=StepLog)
    finished_staircase: bool = False
    step_listeners: list = field(default_factory=list)

    def new_client(self) -> InferClient:
        return InferClient(self.endpoint, self.options.model, self.encoded)

    def batch_indices(self, event: int) -> range:
        i = event % len(self.plans)
        return range(self.offsets[i], self.offsets[i] + len(self.plans[i].batches))

    def plan(self, event: int) -> EventPlan:
        return self.plans[event % len(self.plans)]

    def enter_step(self, users: int) -> None:
        current = self.steps.current
        if current is None or current.users != users:
            step = self.steps.begin(users, time.time())
            for listener in self.step_listeners:
                listener(step)


def build_context(options: LoadgenOptions, events_in_pool: int = 1) -> LoadgenContext:
    if options.workload_file:
        pool = dataset_pool(options.workload_file, options.batch_setting, events_in_pool)
    else:
        pool = simulated_pool(options.batch_setting, n_events=events_in_pool, seed=options.seed)
    plans = plan_events(
        pool, options.event_scale, options.other_seconds, options.preprocess_seconds
    )
    arrays, offsets = [], []
    for plan in plans:
        offsets.append(len(arrays))
        arrays += [b.patches for b in plan.batches]
    endpoint = Endpoint(options.url, options.protocol)  # type: ignore[arg-type]
    encoded = EncodedBatches(endpoint.protocol, arrays, shared_memory=False)
    return LoadgenContext(options, endpoint, pool, plans, encoded, offsets)


def context_of(environment) -> LoadgenContext:
    """This process's context, waiting (cooperatively) while it is still being built."""
    return getattr(environment, ATTRIBUTE).get()
