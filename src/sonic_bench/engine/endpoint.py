"""Where the server is and how the engine talks to it: URL, protocol, TLS, headers,
deadlines. Shared by the engine's connections and tritonclient's admin calls."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from sonic_bench.errors import SonicBenchError

Protocol = Literal["grpc", "http"]
# A request queues behind every other in flight: at 400 clients of ~1,700 patches each a
# CPU server answers the last after ~80 s. A grid job's wait is the figure, not a fault.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how to talk to it."""

    url: str  # host:port
    protocol: Protocol = "grpc"
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    shared_memory: bool = False
    # Every wait has a bound: an inference request or admin call that is not answered
    # within timeout_s fails, and so does a connection (TCP and TLS) not made within
    # connect_timeout_s. A server that reads and never answers must not hold a run.
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        check_timeouts(self.timeout_s, self.connect_timeout_s)


def check_timeouts(timeout_s: float, connect_timeout_s: float) -> None:
    for name, value in (("--timeout", timeout_s), ("--connect-timeout", connect_timeout_s)):
        if not (math.isfinite(value) and value > 0):
            raise SonicBenchError(f"{name} {value:g}: give a positive number of seconds")
