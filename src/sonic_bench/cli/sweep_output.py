"""How a sweep shows itself: a line per window as it goes, a table per configuration."""

from __future__ import annotations

from sonic_bench.analysis.report import budget_line
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


def print_summary(sweep: SweepRun) -> None:
    config, results = sweep.configuration, sweep.results
    print(f"\n{config.model}, {sweep.tag} (average batch {sweep.average_batch:,.0f}):")
    open_loop = any(r.level.rate is not None for r in results)
    nan = float("nan")
    rows = []
    for r in results:
        row = r.row
        cells = [
            r.level.concurrency if r.level.rate is None else f"{r.level.rate:g}/s",
            row.get("inferences_per_s", nan),
            row.get("latency_ms_p50", nan),
            row.get("latency_ms_p99", nan),
            (row.get("server_queue_us") or nan) / 1000,
            (row.get("server_compute_infer_us") or nan) / 1000,
            row.get("server_batch_avg") or nan,
            int(row.get("errors") or 0),
            "yes" if r.stability is Stability.STABLE else "NO",
        ]
        rows.append([*cells, row.get("send_lag_ms", nan)] if open_loop else cells)
    headers = ["load", "inf/s", "p50 ms", "p99 ms", "queue ms", "compute ms", "exec batch"]
    headers += ["errors"]
    headers += ["stable", "send lag ms"] if open_loop else ["stable"]
    print_table(headers, rows)
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
