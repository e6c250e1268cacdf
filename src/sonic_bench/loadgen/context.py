"""What a Locust process needs to send a grid job's requests: the workload and endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.loadgen.options import LoadgenOptions
from sonic_bench.loadgen.scale import EventPlan, plan_events, plan_model_events
from sonic_bench.workload.plan import RequestSet, plan_requests
from sonic_bench.workload.pool import BatchPool, dataset_pool, simulated_pool

# Distinct batches a job replays when the model is not fed the ProtoDUNE-SP workload.
MODEL_BATCHES = 64


@dataclass(frozen=True)
class LoadgenContext:
    options: LoadgenOptions
    endpoint: Endpoint
    server_info: dict  # what the server said of the model (check_server)
    requests: RequestSet
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


def build_context(
    options: LoadgenOptions, server_info: dict, events_in_pool: int = 1
) -> LoadgenContext:
    """The jobs' events for the model the server described in `server_info`."""

    def pool_for(setting: int) -> BatchPool:
        if options.workload_file:
            return dataset_pool(options.workload_file, setting, events_in_pool)
        return simulated_pool(setting, n_events=events_in_pool, seed=options.target.seed)

    inputs = options.target.inputs(options.batch)
    requests = plan_requests(server_info["signature"], inputs, MODEL_BATCHES, pool_for)
    if requests.pool is not None:
        plans = plan_events(
            requests.pool, options.event_scale, options.other_seconds, options.preprocess_seconds
        )
    else:
        plans = plan_model_events(
            requests.batches,
            options.requests_per_event,
            options.event_scale,
            options.other_seconds,
            options.preprocess_seconds,
        )
    endpoint = options.endpoint()
    requests.signature.check_sendable(
        max(b.size for plan in plans for b in plan.batches), endpoint.shared_memory
    )
    batches, offsets = [], []
    for plan in plans:
        offsets.append(len(batches))
        batches += plan.batches
    encoded = EncodedBatches(batches, requests.signature)
    return LoadgenContext(
        options, endpoint, server_info, requests, tuple(plans), encoded, tuple(offsets)
    )
