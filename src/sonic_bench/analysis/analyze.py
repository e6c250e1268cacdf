"""The whole analysis of a set of run folders as one library call, and its outputs.

analysis = analyze([Path("results/")])
images = plots(analysis, output)          # PNGs
write_report(output / "report.md", ...)   # through write_outputs
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from sonic_bench.analysis.plots import module_time_plot, server_series_plot, throughput_plot
from sonic_bench.analysis.prediction import (
    JobPlan,
    Prediction,
    capacity_from_steps,
    matching_sweep,
    predict,
)
from sonic_bench.analysis.repeats import RepeatedConfiguration, repeated_configurations
from sonic_bench.analysis.report import write_report
from sonic_bench.analysis.runs import LoadedRun, SkippedRun, find_runs, load_run
from sonic_bench.analysis.summary import (
    AccuracyRunSummary,
    BaselineSummary,
    LoadgenSummary,
    StoryRow,
    SweepSummary,
    VariantRow,
    standalone_story,
    summarize_accuracy,
    summarize_baseline,
    summarize_loadgen,
    summarize_sweep,
    to_json,
    variant_rows,
)
from sonic_bench.errors import SonicBenchError


@dataclass(frozen=True)
class Analysis:
    baselines: list[BaselineSummary]
    sweeps: list[SweepSummary]
    loadgens: list[LoadgenSummary]
    skipped: list[str]  # runs that could not be analysed, with the reason
    repeated: list[RepeatedConfiguration] = field(default_factory=list)
    accuracies: list[AccuracyRunSummary] = field(default_factory=list)

    @property
    def variants(self) -> list[VariantRow]:
        """Each accuracy run's model beside FP32: speed from its sweep, drift from it."""
        return variant_rows(self.sweeps, self.accuracies)

    @property
    def story(self) -> list[StoryRow]:
        """The standalone story, when sweeps of several configurations were analysed."""
        story = standalone_story(self.sweeps)
        return story if len(story) >= 2 else []

    def to_json(self) -> dict:
        summaries = [*self.baselines, *self.sweeps, *self.loadgens, *self.accuracies]
        out: dict = {"runs": [to_json(s) for s in summaries], "skipped": self.skipped}
        if self.story:
            out["standalone"] = [vars(row) for row in self.story]
        out["repeated"] = [r.as_json() for r in self.repeated]
        out["variants"] = [vars(row) for row in self.variants]
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
        kind: [r for r in runs if r.kind == kind]
        for kind in ("baseline", "sweep", "loadgen", "accuracy")
    }
    baselines = [summarize_baseline(r) for r in of_kind["baseline"]]
    sweeps = [summarize_sweep(r, baselines) for r in of_kind["sweep"]]
    loadgens = []
    for r in of_kind["loadgen"]:
        try:
            loadgens.append(summarize_loadgen(r, baselines, of_kind["sweep"]))
        except (SkippedRun, ValueError) as e:
            skipped.append(f"{r.folder}: {e}" if isinstance(e, ValueError) else str(e))
    repeated = repeated_configurations(of_kind["sweep"])
    accuracies = []
    for r in of_kind["accuracy"]:
        try:
            accuracies.append(summarize_accuracy(r))
        except SkippedRun as e:
            skipped.append(str(e))
    return Analysis(baselines, sweeps, loadgens, skipped, repeated, accuracies)


@dataclass(frozen=True)
class PlannedJobs:
    """The Locust settings of a planned run (`locust -f loadgen/sonic.py` options)."""

    model: str
    batch_setting: int
    protocol: str = "http"
    event_scale: float = 0.02
    other_full_s: float = 110.0
    preprocess_full_s: float = 7.0
    requests_per_event: int = 1  # for a model not fed the ProtoDUNE-SP workload


def predict_from_runs(paths: list[Path], jobs: PlannedJobs) -> Prediction:
    """Predict a planned Locust run's knee from the sweep and baseline under `paths`."""
    runs, skipped = _load_all(paths)
    sweeps = [r for r in runs if r.kind == "sweep"]
    sweep = matching_sweep(sweeps, jobs.model, jobs.batch_setting, jobs.protocol)
    if sweep is None:
        found = sorted(
            {f"{r.manifest.server.model} b{r.manifest.workload.batch_size_setting}" for r in sweeps}
        )
        raise SonicBenchError(
            f"no sweep of {jobs.model} at batch setting {jobs.batch_setting} under "
            f"{', '.join(map(str, paths))} (found: {', '.join(found) or 'none'}); measure one "
            f"with `sonic-bench sweep --batch {jobs.batch_setting}` or pick --model/--batch-size"
        )
    baselines = [summarize_baseline(r) for r in runs if r.kind == "baseline"]
    baseline = baselines[-1] if baselines else None
    capacity = capacity_from_steps(sweep.steps, sweep.manifest)
    source = sweep.manifest.workload.inputs.get("source", "protodune")
    if source == "protodune":
        plan = JobPlan.planned(
            capacity.avg_batch,
            capacity.event_patches,
            jobs.event_scale,
            jobs.other_full_s,
            jobs.preprocess_full_s,
            jobs.protocol,
        )
    else:  # the jobs' events are --requests-per-event of the model's batches
        plan = JobPlan.planned_model(
            capacity.avg_batch,
            jobs.requests_per_event,
            jobs.event_scale,
            jobs.other_full_s,
            jobs.preprocess_full_s,
            jobs.protocol,
        )
    single = baseline.inferences_per_s(1, capacity.avg_batch) if baseline else None
    prediction = predict(capacity, plan, single, baseline.run_id if single else None)
    extra = [f"skipped: {reason}" for reason in skipped]
    if baseline is None or single is None:
        extra.append("no baseline run with one thread: speedups cannot be predicted")
    return replace(prediction, warnings=(*prediction.warnings, *extra))


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
    if output.exists() and not output.is_dir():
        raise SonicBenchError(f"--output {output} is a file: give a folder for the report")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SonicBenchError(f"cannot make the report folder {output}: {e.strerror}") from None
    images = plots(analysis, output) if with_plots else {}
    report = write_report(
        output / "report.md",
        analysis.baselines,
        analysis.sweeps,
        analysis.loadgens,
        images,
        analysis.skipped,
        analysis.story,
        analysis.repeated,
        analysis.accuracies,
        analysis.variants,
    )
    return report, images
