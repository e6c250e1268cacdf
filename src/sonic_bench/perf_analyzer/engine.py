"""A load level measured by NVIDIA's perf_analyzer instead of the native engine.

Same server, same model, same realistic patches (its `--input-data` JSON, one entry per
patch, base64), same windows and stability rule, the batch size the native engine sends
on average; its CSV report becomes the level's steps.csv row, and the server's own
statistics and Prometheus are read around it as for the native engine.
"""

from __future__ import annotations

import base64
import ctypes
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic_bench.engine.client import EncodedBatches
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import Level, LevelHooks, MeasurementSettings
from sonic_bench.measure.measured import MeasuredLevel
from sonic_bench.measure.windows import Stability
from sonic_bench.model.emtrackmichel import SIGNATURE as EMTRACKMICHEL_SIGNATURE
from sonic_bench.model.signature import ModelSignature, TensorSpec, tensor_bytes
from sonic_bench.perf_analyzer.report import read_passes, read_report, to_step, unstable_step
from sonic_bench.process import SHM_FOLDER, Leftovers, LeftoversGuard
from sonic_bench.results.schema import iso_utc
from sonic_bench.triton.stats import StatsReader

UNSTABLE = "Failed to obtain stable measurement"
POLLER_CRASH = "epoll_wait error"
POLLER_RETRIES = 2  # two crashes in a row seen (2026-12-07, its client on one CPU)


def find_binary() -> Path:
    """perf_analyzer beside this Python (make setup puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "perf_analyzer"
    found = beside if beside.exists() else shutil.which("perf_analyzer")
    if found is None:
        raise SonicBenchError(
            "perf_analyzer not found: run 'make setup' (it installs .venv/bin/perf_analyzer) "
            "or put NVIDIA's perf_analyzer on PATH"
        )
    return Path(found)


def write_input_data(
    batches: EncodedBatches, path: Path, batch_size: int, shared_memory: bool = False
) -> Path:
    """perf_analyzer's JSON input: one entry per sample, every input base64 (it fills a
    batch of B with B consecutive entries, wrapping around), enough for two different
    batches in a row.

    With `--shared-memory system` it creates a region of a whole batch for every entry
    (2 x 1,693 entries took 23 GB of /dev/shm before the kernel killed it) but sends
    every request from the first (perf_analyzer 2.50, concurrency 1-8, HTTP and gRPC: the
    server's mapping of region 0 referenced, of the 7 others not a page). There it gets
    one entry, and the native engine's like-for-like mode replays one batch
    (`uniform_batches`): whether the server copies from cache or from RAM decides the
    figure (zero-compute model, batch 224: compute input 46 us for one batch, 80 us for
    eight in turn)."""
    signature = batches.signature
    total = sum(batches.sizes)
    if shared_memory:
        keep = 1
        per_sample = sum(s.sample_bytes or 0 for s in signature.inputs)
        _check_shared_memory_room(batch_size * per_sample)
    else:
        keep = min(total, max(2 * batch_size, 512))
    entries = []
    for batch in batches.batches:
        for row in range(batch.size if signature.batching else 1):
            if len(entries) == keep:
                break
            entries.append(
                {
                    spec.name: {"b64": _b64(tensor[row] if signature.batching else tensor, spec)}
                    for spec, tensor in zip(signature.inputs, batch.tensors, strict=True)
                }
            )
    path.write_text(json.dumps({"data": entries}))
    return path


def _b64(sample: np.ndarray, spec: TensorSpec) -> str:
    return base64.b64encode(tensor_bytes(sample, spec.datatype)).decode()


def _check_shared_memory_room(needed: int) -> None:
    free = shutil.disk_usage(SHM_FOLDER).free
    if needed > free // 2:
        raise SonicBenchError(
            f"perf_analyzer with shared memory needs {needed / 1e9:.1f} GB of {SHM_FOLDER} "
            f"({free / 1e9:.1f} GB free): free some of it or send smaller batches (--batch)"
        )


def shared_memory_leftovers(signature: ModelSignature) -> Leftovers:
    """perf_analyzer's system shared-memory regions: `<input>_<n>_<step>` for each input,
    and each output's name without its slashes."""
    inputs = tuple(f"{spec.name.replace('/', '')}_" for spec in signature.inputs)
    outputs = tuple(spec.name.replace("/", "") for spec in signature.outputs)
    return Leftovers(shm_prefixes=(*inputs, *outputs))


@dataclass(frozen=True)
class PerfAnalyzerLevel:
    step: int
    level: Level
    row: dict  # the steps.csv row
    span: tuple[float, float]
    stability: Stability
    warnings: tuple[str, ...] = ()


def command(
    binary: Path,
    endpoint: Endpoint,
    model: str,
    level: Level,
    batch_size: int,
    data: Path,
    settings: MeasurementSettings,
    report: Path,
    signature: ModelSignature = EMTRACKMICHEL_SIGNATURE,
) -> list[str]:
    args = [
        str(binary),
        "-m", model,
        "-u", ("https://" if endpoint.ssl and endpoint.protocol == "http" else "") + endpoint.url,
        "-i", endpoint.protocol,
        "-b", str(batch_size if signature.batching else 1),
        "--input-data", str(data),
        "-p", str(round(settings.window_s * 1000)),
        "-r", str(settings.max_windows),
        "-s", f"{settings.rule.tolerance * 100:g}",
        "-f", str(report),
        "--verbose-csv",
        "-v",  # its windows, for a level that never becomes stable (no report then)
    ]  # fmt: skip
    if settings.rule.latency == "p99":
        args += ["--percentile", "99"]
    if settings.window_requests:
        args += ["--measurement-mode", "count_windows"]
        args += ["--measurement-request-count", str(settings.window_requests)]
    if level.rate is None:
        args += ["--concurrency-range", f"{level.concurrency}:{level.concurrency}"]
    else:
        args += ["--request-rate-range", f"{level.rate:g}:{level.rate:g}"]
        args += ["--request-distribution", "poisson" if level.poisson else "constant"]
    for spec in signature.inputs:  # every input's shape as sent (variable ones need it)
        args += ["--shape", f"{spec.name}:{','.join(map(str, spec.dims))}"]
    if endpoint.shared_memory:
        largest = max(spec.sample_bytes or 0 for spec in signature.outputs)
        args += ["--shared-memory", "system"]
        args += ["--output-shared-memory-size", str(max(batch_size, 1) * largest)]
    args += tls_arguments(endpoint)
    for name, value in endpoint.headers.items():
        args += ["-H", f"{name}:{value}"]
    return args


def tls_arguments(endpoint: Endpoint) -> list[str]:
    """perf_analyzer's spelling of the endpoint's TLS, or one clear error for what it
    cannot do (its gRPC client checks every certificate)."""
    if not endpoint.ssl:
        return []
    tls = endpoint.tls
    if endpoint.protocol == "grpc":
        if tls.insecure:
            raise SonicBenchError(
                "--engine perf_analyzer cannot skip the certificate check over gRPC "
                "(--ssl-insecure): give the server's CA with --ssl-ca, or use the native engine"
            )
        args = ["--ssl-grpc-use-ssl", "true"]
        if tls.ca:
            args += ["--ssl-grpc-root-certifications-file", tls.ca]
        if tls.cert:
            args += ["--ssl-grpc-certificate-chain-file", tls.cert]
            args += ["--ssl-grpc-private-key-file", tls.key]
        return args
    verify = "0" if tls.insecure else "1"
    args = [
        "--ssl-https-verify-peer",
        verify,
        "--ssl-https-verify-host",
        "0" if tls.insecure else "2",
    ]
    if tls.ca:
        args += ["--ssl-https-ca-certificates-file", tls.ca]
    if tls.cert:
        args += ["--ssl-https-client-certificate-file", tls.cert]
        args += ["--ssl-https-private-key-file", tls.key]
    return args


def _run(args, limit: float, level: Level, signature: ModelSignature, shared_memory: bool):
    # Its regions are named after the tensors, not after us; if it dies (killed, out of
    # memory) or the harness does, what it left in /dev/shm is removed all the same.
    guard = LeftoversGuard(shared_memory_leftovers(signature)) if shared_memory else None
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=limit, preexec_fn=_die_with_parent
        )
    except subprocess.TimeoutExpired:
        raise SonicBenchError(
            f"{level.label}: perf_analyzer did not finish in {limit:.0f} s"
        ) from None
    finally:
        if guard is not None:
            guard.close()


def _die_with_parent() -> None:
    """In the child: end when the harness ends, even by SIGKILL (Linux prctl)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_level(
    step: int,
    level: Level,
    endpoint: Endpoint,
    model: str,
    batch_size: int,
    data: Path,
    settings: MeasurementSettings,
    stats: StatsReader | None,
    workdir: Path,
    signature: ModelSignature = EMTRACKMICHEL_SIGNATURE,
) -> PerfAnalyzerLevel:
    report = workdir / f"level{step}.csv"
    args = command(
        find_binary(), endpoint, model, level, batch_size, data, settings, report, signature
    )
    limit = settings.window_s * settings.max_windows * 3 + 120
    warnings: list[str] = []
    for attempt in range(1 + POLLER_RETRIES):
        before = stats.snapshot() if stats else None
        cpu_before, started = _children_cpu_s(), time.time()
        done = _run(args, limit, level, signature, endpoint.shared_memory)
        crashed = POLLER_CRASH in done.stdout + done.stderr and done.returncode != 0
        if not crashed or report.exists() or attempt == POLLER_RETRIES:
            break
        # Its gRPC client has been seen to die in its poller before any report (now and
        # then, either model): measured again, from a fresh count of the server's statistics.
        warnings.append(f"{level.label}: perf_analyzer crashed ({POLLER_CRASH}); measured again")
    ended = time.time()
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "rror" in line] or output.splitlines()
    last_error = (lines or ["?"])[-1]
    reported = report.exists() and report.stat().st_size > 0
    if done.returncode != 0 and UNSTABLE not in output and not reported:
        raise SonicBenchError(f"{level.label}: perf_analyzer failed: {last_error}")
    stability = Stability.UNSTABLE if UNSTABLE in output else Stability.STABLE
    row = {"step": step, "concurrency": level.concurrency, "rate": level.rate}
    if done.returncode != 0 and reported:
        # It has been seen to fail on its way out (gRPC's poller) after writing the report.
        warnings.append(
            f"{level.label}: perf_analyzer exited with {done.returncode} after its report "
            f"({last_error[-160:]})"
        )
    if stability is Stability.STABLE:
        (measured,) = read_report(report)
        row.update(to_step(measured, batch_size))
    else:
        passes = read_passes(output)
        row.update(unstable_step(passes, batch_size))
        warnings.append(
            f"{level.label}: perf_analyzer found no stable measurement in {len(passes)} "
            "windows: its last windows' throughput and mean latency are reported"
        )
    server = stats.snapshot() - before if stats and before else None
    if server is not None:
        row["server_batch_avg"] = server.as_row().get("server_batch_avg")
        row["requests"] = server.counts.get("success", 0)
    cpu = 100.0 * (_children_cpu_s() - cpu_before) / max(ended - started, 1e-9)
    row.update(
        started_at=iso_utc(started),
        ended_at=iso_utc(ended),
        # perf_analyzer stops at a request that fails; the server's own count of failed
        # requests over the level is what it cannot see (a rejection it took for an answer).
        errors=server.failures if server is not None else 0,
        stable=stability is Stability.STABLE,
        client_cpu_percent=cpu,
    )
    return PerfAnalyzerLevel(step, level, row, (started, ended), stability, tuple(warnings))


@dataclass
class PerfAnalyzerEngine:
    """NVIDIA's perf_analyzer behind the engine boundary (`engine.boundary`): the same
    batches written once as its input data, one run of it per level."""

    endpoint: Endpoint
    model: str
    batch_size: int
    data: Path  # its --input-data, written by `prepare`
    settings: MeasurementSettings
    stats: StatsReader | None
    workdir: Path
    signature: ModelSignature
    hooks: LevelHooks
    name: str = "perf_analyzer"

    @classmethod
    def prepare(
        cls,
        batches: EncodedBatches,
        endpoint: Endpoint,
        model: str,
        batch_size: int,
        settings: MeasurementSettings,
        stats: StatsReader | None,
        workdir: Path,
        hooks: LevelHooks,
    ) -> PerfAnalyzerEngine:
        tls_arguments(endpoint)  # what it cannot do, refused before any level
        data = write_input_data(batches, workdir / "input.json", batch_size, endpoint.shared_memory)
        return cls(
            endpoint, model, batch_size, data, settings, stats, workdir, batches.signature, hooks
        )

    def measure(self, step: int, level: Level) -> MeasuredLevel:
        measured = measure_level(
            step, level, self.endpoint, self.model, self.batch_size, self.data, self.settings,
            self.stats, self.workdir, self.signature,
        )  # fmt: skip
        for message in measured.warnings:
            self.hooks.warning(message)
        return MeasuredLevel(
            level, measured.row, measured.span, measured.stability, (), measured.warnings
        )
