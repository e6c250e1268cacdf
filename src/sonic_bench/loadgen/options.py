"""The custom Locust arguments (shown in the web UI too) and their validated form.

Locust prints `--help` before it imports the locustfile, so these options do not show
there; `python -m sonic_bench.loadgen.options` prints them, and the web UI shows them.
The target is Locust's own `-H/--host` (the web UI's Host field); `--url` is an alias.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.staircase import Staircase
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING
from sonic_bench.results.schema import check_label
from sonic_bench.runs.target import normalize_url
from sonic_bench.triton.client import DEFAULT_CONNECT_TIMEOUT_S, check_timeouts
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.event import DEFAULT_SEED

PAPER_STAIRCASE = "1,2,5,10,20,50,100,200,300,400"
# At 400 jobs a request queues behind up to 399 others: on the embedded CPU server one of
# ~1,700 patches then waits about 80 s. A grid job's wait is the figure, not a fault.
DEFAULT_JOB_TIMEOUT_S = 300.0
REDUCED_EVENT_SCALE = 0.02  # the CPU server saturates early; the stairs take ~13 minutes


def add_arguments(parser) -> None:
    group = parser.add_argument_group("sonic-bench", "grid jobs sending EmTrackMichelId requests")
    group.add_argument(
        "--url", default="127.0.0.1:8000", help="Triton host:port, when -H/--host is not given"
    )
    group.add_argument("--protocol", choices=["http", "grpc"], default="http")
    group.add_argument("--model", default=MODEL_DYNAMIC_BATCHING, help="model to call")
    group.add_argument("--batch-size", default="small", help="small (~235), large (~1693) or N")
    group.add_argument(
        "--event-scale",
        type=float,
        default=REDUCED_EVENT_SCALE,
        help="fraction of a full event's requests and of its CPU work (1 = paper scale)",
    )
    group.add_argument(
        "--other-seconds", type=float, default=110.0, help="non-ML work per full event (s)"
    )
    group.add_argument(
        "--preprocess-seconds", type=float, default=7.0, help="patch preparation per full event"
    )
    group.add_argument(
        "--other-jitter",
        type=float,
        default=0.2,
        help="relative spread of the other work per event (real events differ; 0 = none)",
    )
    group.add_argument("--burn-cpu", action="store_true", help="other work burns CPU, not waits")
    group.add_argument(
        "--staircase", default=PAPER_STAIRCASE, help="user counts; 'off' for plain -u/-r"
    )
    group.add_argument("--step-seconds", type=float, default=20.0, help="least hold per step")
    group.add_argument(
        "--step-seconds-per-user", type=float, default=0.5, help="extra hold per user"
    )
    group.add_argument("--workload-file", default="", help="workload file (default: simulate)")
    group.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    group.add_argument("--results", default="results", help="folder for the run")
    group.add_argument("--label", default="loadgen", help="run label")
    group.add_argument("--max-retries", type=int, default=5, help="retries of a failed request")
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_JOB_TIMEOUT_S,
        help="seconds a request may wait for its answer before it fails (and is retried); "
        "a job waits behind every other job's requests, so longer than a sweep's",
    )
    group.add_argument(
        "--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, help="TCP and TLS"
    )
    group.add_argument(
        "--max-failed-events",
        type=int,
        default=10,
        help="stop the run after this many failed events in a row (0: never)",
    )
    group.add_argument(
        "--metrics",
        choices=["auto", "prometheus", "direct", "off"],
        default="auto",
        help="server metrics: start Prometheus (auto falls back to reading /metrics)",
    )
    group.add_argument(
        "--metrics-url", default="", help="Triton /metrics (default: --url host:8002)"
    )
    group.add_argument("--prometheus-url", default="", help="an existing Prometheus")
    group.add_argument("--prometheus-port", type=int, default=9090)


@dataclass(frozen=True)
class LoadgenOptions:
    url: str
    protocol: str
    model: str
    batch_setting: int
    event_scale: float
    other_seconds: float
    preprocess_seconds: float
    burn_cpu: bool
    other_jitter: float
    staircase: tuple[int, ...]  # empty: plain -u/-r
    step_seconds: float
    step_seconds_per_user: float
    workload_file: Path | None
    seed: int
    results: Path
    label: str
    max_retries: int
    max_failed_events: int = 10
    timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    metrics: str = "auto"
    metrics_url: str = ""
    prometheus_url: str = ""
    prometheus_port: int = 9090

    @property
    def triton_metrics_url(self) -> str:
        host = self.url.rsplit(":", 1)[0]
        return self.metrics_url or f"http://{host}:8002/metrics"

    def settings(self) -> dict:
        """What decides the load a process sends: recorded per worker, compared with the
        master's."""
        values = asdict(self)
        # As the values arrive from a worker (msgpack): paths as text, tuples as lists.
        return {
            k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in values.items()
        }

    def hold_seconds(self, users: int) -> float:
        return self.step_seconds + self.step_seconds_per_user * users

    def staircase_schedule(self) -> Staircase | None:
        """The staircase to run, or None when -u/-r/-t drive the test."""
        if not self.staircase:
            return None
        return Staircase(self.staircase, tuple(self.hold_seconds(u) for u in self.staircase))


def _staircase(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "off", "none"):
        return ()
    try:
        steps = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        steps = ()
    if not steps or any(s < 1 for s in steps):
        raise SonicBenchError(f"--staircase {text!r}: give user counts like 1,2,5 or 'off'")
    return steps


def target_url(host: str | None, url: str) -> str:
    """host:port of Triton, from Locust's -H/--host (scheme optional) or --url."""
    chosen = (host or url or "").strip()
    return normalize_url(chosen, False)[0]


# Options that are seconds or fractions: finite and not negative (NaN and inf refused).
_NON_NEGATIVE = (
    "other_seconds",
    "preprocess_seconds",
    "step_seconds",
    "step_seconds_per_user",
    "other_jitter",
)


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _check(parsed) -> None:
    """Every sonic-bench value (and Locust's -u/-r, which the staircase-off shape uses)
    as the command line, the environment or the web UI gave it: one error naming it."""
    if parsed.max_retries < 0 or parsed.max_failed_events < 0:
        raise SonicBenchError("--max-retries and --max-failed-events must not be negative")
    if not (math.isfinite(parsed.event_scale) and 0 < parsed.event_scale <= 1):
        raise SonicBenchError(f"--event-scale {parsed.event_scale}: use a value in (0, 1]")
    for name in _NON_NEGATIVE:
        value = getattr(parsed, name)
        if not (math.isfinite(value) and value >= 0):
            raise SonicBenchError(f"{_flag(name)} {value}: give a finite number from 0 up")
    check_timeouts(parsed.timeout, parsed.connect_timeout)
    if parsed.seed < 0:
        raise SonicBenchError(f"--seed {parsed.seed}: give a number from 0 up")
    if not 1 <= parsed.prometheus_port <= 65535:
        raise SonicBenchError(f"--prometheus-port {parsed.prometheus_port}: give 1 to 65535")
    check_label(parsed.label)
    spawn_rate = getattr(parsed, "spawn_rate", None)
    if spawn_rate is not None and not (math.isfinite(spawn_rate) and spawn_rate > 0):
        raise SonicBenchError(f"spawn rate (-r) {spawn_rate}: give a positive number of users/s")
    users = getattr(parsed, "num_users", None)
    if users is not None and users < 0:
        raise SonicBenchError(f"users (-u) {users}: give a number from 0 up")


def from_parsed(parsed, host: str | None = None) -> LoadgenOptions:
    _check(parsed)
    return LoadgenOptions(
        url=target_url(host if host is not None else getattr(parsed, "host", None), parsed.url),
        protocol=parsed.protocol,
        model=parsed.model,
        batch_setting=parse_batch_setting(parsed.batch_size),
        event_scale=parsed.event_scale,
        other_seconds=parsed.other_seconds,
        preprocess_seconds=parsed.preprocess_seconds,
        burn_cpu=parsed.burn_cpu,
        other_jitter=parsed.other_jitter,
        staircase=_staircase(parsed.staircase),
        step_seconds=parsed.step_seconds,
        step_seconds_per_user=parsed.step_seconds_per_user,
        workload_file=Path(parsed.workload_file) if parsed.workload_file else None,
        seed=parsed.seed,
        results=Path(parsed.results),
        label=parsed.label,
        max_retries=parsed.max_retries,
        max_failed_events=parsed.max_failed_events,
        timeout_s=parsed.timeout,
        connect_timeout_s=parsed.connect_timeout,
        metrics=parsed.metrics,
        metrics_url=parsed.metrics_url,
        prometheus_url=parsed.prometheus_url,
        prometheus_port=parsed.prometheus_port,
    )


def main() -> None:
    """Print the sonic-bench options of the Locust file (Locust's --help cannot)."""
    parser = argparse.ArgumentParser(
        prog="locust -f loadgen/sonic.py", description="sonic-bench options (besides Locust's)"
    )
    add_arguments(parser)
    parser.print_help()


if __name__ == "__main__":
    main()
