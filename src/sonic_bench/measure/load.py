"""Load drivers: closed loop (N workers, one request in flight each) and open loop
(requests at scheduled times, constant or Poisson, latency counted from the schedule so
that a slow server cannot hide its queue: no coordinated omission)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from sonic_bench.measure.records import Clock, RequestLog, RequestRecord
from sonic_bench.triton.client import InferClient, InferError

ERROR_BACKOFF_S = 0.05  # a failing server is not hammered in a tight loop


class LoadDriver(Protocol):
    log: RequestLog

    def start(self) -> None: ...
    def stop(self) -> None: ...


class _Workers:
    """Threads that each own a client and loop until stopped."""

    def __init__(self, make_client: Callable[[], InferClient], workers: int, clock: Clock):
        self.make_client = make_client
        self.clock = clock
        self.log = RequestLog(workers)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True, name=f"sonic-worker-{w}")
            for w in range(workers)
        ]
        self.setup_errors: list[str] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, worker: int) -> None:
        try:
            client = self.make_client()
        except Exception as e:  # reported by the level, not swallowed
            self.setup_errors.append(f"{type(e).__name__}: {e}")
            return
        try:
            self._loop(worker, client)
        finally:
            client.close()

    def _send(self, worker: int, client: InferClient, index: int, scheduled: float | None):
        sent = self.clock.now()
        try:
            size = client.infer(index)
            error = None
        except InferError as e:
            size, error = client.batches.sizes[index], str(e)
        record = RequestRecord(
            worker,
            scheduled if scheduled is not None else sent,
            sent,
            self.clock.now(),
            size,
            error,
        )
        self.log.per_worker[worker].append(record)
        if error:
            self._stop.wait(ERROR_BACKOFF_S)

    def _loop(self, worker: int, client: InferClient) -> None:
        raise NotImplementedError


class ClosedLoop(_Workers):
    """`concurrency` workers, each sending its next batch as soon as the last returns."""

    def _loop(self, worker: int, client: InferClient) -> None:
        index = worker  # workers start on different batches
        while not self._stop.is_set():
            self._send(worker, client, index % len(client.batches), None)
            index += 1


def schedule(rate: float, poisson: bool, seed: int = 0) -> Iterator[float]:
    """Offsets (s) of the sends from the start."""
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate) if poisson else 1.0 / rate
        yield t


class OpenLoop(_Workers):
    """Sends at scheduled times with up to `max_in_flight` requests outstanding."""

    def __init__(self, make_client, rate: float, poisson: bool, max_in_flight: int, clock: Clock):
        super().__init__(make_client, max_in_flight, clock)
        self._schedule = schedule(rate, poisson)
        self._lock = threading.Lock()
        self._begin = 0.0
        self._next_index = 0

    def start(self) -> None:
        self._begin = self.clock.now()
        super().start()

    def _next(self) -> tuple[float, int]:
        with self._lock:
            index = self._next_index
            self._next_index += 1
            return self._begin + next(self._schedule), index

    def _loop(self, worker: int, client: InferClient) -> None:
        while not self._stop.is_set():
            due, index = self._next()
            wait = due - self.clock.now()
            if wait > 0 and self._stop.wait(wait):
                return
            self._send(worker, client, index % len(client.batches), due)


def wait_until(clock: Clock, when: float) -> None:
    remaining = when - clock.now()
    if remaining > 0:
        time.sleep(remaining)
