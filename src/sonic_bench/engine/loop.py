"""Load drivers: closed loop (N requests in flight, each followed at once by the next)
and open loop (requests at scheduled times, constant or Poisson, latency counted from the
schedule so that a slow server cannot hide its queue: no coordinated omission).

One thread drives every request in flight, each on a non-blocking connection of its own
(an event loop over the sockets, as perf_analyzer's async mode or an asyncio client).
Worker threads, one per request in flight, lost 10-25% of the throughput on fast
shared-memory requests at concurrency 2-8 against a loop over the same connections
(GIL hand-offs: every answer wakes a thread that must win the GIL back), and hundreds of
them cost memory for nothing: the work in Python is ~20-30 us a request either way.
"""

from __future__ import annotations

import contextlib
import math
import resource
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sonic_bench.engine.client import InferClient, InferError
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.records import Clock, RequestLog

ERROR_BACKOFF_S = 0.05  # a failing server is not hammered in a tight loop
STOP_POLL_S = 0.05  # how soon the loop notices stop() while nothing happens
READ, WRITE = select.EPOLLIN, select.EPOLLOUT


class LoadDriver(Protocol):
    log: RequestLog
    failure: str | None  # why the driver stopped on its own, if it did

    def start(self) -> None: ...
    def stop(self) -> None: ...


# Descriptors beside the connections: the server's and Prometheus' pipes, log files,
# epoll, shared-memory regions, Python's own.
SPARE_DESCRIPTORS = 128


def ensure_descriptors(connections: int) -> None:
    """Room for `connections` sockets: the soft limit raised up to the hard one when it
    is short, else one clear error (a socket that cannot open fails mid-level)."""
    needed = connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise SonicBenchError(
        f"{connections} connections need about {needed} open files, and this shell allows "
        f"{hard} (ulimit -n): raise it (ulimit -n {max(4096, needed)}) or lower the load"
    )


def schedule(rate: float, poisson: bool, seed: int = 0) -> Iterator[float]:
    """Offsets (s) of the sends from the start."""
    rng = np.random.default_rng(seed)
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate) if poisson else 1.0 / rate
        yield t


@dataclass
class _Slot:
    """One connection and the request on it, if any."""

    number: int
    client: InferClient
    index: int = -1  # the batch in flight
    scheduled: float = 0.0
    sent: float = 0.0
    busy: bool = False
    ready_at: float = 0.0  # after an error: not before this
    watched: tuple[int, int] = (-1, 0)  # (fd, connection) registered with the selector
    events: int = 0


class _EventLoop:
    """`slots` non-blocking clients driven from one thread; subclasses say what to send
    next and when."""

    def __init__(
        self,
        make_client: Callable[[], InferClient],
        slots: int,
        clock: Clock,
        busy_poll_s: float = 0.0,
    ):
        self.make_client = make_client
        self.clock = clock
        self.busy_poll_s = busy_poll_s
        self.log = RequestLog()
        self.failure: str | None = None
        self._slots_wanted = slots
        self._idle: list[_Slot] = []  # waiting for their next send
        self._in_flight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sonic-load")
        # epoll itself, not `selectors`: its key objects cost a few us an answer, and at
        # sub-millisecond requests every us the client spends shows in the figure.
        self._poll = select.epoll()
        self._watching: dict[int, _Slot] = {}  # descriptor -> its slot

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No new request; those in flight are answered (or time out) first, so that
        every request the server counts is a record here."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        slots: list[_Slot] = []
        try:
            for number in range(self._slots_wanted):
                client = self.make_client()
                client.set_blocking(False)
                slots.append(_Slot(number, client))
        except Exception as e:  # reported by the level, not swallowed
            self.failure = f"a client could not start: {type(e).__name__}: {e}"
        self._idle = list(slots)
        try:
            if self.failure is None:
                self._drive(slots)
        except Exception as e:  # a bug here must end the level, not stall it
            self.failure = f"the load driver failed: {type(e).__name__}: {e}"
            raise
        finally:
            for slot in slots:
                slot.client.close()
            self._poll.close()

    def _drive(self, slots: list[_Slot]) -> None:
        # Timeouts are checked a few times per timeout, at most every STOP_POLL_S.
        check_every = min([STOP_POLL_S, *(s.client.endpoint.timeout_s / 4 for s in slots)])
        next_check = 0.0
        while True:
            now = self.clock.now()
            stopping = self._stop.is_set()
            if self._idle and not stopping:
                self._send_due(now)
            if stopping and not self._in_flight:
                return
            if now >= next_check:
                self._expire(slots, now)
                next_check = now + check_every
            if self.failure is not None:
                return self._abandon(slots)
            wait = max(0.0, min(self._wait_s(now), next_check - now))
            watching = self._watching
            for fd, mask in self._ready(wait):
                if (slot := watching.get(fd)) is not None:
                    self._on_event(slot, mask)

    def _ready(self, wait: float) -> list[tuple[int, int]]:
        """The sockets ready within `wait` seconds: polled without sleeping for up to
        busy_poll_s while requests are out, then waited for."""
        if self.busy_poll_s and self._in_flight:
            until = time.perf_counter() + min(self.busy_poll_s, wait)
            while not (ready := self._poll.poll(0)):
                if time.perf_counter() >= until:
                    break
            if ready:
                return ready
        # Whole milliseconds up (epoll's unit): a shorter wait would return at once.
        return self._poll.poll(math.ceil(wait * 1e3) * 1e-3)

    def _send_due(self, now: float) -> None:
        """Send on idle slots what is due by `now`."""
        raise NotImplementedError

    def _answered(self, slot: _Slot) -> None:
        """What a slot does once its request is answered (it is idle then)."""
        raise NotImplementedError

    def _wait_s(self, now: float) -> float:
        """How long the loop may sleep: until the next send that waits for a time."""
        waiting = [s.ready_at - now for s in self._idle]
        return max(0.0, min([STOP_POLL_S, *waiting]))

    def _send(self, slot: _Slot, index: int, scheduled: float | None = None) -> None:
        """Begin batch `index` on an idle `slot`; `scheduled`: when it was due (open
        loop)."""
        self._idle.remove(slot)
        self._in_flight += 1
        slot.index, slot.busy = index, True
        slot.sent = self.clock.now()
        slot.scheduled = slot.sent if scheduled is None else scheduled
        try:
            slot.client.begin(index)
        except InferError as e:
            self._done(slot, None, str(e))
            return
        self._watch(slot)

    def _on_event(self, slot: _Slot, mask: int) -> None:
        if not slot.busy:
            # Between requests the server may drain the connection (GOAWAY) or close it:
            # heard now, the next request goes on a new connection instead of failing.
            if not slot.client.on_idle_readable() or mask & ~(READ | WRITE):
                self._unwatch(slot)
            return
        try:
            if mask & ~READ:  # writable, or an error or hang-up that the write will raise
                slot.client.flush()
            size = slot.client.advance() if mask & ~WRITE else None
        except InferError as e:
            self._done(slot, None, str(e))
            return
        if size is not None:
            self._done(slot, size, None)
        else:
            self._watch(slot)

    def _expire(self, slots: list[_Slot], now: float) -> None:
        """A request past the client's timeout fails (its connection goes with it), and
        ends the level: a server this slow gives no figure worth waiting for, and every
        further request would wait as long."""
        for slot in slots:
            if not slot.busy:
                continue
            if (stalled := slot.client.connect_overdue()) is not None:
                # One replica that does not accept fails its own requests, not the level.
                slot.client.close()
                self._done(slot, None, stalled)
                continue
            limit = slot.client.endpoint.timeout_s
            if now - slot.sent > limit:
                slot.client.close()
                self._done(slot, None, f"TimeoutError: no answer within {limit:g} s")
                self.failure = (
                    f"requests timed out (no answer within {limit:g} s): the server stalls, "
                    "or give a longer --timeout"
                )

    def _abandon(self, slots: list[_Slot]) -> None:
        """The level ends early: requests still out are records too, failed."""
        for slot in slots:
            if slot.busy:
                slot.client.close()
                self._done(slot, None, f"abandoned: {self.failure}")

    def _done(self, slot: _Slot, size: int | None, error: str | None) -> None:
        received = self.clock.now()
        worker, scheduled, sent = slot.number, slot.scheduled, slot.sent
        slot.busy = False
        self._in_flight -= 1
        self._idle.append(slot)
        if error is None:
            # First the slot's next request (closed loop: at once), then the books.
            if not self._stop.is_set():
                self._answered(slot)
        else:
            size = slot.client.batches.sizes[slot.index]
            slot.ready_at = received + ERROR_BACKOFF_S
        if not slot.busy and slot.client.connection_key() != slot.watched:
            # Its connection closed (an error, or the server's "Connection: close"): the
            # descriptor may come back as another slot's socket.
            self._unwatch(slot)
        self.log.append(worker, scheduled, sent, received, size, error)

    def _watch(self, slot: _Slot) -> None:
        """Readable always; writable while some of the request waits to go."""
        events = READ | WRITE if slot.client.wants_write else READ
        watched = slot.client.connection_key()
        if watched != slot.watched:
            self._unwatch(slot)
            self._poll.register(watched[0], events)
            self._watching[watched[0]] = slot
        elif events != slot.events:
            self._poll.modify(watched[0], events)
        else:
            return
        slot.watched, slot.events = watched, events

    def _unwatch(self, slot: _Slot) -> None:
        fd = slot.watched[0]
        # A closed socket has left epoll already, and its number may be another's now.
        if fd >= 0 and self._watching.get(fd) is slot:
            del self._watching[fd]
            with contextlib.suppress(OSError, ValueError):
                self._poll.unregister(fd)
        slot.watched, slot.events = (-1, 0), 0


class ClosedLoop(_EventLoop):
    """`concurrency` requests in flight, each answer followed at once by the next."""

    def _send_due(self, now: float) -> None:
        for slot in [s for s in self._idle if s.ready_at <= now]:
            self._send_next(slot)

    def _answered(self, slot: _Slot) -> None:
        self._send_next(slot)

    def _send_next(self, slot: _Slot) -> None:
        # Each slot walks the batches from its own start, as workers did.
        index = slot.number if slot.index < 0 else slot.index + 1
        self._send(slot, index % len(slot.client.batches))


class EachOnce(ClosedLoop):
    """A closed loop that sends every batch `passes` times, in order, by whichever of
    `concurrency` slots is free, then stops sending (the accuracy mode: each answer kept,
    none sent twice by chance); `finished` is set once every request has its record,
    answered or failed."""

    def __init__(self, make_client, concurrency: int, clock: Clock, passes: int = 1):
        super().__init__(make_client, concurrency, clock)
        self.passes = passes
        self.finished = threading.Event()
        self._next = 0  # requests begun
        self._recorded = 0

    def _send_next(self, slot: _Slot) -> None:
        count = len(slot.client.batches)
        if self._next < count * self.passes:
            self._next += 1
            self._send(slot, (self._next - 1) % count)

    def _done(self, slot: _Slot, size: int | None, error: str | None) -> None:
        super()._done(slot, size, error)
        self._recorded += 1
        if self._recorded >= len(slot.client.batches) * self.passes:
            self.finished.set()

    def run(self) -> None:
        """Start, wait until every request has its record (or the loop gave up on a
        stalled server, `failure`), stop."""
        self.start()
        while not self.finished.wait(STOP_POLL_S):
            if not self._thread.is_alive():
                break
        self.stop()


class OpenLoop(_EventLoop):
    """Sends at scheduled times with up to `max_in_flight` requests outstanding; a send
    that finds every slot busy waits, and its latency counts the wait."""

    def __init__(
        self,
        make_client,
        rate: float,
        poisson: bool,
        max_in_flight: int,
        clock: Clock,
        busy_poll_s: float = 0.0,
    ):
        super().__init__(make_client, max_in_flight, clock, busy_poll_s)
        self._schedule = schedule(rate, poisson)
        self._begin: float | None = None
        self._next_due = 0.0
        self._next_index = 0

    def _send_due(self, now: float) -> None:
        if self._begin is None:
            self._begin = now
            self._next_due = now + next(self._schedule)
        free = [s for s in self._idle if s.ready_at <= now]
        while self._next_due <= now and free:
            due, self._next_due = self._next_due, self._begin + next(self._schedule)
            slot = free.pop()
            self._send(slot, self._next_index % len(slot.client.batches), due)
            self._next_index += 1

    def _answered(self, slot: _Slot) -> None:
        pass  # the schedule, not the answer, says when the next request goes

    def _wait_s(self, now: float) -> float:
        wait = super()._wait_s(now)
        if self._begin is not None and self._idle:
            wait = min(wait, max(0.0, self._next_due - now))
        return wait


def wait_until(clock: Clock, when: float) -> None:
    remaining = when - clock.now()
    if remaining > 0:
        time.sleep(remaining)
