"""The whole analysis of a set of run folders as one library call, and its outputs.

analysis = analyze([Path("results/")])
images = plots(analysis, output)          # PNGs
write_report(output / "report.md", ...)   # through write_outputs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sonic_bench.analysis.plots import module_time_plot, server_series_plot, throughput_plot
from sonic_bench.analysis.report import write_report
from sonic_bench.analysis.runs import LoadedRun, SkippedRun, find_runs, load_run
from sonic_bench.analysis.summary import (
    BaselineSummary,
    LoadgenSummary,
    StoryRow,
    SweepSummary,
    standalone_story,
    summarize_baseline,
    summarize_loadgen,
    summarize_sweep,
    to_json,
)
from sonic_bench.errors import SonicBenchError


@dataclass(frozen=True)
class Analysis:
    baselines: list[BaselineSummary]
    sweeps: list[SweepSummary]
    loadgens: list[LoadgenSummary]
    skipped: list[str]  # runs that could not be analysed, with the reason

    @property
    def story(self) -> list[StoryRow]:
        """The standalone story, when sweeps of several configurations were analysed."""
        story = standalone_story(self.sweeps)
        return story if len(story) >= 2 else []

    def to_json(self) -> dict:
        summaries = [*self.baselines, *self.sweeps, *self.loadgens]
        out: dict = {"runs": [to_json(s) for s in summaries], "skipped": self.skipped}
        if self.story:
            out["standalone"] = [vars(row) for row in self.story]
        return out


def _load_all(paths: list[Path]) -> tuple[list[LoadedRun], list[str]]:
    runs, skipped = [], []
    for folder in find_runs(paths):
        try:
            runs.append(load_run(folder))
        except SkippedRun as e:
            skipped.append(str(e))
    return runs, skipped


def analyze(paths: list[Path]) -> Analysis:
    runs, skipped = _load_all(paths)
    if not runs and not skipped:
        raise SonicBenchError(f"no run folders (with manifest.json) under {paths[0]}")
    of_kind = {
        kind: [r for r in runs if r.kind == kind] for kind in ("baseline", "sweep", "loadgen")
    }
    baselines = [summarize_baseline(r) for r in of_kind["baseline"]]
    sweeps = [summarize_sweep(r, baselines) for r in of_kind["sweep"]]
    loadgens = []
    for r in of_kind["loadgen"]:
        try:
            loadgens.append(summarize_loadgen(r, baselines))
        except (SkippedRun, ValueError) as e:
            skipped.append(f"{r.folder}: {e}" if isinstance(e, ValueError) else str(e))
    return Analysis(baselines, sweeps, loadgens, skipped)


def plots(analysis: Analysis, output: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    if analysis.sweeps:
        images["throughput"] = throughput_plot(analysis.sweeps, output / "throughput.png")
    if analysis.loadgens:
        images["module_time"] = module_time_plot(analysis.loadgens, output / "module_time.png")
    for summary in [*analysis.sweeps, *analysis.loadgens]:
        path = server_series_plot(summary.run, output / f"server-{summary.run.run_id}.png")
        if path:
            images[f"server:{summary.run.run_id}"] = path
    return images


def write_outputs(analysis: Analysis, output: Path, with_plots: bool = True):
    """report.md and the plots in `output`; returns (report path, images)."""
    output.mkdir(parents=True, exist_ok=True)
    images = plots(analysis, output) if with_plots else {}
    report = write_report(
        output / "report.md",
        analysis.baselines,
        analysis.sweeps,
        analysis.loadgens,
        images,
        analysis.skipped,
        analysis.story,
    )
    return report, images
