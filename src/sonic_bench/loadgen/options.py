"""The custom Locust arguments (shown in the web UI too) and their validated form.

Locust prints `--help` before it imports the locustfile, so these options do not show
there; `python -m sonic_bench.loadgen.options` prints them, and the web UI shows them.
The target is Locust's own `-H/--host` (the web UI's Host field); `--url` is an alias.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.staircase import Staircase
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING
from sonic_bench.results.schema import check_label
from sonic_bench.runs.options import (
    SERVE_PORTS,
    TargetOptions,
    add_target_options,
    target_options,
)
from sonic_bench.runs.target import direct

PAPER_STAIRCASE = "1,2,5,10,20,50,100,200,300,400"
REDUCED_EVENT_SCALE = 0.02  # the CPU server saturates early; the stairs take ~13 minutes


def add_arguments(parser) -> None:
    target = parser.add_argument_group(
        "sonic-bench target (shared with sonic-bench sweep)",
        "-H/--host names the server as --url does; without either, sonic-bench serve's",
    )
    add_target_options(
        target,
        "small (~235), large (~1693, the default) or N for the ProtoDUNE-SP workload "
        "(the batch-size setting); N or LOW..HIGH for any other data (default 1)",
        batch_aliases=("--batch-size",),
    )
    group = parser.add_argument_group("sonic-bench jobs", "grid jobs between their requests")
    group.add_argument(
        "--requests-per-event",
        type=int,
        default=1,
        help="requests per full event for a model not fed the ProtoDUNE-SP workload (its "
        "events decide their own)",
    )
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
    group.add_argument("--results", default="results", help="folder for the run")
    group.add_argument("--label", default="loadgen", help="run label")
    group.add_argument("--max-retries", type=int, default=5, help="retries of a failed request")
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
    target: TargetOptions
    event_scale: float
    other_seconds: float
    preprocess_seconds: float
    burn_cpu: bool
    other_jitter: float
    staircase: tuple[int, ...]  # empty: plain -u/-r
    step_seconds: float
    step_seconds_per_user: float
    workload_file: Path | None
    results: Path
    label: str
    max_retries: int
    max_failed_events: int = 10
    requests_per_event: int = 1
    metrics: str = "auto"
    metrics_url: str = ""
    prometheus_url: str = ""
    prometheus_port: int = 9090

    @property
    def url(self) -> str:
        """host:port of the server: the target's, else `sonic-bench serve`'s."""
        return self.target.url or f"127.0.0.1:{SERVE_PORTS[self.target.protocol]}"

    @property
    def protocol(self) -> str:
        return self.target.protocol

    @property
    def model(self) -> str:
        return self.target.model or MODEL_DYNAMIC_BATCHING

    @property
    def batch(self) -> str | None:
        return self.target.batches[0] if self.target.batches else None

    def endpoint(self) -> Endpoint:
        return self.target.endpoint(self.url)

    @property
    def triton_metrics_urls(self) -> tuple[str, ...]:
        """The server's /metrics, or every replica's behind a gateway."""
        if self.target.replica_metrics_urls:
            return self.target.replica_metrics_urls
        host = self.url.rsplit(":", 1)[0]
        return (self.metrics_url or f"http://{host}:8002/metrics",)

    def replica_endpoints(self) -> tuple[Endpoint, ...]:
        """Behind a gateway: each --replica, spoken to directly for its statistics."""
        endpoint = self.endpoint()
        return tuple(direct(endpoint, url) for url in self.target.replica_urls)

    def settings(self) -> dict:
        """What decides the load a process sends: recorded per worker, compared with the
        master's."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target"}
        # As the values arrive from a worker (msgpack): paths as text, tuples as lists.
        plain = {
            k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in values.items()
        }
        return plain | self.target.settings()

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
    if parsed.requests_per_event < 1:
        raise SonicBenchError(f"--requests-per-event {parsed.requests_per_event}: give 1 or more")
    if "," in (parsed.model or ""):
        raise SonicBenchError(
            f"--model {parsed.model}: a Locust run's jobs call one model (a sweep takes a list)"
        )
    if parsed.max_retries < 0 or parsed.max_failed_events < 0:
        raise SonicBenchError("--max-retries and --max-failed-events must not be negative")
    if not (math.isfinite(parsed.event_scale) and 0 < parsed.event_scale <= 1):
        raise SonicBenchError(f"--event-scale {parsed.event_scale}: use a value in (0, 1]")
    for name in _NON_NEGATIVE:
        value = getattr(parsed, name)
        if not (math.isfinite(value) and value >= 0):
            raise SonicBenchError(f"{_flag(name)} {value}: give a finite number from 0 up")
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
    target = target_options(parsed, host if host is not None else getattr(parsed, "host", None))
    if len(target.batches) > 1:
        raise SonicBenchError(
            f"--batch {','.join(target.batches)}: a Locust run sends one batch setting; "
            "run one per value (a sweep takes a list)"
        )
    return LoadgenOptions(
        target=target,
        event_scale=parsed.event_scale,
        other_seconds=parsed.other_seconds,
        preprocess_seconds=parsed.preprocess_seconds,
        burn_cpu=parsed.burn_cpu,
        other_jitter=parsed.other_jitter,
        staircase=_staircase(parsed.staircase),
        step_seconds=parsed.step_seconds,
        step_seconds_per_user=parsed.step_seconds_per_user,
        workload_file=Path(parsed.workload_file) if parsed.workload_file else None,
        results=Path(parsed.results),
        label=parsed.label,
        max_retries=parsed.max_retries,
        max_failed_events=parsed.max_failed_events,
        requests_per_event=parsed.requests_per_event,
        metrics=parsed.metrics,
        metrics_url=parsed.metrics_url,
        prometheus_url=parsed.prometheus_url,
        prometheus_port=parsed.prometheus_port,
    )


def help_parser() -> argparse.ArgumentParser:
    """The Locust file's own options as a parser of their own (its help, the reference)."""
    parser = argparse.ArgumentParser(
        prog="locust -f loadgen/sonic.py", description="sonic-bench options (besides Locust's)"
    )
    add_arguments(parser)
    return parser


def main() -> None:
    """Print the sonic-bench options of the Locust file (Locust's --help cannot)."""
    help_parser().print_help()


if __name__ == "__main__":
    main()
