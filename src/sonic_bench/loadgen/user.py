"""One grid job as a Locust user: other work, preprocessing, then the module's requests.

Each inference fires Locust's `request` event (so Locust's own statistics see it) with
the send and receive times in its context; each event fires `sonic_event`. The
recorder listens to both.
"""

from __future__ import annotations

import itertools
import random
import time

import gevent
from locust import User, constant
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_STOPPING

from sonic_bench.engine.client import InferError
from sonic_bench.loadgen.state import context_of

_user_numbers = itertools.count()
EVENT_STATS = "event"  # Locust statistics type of the per-event entries
FIRST_BACKOFF_S = 0.5
STOP_CHECK_S = 0.25
MAX_BACKOFF_S = 10.0


def burn_cpu(seconds: float) -> None:
    """Real CPU work standing for reconstruction (only sensible with few users per core)."""
    end = time.perf_counter() + seconds
    x = 1.0
    while time.perf_counter() < end:
        for _ in range(1000):
            x = x * 1.000001 + 1e-9
        gevent.sleep(0)  # let other users' requests progress


class GridJobUser(User):
    """Processes events one after another, like a reconstruction job on a grid CPU."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.context = context_of(self.environment)
        self.client = self.context.new_client()
        self.event_number = random.randrange(len(self.context.plans))
        self.random = random.Random()
        process = getattr(self.environment.runner, "client_id", "local")
        # One id per grid job: its requests and its events can be matched in the results.
        self.worker = f"{process}/{next(_user_numbers)}"

    def on_stop(self) -> None:
        self.client.close()

    def _stop_if_asked(self) -> None:
        """Locust asks users to stop gracefully (with a stop timeout): leave between
        requests, never in the middle of one, so that every request the server counted is
        also recorded."""
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()

    def _pause(self, seconds: float, burn: bool = False) -> None:
        """Wait (or burn CPU) for `seconds`, leaving early if Locust asks the user to stop."""
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            self._stop_if_asked()
            if burn:
                burn_cpu(min(left, STOP_CHECK_S))
            else:
                gevent.sleep(min(left, STOP_CHECK_S))

    def _work(self, seconds: float) -> None:
        self._pause(seconds, burn=self.context.options.burn_cpu)

    def _other_seconds(self, mean: float) -> float:
        """Events differ in their reconstruction time; without spread, users that start
        together stay in lock-step and load the server in bursts."""
        sigma = self.context.options.other_jitter
        if sigma <= 0:
            return mean
        return mean * self.random.lognormvariate(-sigma * sigma / 2, sigma)  # mean preserved

    def reconstruct_event(self) -> None:
        plan = self.context.plan(self.event_number)
        t_start = time.time()
        self._work(self._other_seconds(plan.other_s))
        t_module = time.time()
        self._work(plan.preprocess_s)
        failed = 0
        indices = self.context.batch_indices(self.event_number)
        for done, index in enumerate(indices):
            self._stop_if_asked()
            if not self._send(index):
                # Like the reconstruction module, give up on the event: the requests
                # left are not sent and count as failed.
                failed = len(indices) - done
                break
        t_end = time.time()
        self.environment.events.sonic_event.fire(
            worker=self.worker,
            event=self.event_number,
            t_start=t_start,
            other_s=t_module - t_start,
            module_s=t_end - t_module,
            total_s=t_end - t_start,
            requests=len(plan.batches),
            failed_requests=failed,
        )
        # The paper's key quantity, live in Locust's own statistics (web UI, --csv, --html)
        # as entries of their own beside the inference requests.
        for name, seconds in (("module time", t_end - t_module), ("event total", t_end - t_start)):
            self.environment.events.request.fire(
                request_type=EVENT_STATS,
                name=name,
                response_time=seconds * 1000.0,
                response_length=len(plan.batches),
                exception=InferError(f"{failed} requests failed") if failed else None,
                context={},
            )
        self.event_number += 1

    def _send(self, index: int) -> bool:
        """One blocking request, retried with back-off; False if it never succeeded."""
        backoff = FIRST_BACKOFF_S
        for attempt in range(self.context.options.max_retries + 1):
            t_send = time.time()
            error = None
            try:
                size = self.client.infer(index)
            except InferError as e:
                size, error = self.client.batches.sizes[index], e
            t_recv = time.time()
            self.environment.events.request.fire(
                request_type=self.context.endpoint.protocol,
                name=self.context.options.model,
                response_time=(t_recv - t_send) * 1000.0,
                response_length=size,
                exception=error,
                context={"sonic": True, "t_send": t_send, "t_recv": t_recv, "worker": self.worker},
            )
            if error is None:
                return True
            if attempt < self.context.options.max_retries:
                self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return False
