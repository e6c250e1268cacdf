"""Pictures of the results: module time against clients with the fitted model (the
paper's Fig. 5), throughput and latency curves, server series over time (its Fig. 4)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sonic_bench.analysis.runs import LoadedRun
from sonic_bench.analysis.summary import LoadgenSummary, SweepSummary


def module_time_plot(summaries: list[LoadgenSummary], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, summary in enumerate(summaries):
        colour = f"C{i}"
        events = summary.run.events
        jitter = np.random.default_rng(i).uniform(0.93, 1.07, len(events))
        ax.scatter(events.users * jitter, events.module_s, s=4, alpha=0.25, color=colour)
        levels = summary.levels
        ax.plot(levels.users, levels.module_median_s, "o", color=colour, label=summary.label)
        result = summary.saturation
        if result and result.saturated:
            n = np.geomspace(levels.users.min(), levels.users.max(), 200)
            model = result.flat_module_s + result.slope_s_per_client * np.maximum(
                0, n - result.n_sat
            )
            knee = f"knee {result.n_sat:.0f} [{result.n_sat_low:.0f}, {result.n_sat_high:.0f}]"
            ax.plot(n, model, "--", color=colour, label=f"fit: {knee}")
            ax.axvspan(result.n_sat_low, result.n_sat_high, color=colour, alpha=0.08)
        if summary.prediction is not None:
            p = summary.prediction
            n = np.geomspace(levels.users.min(), levels.users.max(), 200)
            knee = f"knee {p.n_sat.value:.0f} [{p.n_sat.low:.0f}, {p.n_sat.high:.0f}]"
            ax.plot(n, p.module_time(n), ":", lw=2, color=colour, label=f"asymptotes: {knee}")
            curve = summary.curve
            if curve is not None:
                central, low, high = curve.at(n)
                ax.plot(n, central, "-", lw=1.2, color=colour, label="queueing network (MVA)")
                ax.fill_between(n, low, high, color=colour, alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simultaneous CPU processes (Locust users)")
    ax.set_ylabel("EmTrackMichelId module time per event (s)")
    ax.set_title(
        "Module time against jobs: fit (dashed), asymptotes (dotted), queueing network (solid)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tail_percentile(summaries: list[SweepSummary]) -> str:
    """The highest percentile every run reports (`--percentiles`): p99 by default."""
    for p in ("p99", "p95", "p90"):
        column = f"latency_ms_{p}"
        if all(
            pd.to_numeric(s.run.steps[column], errors="coerce").notna().any() for s in summaries
        ):
            return p
    return "p50"


def throughput_plot(summaries: list[SweepSummary], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    tail = _tail_percentile(summaries)
    for i, summary in enumerate(summaries):
        steps = summary.run.steps.dropna(subset=["concurrency"])
        left.plot(
            steps.concurrency, steps.inferences_per_s, "o-", color=f"C{i}", label=summary.label
        )
        tail_ms = steps[f"latency_ms_{tail}"]
        right.plot(steps.inferences_per_s, tail_ms, "o-", color=f"C{i}")
        right.plot(steps.inferences_per_s, steps.latency_ms_p50, "x:", color=f"C{i}")
        for c, x, y in zip(steps.concurrency, steps.inferences_per_s, tail_ms, strict=True):
            right.annotate(f"{c:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if summary.saturation:
            left.axvline(summary.saturation.knee_concurrency, color=f"C{i}", alpha=0.3, ls="--")
    left.set_ylim(bottom=0)  # noise should look like noise, not like a trend
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrency (requests in flight)")
    left.set_ylabel("inferences / s")
    left.set_title("Throughput (dashed: knee, 95% of the maximum)")
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_xlabel("inferences / s")
    right.set_ylabel(f"latency (ms): {tail} solid, p50 dotted")
    right.set_title("Latency against throughput (labels: concurrency)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


RATE_WINDOW = 10  # samples: a merged execution of many requests lands in one scrape


def _rate(frame: pd.DataFrame, metric: str, model: str | None) -> pd.Series:
    rows = frame[frame.metric == metric]
    if model is not None and "model" in rows:
        rows = rows[rows["model"] == model]
    series = rows.groupby("t").value.sum().sort_index()
    times = series.index.to_series()
    rate = series.diff(RATE_WINDOW) / times.diff(RATE_WINDOW)
    return rate.where(rate >= 0)  # a counter reset (server restart) is a gap, not a dip


def server_series_plot(run: LoadedRun, path: Path) -> Path | None:
    frame = run.metrics
    if frame is None or frame.empty:
        return None
    model = run.manifest.server.model
    t0 = frame.t.min()
    inferences = _rate(frame, "nv_inference_count", model)
    executions = _rate(frame, "nv_inference_exec_count", model)
    batch = (inferences / executions).where(executions > 0)
    util_metric = (
        "nv_gpu_utilization"
        if (frame.metric == "nv_gpu_utilization").any()
        else "nv_cpu_utilization"
    )
    util = frame[frame.metric == util_metric].groupby("t").value.mean()
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(inferences.index - t0, inferences.values)
    axes[0].set_ylabel(f"server inferences / s\n({RATE_WINDOW}-sample average)")
    axes[1].plot(util.index - t0, util.values * 100)
    axes[1].set_ylabel(f"{'GPU' if 'gpu' in util_metric else 'CPU'} utilization (%)")
    axes[2].plot(batch.index - t0, batch.values, ".")
    axes[2].set_ylabel("executed batch size")
    axes[2].set_xlabel("seconds since the first sample")
    starts = pd.to_datetime(run.steps.started_at, utc=True).astype("int64") / 1e9
    for ax in axes:
        for t in starts:
            ax.axvline(t - t0, color="grey", alpha=0.4, ls=":")
        ax.grid(True, alpha=0.3)
    axes[0].set_title(f"{run.run_id}: server side (dotted: load levels)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
