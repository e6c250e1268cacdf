"""What a Locust process needs to send a grid job's requests: the workload and endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sonic_bench.loadgen.options import LoadgenOptions
from sonic_bench.loadgen.scale import EventPlan, plan_events
from sonic_bench.triton.client import EncodedBatches, Endpoint, InferClient
from sonic_bench.workload.pool import dataset_pool, simulated_pool


@dataclass(frozen=True)
class LoadgenContext:
    options: LoadgenOptions
    endpoint: Endpoint
    plans: tuple[EventPlan, ...]
    encoded: EncodedBatches
    offsets: tuple[int, ...]  # index of each plan's first batch in `encoded`

    def new_client(self) -> InferClient:
        return InferClient(self.endpoint, self.options.model, self.encoded)

    def batch_indices(self, event: int) -> range:
        i = event % len(self.plans)
        return range(self.offsets[i], self.offsets[i] + len(self.plans[i].batches))

    def plan(self, event: int) -> EventPlan:
        return self.plans[event % len(self.plans)]


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
    endpoint = Endpoint(
        options.url,
        options.protocol,  # type: ignore[arg-type]
        timeout_s=options.timeout_s,
        connect_timeout_s=options.connect_timeout_s,
    )
    encoded = EncodedBatches(arrays)
    return LoadgenContext(options, endpoint, tuple(plans), encoded, tuple(offsets))
