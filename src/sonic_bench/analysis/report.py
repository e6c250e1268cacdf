"""report.md: the analysis of a set of runs as a person reads it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sonic_bench.accuracy.drift import AccuracySummary
from sonic_bench.analysis.repeats import RepeatedConfiguration, Spread
from sonic_bench.analysis.summary import (
    AccuracyRunSummary,
    BaselineSummary,
    LoadgenSummary,
    StoryRow,
    SweepSummary,
    VariantRow,
    device_figures,
    level_verdicts,
    replica_levels,
)
from sonic_bench.analysis.throughput import BudgetAnswer


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if v != v else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def baseline_rows(b: BaselineSummary):
    return [
        (
            int(r.threads),
            int(r.processes),
            r.batch_size,
            r.inferences_per_s,
            r.seconds_per_55k,
            r.verdict if isinstance(r.verdict, str) else "-",
        )
        for r in b.table.itertuples()
    ]


def level_verdict_lines(s: SweepSummary) -> list[str]:
    """Why each INVALID level is so; nothing for a VALID run."""
    lines = []
    for level in level_verdicts(s.run.steps):
        if level["verdict"] in (None, "VALID"):
            continue
        load = level["concurrency"] if level["rate"] is None else f"{level['rate']:g}/s"
        load = f"{load:g}" if isinstance(load, float) else load
        lines.append(f"{s.run.run_id} load {load}: INVALID: {'; '.join(level['reasons'])}")
    return lines


def repeat_headers(repeated: list[RepeatedConfiguration]) -> tuple[str, ...]:
    percentiles = _repeated_percentiles(repeated)
    return (
        "configuration",
        "load",
        "n",
        "inf/s mean",
        "95% t-interval",
        "CV",
        *(f"{p} ms mean [95%] (CV)" for p in percentiles),
    )


def _repeated_percentiles(repeated: list[RepeatedConfiguration]) -> list[str]:
    found = {m for c in repeated for lv in c.levels for m in lv.metrics}
    return [p for p in ("p50", "p90", "p95", "p99") if f"latency_ms_{p}" in found]


def _interval(spread: Spread | None) -> str:
    if spread is None or spread.n < 2:
        return "-"
    if abs(spread.mean) >= 100:
        return f"[{spread.low:,.0f}, {spread.high:,.0f}]"
    return f"[{spread.low:.3g}, {spread.high:.3g}]"


def _cv(spread: Spread | None) -> str:
    return "-" if spread is None or spread.cv is None else f"{spread.cv:.1%}"


def _spread_cell(spread: Spread | None) -> str:
    if spread is None:
        return "-"
    mean = f"{spread.mean:,.0f}" if abs(spread.mean) >= 100 else f"{spread.mean:.3g}"
    return f"{mean} {_interval(spread)} ({_cv(spread)})"


def repeat_rows(repeated: list[RepeatedConfiguration]):
    percentiles = _repeated_percentiles(repeated)
    rows = []
    for config in repeated:
        for i, level in enumerate(config.levels):
            x = level.metrics.get("inferences_per_s")
            rows.append(
                (
                    config.label if i == 0 else "",
                    f"{level.load:g}",
                    x.n if x else 0,
                    x.mean if x else None,
                    _interval(x),
                    _cv(x),
                    *(_spread_cell(level.metrics.get(f"latency_ms_{p}")) for p in percentiles),
                )
            )
    return rows


def repeat_lines(repeated: list[RepeatedConfiguration]) -> list[str]:
    lines = []
    for config in repeated:
        sat = config.saturated
        if sat is not None and sat.n >= 2:
            lines.append(
                f"{config.label}: saturated throughput {sat.mean:,.0f} inf/s, 95% t-interval "
                f"{_interval(sat)}, CV {_cv(sat)} over {sat.n} runs"
            )
    return lines


REPLICA_HEADERS = ("load", "replica", "inf/s", "share", "exec batch", "answering")
DEVICE_HEADERS = ("run", "configuration", "at", "GPU utilization", "GPU power W", "J / 1000 inf")


def device_rows(sweeps: list[SweepSummary]):
    """The GPUs at each sweep's saturation, for the sweeps whose server has GPUs."""
    rows = []
    for s in sweeps:
        if (d := device_figures(s)) is None:
            continue
        rows.append(
            (
                s.run.run_id,
                s.label,
                f"{d.concurrency:g}",
                _maybe(d.utilization, ".0%"),
                _maybe(d.power_w, ",.0f"),
                _maybe(d.joules_per_1000_inferences, ",.2f"),
            )
        )
    return rows


def replica_rows(s: SweepSummary):
    """Each replica's part of each level: its throughput and executed batch size."""
    return [
        (
            r["concurrency"],
            r["replica"],
            r["inferences_per_s"],
            "-" if r["share"] is None else f"{r['share']:.0%}",
            r["server_batch_avg"],
            "yes" if r["reachable"] else "no (lost)",
        )
        for r in replica_levels(s.run)
    ]


def budget_line(answer: BudgetAnswer) -> str:
    head = f"p99 budget {answer.budget_ms:g} ms: "
    stopped = (
        ""
        if answer.without_p99_at is None
        else f"concurrency {answer.without_p99_at:g} has no p99 to judge "
        "(too few answers to bound it: lengthen --window)"
    )
    if answer.concurrency is None:
        return head + (stopped or "even the lowest level exceeds it")
    return (
        f"{head}at most concurrency {answer.concurrency:g}, "
        f"{answer.inferences_per_s:,.0f} inf/s (p99 {answer.p99_ms:,.1f} ms)"
        + (f"; {stopped}" if stopped else "")
    )


def sweep_notes(s: SweepSummary) -> list[str]:
    """What to say under the sweeps' table: a budget search's answer, then warnings."""
    return ([budget_line(s.budget)] if s.budget else []) + list(s.warnings)


def sweep_rows(sweeps: list[SweepSummary]):
    rows = []
    for s in sweeps:
        sat = s.saturation
        rows.append(
            (
                s.run.run_id,
                s.label,
                sat.max_inferences_per_s if sat else None,
                sat.at_concurrency if sat else None,
                sat.knee_concurrency if sat else None,
                s.baseline_ratio,
                s.verdict.text if s.verdict else "-",
            )
        )
    return rows


STORY_HEADERS = (
    "batch",
    "dynamic batching",
    "saturation inf/s",
    "at",
    "knee",
    "/ CPU-only best",
    "executed batch",
    "stable",
    "VALID",
)


def story_rows(story: list[StoryRow]):
    return [
        (
            f"~{r.avg_batch:.0f} ({r.batch_setting})",
            "on" if r.dynamic_batching else "off",
            r.max_inferences_per_s,
            r.at_concurrency,
            r.knee_concurrency,
            r.ratio_to_in_process,
            r.executed_batch,
            r.stable_levels,
            r.valid_levels,
        )
        for r in story
    ]


def story_text(story: list[StoryRow]) -> list[str]:
    """One sentence per batch size: what dynamic batching did there."""
    lines = []
    for setting in sorted({r.batch_setting for r in story}):
        pair = {r.dynamic_batching: r for r in story if r.batch_setting == setting}
        on, off = pair.get(True), pair.get(False)
        if on and off:
            gain = on.max_inferences_per_s / off.max_inferences_per_s
            lines.append(
                f"batch ~{on.avg_batch:.0f}: {on.max_inferences_per_s:,.0f} inf/s with dynamic "
                f"batching (executed batches of {on.executed_batch:,.0f}), "
                f"{off.max_inferences_per_s:,.0f} without: {gain:.2f}x"
            )
    return lines


def _knee(s: LoadgenSummary) -> tuple[str, str]:
    r = s.saturation
    if r is None:
        return "-", "-"
    robust = f"{r.robust_n_sat:.0f}" if r.robust_n_sat else "-"
    if not r.saturated:
        return f"not saturated (> {r.n_sat_low:.0f})", robust
    return f"{r.n_sat:.0f} [{r.n_sat_low:.0f}, {r.n_sat_high:.0f}]", robust


def loadgen_rows(runs: list[LoadgenSummary]):
    rows = []
    for s in runs:
        r, speedup = s.saturation, s.speedup
        rows.append(
            (
                s.run.run_id,
                s.label,
                *_knee(s),
                r.flat_module_s if r else None,
                r.slope_s_per_client if r else None,
                r.consistency if r else None,
                speedup.module if speedup else None,
                speedup.total if speedup else None,
            )
        )
    return rows


PREDICTION_HEADERS = (
    "run",
    "quantity",
    "predicted [interval]",
    "measured [95% CI]",
    "measured / predicted",
)


def prediction_rows(runs: list[LoadgenSummary]):
    """Predicted (from the sweep and baseline) against measured, side by side."""
    rows = []
    for s in runs:
        p, r = s.prediction, s.saturation
        if p is None:
            continue
        ratios = s.measured_over_predicted()
        if r is not None and r.saturated:
            knee = f"{r.n_sat:.1f} [{r.n_sat_low:.1f}, {r.n_sat_high:.1f}]"
        else:
            knee = f"not saturated (> {r.n_sat_low:.0f})" if r else "-"
        measured_flat = r.flat_module_s if r else None
        measured_slope = r.slope_s_per_client if r and r.saturated else None
        rows += [
            (
                s.run.run_id,
                "N_sat (jobs per server)",
                f"{p.n_sat.value:.1f} [{p.n_sat.low:.1f}, {p.n_sat.high:.1f}]",
                knee,
                ratios.get("n_sat"),
            ),
            (
                "",
                "N_sat, Eq. 5 asymptote (robust fit)",
                f"{p.n_sat.value:.1f}",
                r.robust_n_sat if r else None,
                ratios.get("robust_n_sat"),
            ),
            (
                "",
                "flat module time (s)",
                p.flat_module_s,
                measured_flat,
                ratios.get("flat_module_s"),
            ),
            (
                "",
                "slope (s per added job)",
                p.slope_s_per_client,
                measured_slope,
                ratios.get("slope_s_per_client"),
            ),
        ]
    return rows


def curve_line(s: LoadgenSummary) -> str | None:
    """The whole predicted curve against the steps, in one line (or why there is none)."""
    if s.prediction is None:
        return None
    check = s.curve_check()
    if check is None:
        return f"{s.run.run_id}: {s.prediction.curve_problem()}"
    factor = check["knee_factor"]

    def knee(value):
        return "not reached" if value is None else f"{value:.1f}"

    return (
        f"{s.run.run_id}: the queueing network (exact MVA with the sweep's rate at each "
        f"concurrency) predicts the module time at every step with a median absolute "
        f"error of {check['mare_mva']:.0%}, the asymptotes with {check['mare_asymptotes']:.0%}; "
        f"the module time reaches {factor:g}x its unloaded value at {knee(check['knee_mva'])} "
        f"jobs on the curve, {knee(check['knee_measured'])} measured"
    )


def prediction_inputs(s: LoadgenSummary) -> str:
    p = s.prediction
    c = p.capacity
    text = (
        f"{s.run.run_id}: predicted from sweep {c.run_id} ({c.protocol}): "
        f"{c.inferences_per_s.value:,.0f} inf/s saturated, one request alone "
        f"{c.request_latency_s.value * 1000:.1f} ms; per event {p.plan.requests:g} requests, "
        f"other work {p.plan.other_s:.3g} s, preprocessing {p.plan.preprocess_s:.3g} s"
    )
    check = s.capacity_check()
    if check:
        text += (
            f". During the run the server served at most "
            f"{check['served_max_inferences_per_s']:,.0f} inf/s "
            f"({check['ratio_to_sweep']:.2f} of the sweep's); at that throughput the model "
            f"puts the knee at {check['n_sat_at_served']:.1f}"
        )
    return text


LEVEL_HEADERS = (
    "users",
    "events",
    "module median s",
    "total median s",
    "request p50 ms",
    "request p99 ms",
)


def level_rows(summary: LoadgenSummary):
    levels = summary.levels
    return [
        (
            int(r.users),
            int(r.events),
            r.module_median_s,
            r.total_median_s,
            getattr(r, "request_p50_ms", None),
            getattr(r, "request_p99_ms", None),
        )
        for r in levels.itertuples()
    ]


SWEEP_HEADERS = (
    "run",
    "configuration",
    "max inf/s",
    "at concurrency",
    "knee (95%)",
    "/ CPU-only best",
    "verdict",
)
LOADGEN_HEADERS = (
    "run",
    "configuration",
    "N_sat [95% CI]",
    "robust knee",
    "flat module s",
    "s per client",
    "consistency",
    "module speedup",
    "total speedup",
)
BASELINE_HEADERS = ("threads", "processes", "batch", "inf/s", "s per 55k patches", "verdict")


def write_report(
    path: Path,
    baselines: list[BaselineSummary],
    sweeps: list[SweepSummary],
    loadgens: list[LoadgenSummary],
    images: dict[str, Path],
    skipped: list[str],
    story: list[StoryRow] | None = None,
    repeated: list[RepeatedConfiguration] | None = None,
    accuracies: list[AccuracyRunSummary] | None = None,
    variants: list[VariantRow] | None = None,
) -> Path:
    parts = ["# sonic-bench analysis", ""]
    if story:
        parts += [
            "## The standalone story (the paper's Sec. 3.1-3.2)",
            "",
            _table(STORY_HEADERS, story_rows(story)),
            "",
            *(f"- {line}" for line in story_text(story)),
            "",
        ]
    for b in baselines:
        parts += [
            f"## CPU-only baseline ({b.run_id})",
            "",
            _table(BASELINE_HEADERS, baseline_rows(b)),
            "",
        ]
    if sweeps:
        parts += ["## Standalone sweeps", "", _table(SWEEP_HEADERS, sweep_rows(sweeps)), ""]
        if "throughput" in images:
            parts += [f"![throughput and latency]({images['throughput'].name})", ""]
        notes = [f"- {s.run.run_id}: {note}" for s in sweeps for note in sweep_notes(s)]
        parts += [*notes, ""] if notes else []
        invalid = [f"- {line}" for s in sweeps for line in level_verdict_lines(s)]
        if invalid:
            parts += ["### INVALID levels", "", *invalid, ""]
        if devices := device_rows(sweeps):
            parts += ["### GPUs at saturation", "", _table(DEVICE_HEADERS, devices), ""]
        for s in sweeps:
            if rows := replica_rows(s):
                parts += [
                    f"### Replicas behind the gateway ({s.run.run_id})",
                    "",
                    _table(REPLICA_HEADERS, rows),
                    "",
                ]
    if repeated:
        parts += [
            "## Repeated sweeps",
            "",
            "Each level over every run (and trial) of its configuration: the mean, its 95% "
            "t-interval and the coefficient of variation.",
            "",
            _table(repeat_headers(repeated), repeat_rows(repeated)),
            "",
            *(f"- {line}" for line in repeat_lines(repeated)),
            "",
        ]
    parts += accuracy_section(accuracies or [], variants or [])
    if loadgens:
        parts += [
            "## Grid jobs against the server (latency model fit)",
            "",
            _table(LOADGEN_HEADERS, loadgen_rows(loadgens)),
            "",
            "Consistency is slope x N_sat / (flat module time + other work): the paper's "
            "model (Eq. 5) makes it 1.",
            "",
        ]
        predicted = prediction_rows(loadgens)
        if predicted:
            parts += [
                "### Predicted before, measured after",
                "",
                "The paper's model (Eqs. 2-5) fed with the sweep's saturated throughput and "
                "unloaded request latency and the jobs' settings, against the staircase's fit.",
                "",
                _table(PREDICTION_HEADERS, predicted),
                "",
                *(f"- {prediction_inputs(s)}" for s in loadgens if s.prediction),
                *(f"- {line}" for s in loadgens if (line := curve_line(s))),
                *(
                    f"- {s.run.run_id}: prediction: {w}"
                    for s in loadgens
                    if s.prediction
                    for w in s.prediction.warnings
                ),
                "",
            ]
        if "module_time" in images:
            parts += [f"![module time against clients]({images['module_time'].name})", ""]
        for s in loadgens:
            parts += [f"- {s.run.run_id}: {w}" for w in s.warnings]
        for s in loadgens:
            parts += [
                "",
                f"### {s.run.run_id} ({s.label})",
                "",
                _table(LEVEL_HEADERS, level_rows(s)),
            ]
        parts.append("")
    series = [(k, v) for k, v in images.items() if k.startswith("server:")]
    if series:
        parts += ["## Server side", ""]
        parts += [f"![{k}]({v.name})" for k, v in series] + [""]
    if skipped:
        parts += ["## Skipped", ""] + [f"- {reason}" for reason in skipped] + [""]
    path.write_text("\n".join(parts))
    return path


VARIANT_HEADERS = (
    "model",
    "precision",
    "inf/s at saturation",
    "/ FP32",
    "tail at knee ms",
    "largest |diff|",
    "labels changed",
    "Michel agreement",
    "events changed",
)


def _maybe(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def variant_table_rows(rows: list[VariantRow]):
    return [
        (
            r.model,
            r.precision,
            _maybe(r.max_inferences_per_s, ",.0f"),
            _maybe(r.ratio_to_fp32, ".2f"),
            "-" if r.tail_at_knee is None else f"p{r.tail_at_knee[0]} {r.tail_at_knee[1]:,.1f}",
            _maybe(r.largest_abs, ".3g"),
            _maybe(r.label_change_fraction, ".3%"),
            _maybe(r.score_agreement, ".3%"),
            r.events_changed,
        )
        for r in rows
    ]


def accuracy_section(accuracies: list[AccuracyRunSummary], variants: list[VariantRow]):
    """The report's accuracy runs: a table beside FP32, then each run's figures."""
    if not accuracies:
        return []
    parts = [
        "## Accuracy beside speed",
        "",
        "Served answers against the FP32 network in-process on the same inputs; speed from "
        "each model's sweep of the same batch setting.",
        "",
        _table(VARIANT_HEADERS, variant_table_rows(variants)),
        "",
    ]
    for a in accuracies:
        parts += [f"### {a.run.run_id} ({a.run.status})", ""]
        parts += [f"    {line}" for line in accuracy_lines(a.accuracy)]
        parts += [f"    served {a.inferences_per_s:,.0f} inf/s with every answer kept", ""]
        parts += [f"- warning: {w}" for w in a.run.manifest.warnings]
        parts += [""] if a.run.manifest.warnings else []
    return parts


def accuracy_lines(s: AccuracySummary) -> list[str]:
    """An accuracy run in a few lines: each output's drift, labels, the score's cut."""
    lines = [
        f"accuracy of {s.model}: {s.answers:,} answers ({s.samples:,} samples) against "
        f"{s.reference}"
    ]
    for o in s.outputs:
        lines.append(f"  {o.name}: largest |diff| {o.max_abs:.3g}, mean {o.mean_abs:.3g}")
    for d in s.labels:
        lines.append(
            f"  {d.output}: label changed for {d.changed:,} of {d.samples:,} ({d.fraction:.4%})"
        )
    if (c := s.score) is not None:
        lines.append(
            f"  {c.output} > {c.threshold:g}: agreement {c.agreement:.4%} "
            f"({c.disagree:,} of {c.samples:,} differ); tagged {c.tagged_served:,} served, "
            f"{c.tagged_reference:,} reference; {c.events_changed} of {c.events} events "
            f"changed their count (by at most {c.max_event_change})"
        )
    for m in s.mixed_up:
        lines.append(f"  MIXED UP: the answer to batch {m.batch} is batch {m.matches}'s")
    return lines
