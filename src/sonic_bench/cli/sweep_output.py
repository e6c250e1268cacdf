"""How a sweep shows itself: a line per window as it goes, a table per configuration."""

from __future__ import annotations

from sonic_bench.analysis.analyze import analyze
from sonic_bench.analysis.report import (
    VARIANT_HEADERS,
    accuracy_lines,
    budget_line,
    variant_table_rows,
)
from sonic_bench.analysis.throughput import saturation
from sonic_bench.cli.common import print_table, progress
from sonic_bench.measure.level import Level
from sonic_bench.measure.windows import Stability, WindowStats
from sonic_bench.runs.sweep import SweepRun


def show_window(level: Level, window: WindowStats, stability: Stability) -> None:
    errors = f", {window.errors} FAILED" if window.errors else ""
    progress(
        f"  {level.label}: {window.throughput:,.0f} inf/s, avg {window.avg_ms:,.1f} ms, "
        f"p99 {window.p99_ms:,.1f} ms, {window.requests} requests{errors} [{stability.value}]"
    )


def _shown_percentiles(results) -> list[int]:
    """p50 and the highest percentile the run reports."""
    reported = [
        p for p in (50, 90, 95, 99) if any(_number(r.row.get(f"latency_ms_p{p}")) for r in results)
    ]
    return sorted({reported[0], reported[-1]}) if reported else [50]


def _number(value) -> bool:
    return value is not None and value == value


def _latency(row: dict, p: int, bounded: bool) -> object:
    value = row.get(f"latency_ms_p{p}")
    if not _number(value):
        return float("nan")
    return f"<={value:,.1f}" if bounded else float(value)


def print_summary(sweep: SweepRun) -> None:
    config, results = sweep.configuration, sweep.results
    print(f"\n{config.model}, {sweep.tag} (average batch {sweep.average_batch:,.0f}):")
    open_loop = any(r.level.rate is not None for r in results)
    nan = float("nan")
    rows = []
    shown = _shown_percentiles(results)
    for r in results:
        row = r.row
        bounded = str(row.get("bounded_percentiles") or "").split()
        cells = [
            r.level.concurrency if r.level.rate is None else f"{r.level.rate:g}/s",
            row.get("inferences_per_s", nan),
            *(_latency(row, p, f"p{p}" in bounded) for p in shown),
            (row.get("server_queue_us") or nan) / 1000,
            (row.get("server_compute_infer_us") or nan) / 1000,
            row.get("server_batch_avg") or nan,
            int(row.get("errors") or 0),
            "yes" if r.stability is Stability.STABLE else "NO",
            row.get("verdict") or "-",
        ]
        rows.append([*cells, row.get("send_lag_ms", nan)] if open_loop else cells)
    headers = ["load", "inf/s", *(f"p{p} ms" for p in shown)]
    headers += ["queue ms", "compute ms", "exec batch", "errors", "stable", "verdict"]
    headers += ["send lag ms"] if open_loop else []
    print_table(headers, rows)
    if any(r.row.get("bounded_percentiles") for r in results):
        print("<= : too few answers for that percentile: its 95% early-stopping upper bound")
    verdict = sweep.verdict
    print(f"result: {verdict.text}")
    for reason in verdict.reasons:
        print(f"  {reason}")
    closed = [r for r in results if r.level.rate is None]
    throughputs = [r.row.get("inferences_per_s", nan) for r in closed]
    sat = saturation([r.level.concurrency for r in closed], throughputs)
    if sat:
        print(
            f"saturation: {sat.max_inferences_per_s:,.0f} inf/s "
            f"at concurrency {sat.at_concurrency:g}; "
            f"95% of it from concurrency {sat.knee_concurrency:g}"
        )
    if sweep.budget is not None:
        print(budget_line(sweep.budget))
    if sweep.status != "complete":
        print(f"status: {sweep.status} ({sweep.errors} failed requests; see the warnings)")
    print(f"results: {sweep.folder}")


def print_variants(sweeps: list[SweepRun]) -> None:
    """Speed and drift per model, read back from the run folders just written (the same
    table `sonic-bench analyze` gives)."""
    folders = [s.folder for s in sweeps] + [s.accuracy.folder for s in sweeps if s.accuracy]
    analysis = analyze(folders)
    print("\naccuracy beside speed (served answers against FP32 in-process):")
    print_table(VARIANT_HEADERS, variant_table_rows(analysis.variants))
    for s in sweeps:
        if s.accuracy is not None:
            for line in accuracy_lines(s.accuracy.summary):
                print(line)
            for warning in s.accuracy.warnings:
                progress(f"warning: {s.accuracy.folder.name}: {warning}")
