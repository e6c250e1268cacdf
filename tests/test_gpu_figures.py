"""GPU figures from Triton's GPU metrics: a level's energy from the per-GPU energy counter
(through a restart's reset), and a sweep's utilization, power and energy per 1,000
inferences at saturation in analyze's report and --json. The embedded server has no GPU,
so the samples and the run folder are written here as Triton and a sweep write them."""

from __future__ import annotations

import json
import math

import pytest

from sonic_bench.analysis import synthetic
from sonic_bench.cli import main
from sonic_bench.metrics.collect import TimedSample
from sonic_bench.metrics.summary import summarize
from sonic_bench.results.schema import iso_utc
from sonic_bench.results.store import RunWriter


def _gpu(t: float, gpu: str, energy: float, utilization: float) -> list[TimedSample]:
    labels = (("gpu_uuid", gpu),)
    return [
        TimedSample(t, "nv_energy_consumption", labels, energy),
        TimedSample(t, "nv_gpu_utilization", labels, utilization),
        TimedSample(t, "nv_gpu_power_usage", labels, 250.0),
    ]


def test_a_levels_energy_is_every_gpus_counter_increase():
    samples = [
        *_gpu(0, "GPU-a", 1000, 0.5),
        *_gpu(1, "GPU-a", 1250, 0.7),
        *_gpu(2, "GPU-a", 1500, 0.9),
        *_gpu(0, "GPU-b", 40, 0.1),
        *_gpu(1, "GPU-b", 10, 0.1),
        *_gpu(2, "GPU-b", 60, 0.1),
    ]  # fmt: skip  (GPU-b's server restarted between the first two scrapes)
    summary = summarize(samples, "m", 0, 2)
    assert summary.gpu_energy_j == pytest.approx(500 + 10 + 50)
    assert summary.gpu_utilization == pytest.approx((0.5 + 0.7 + 0.9 + 0.3) / 6)
    assert math.isnan(summarize([], "m", 0, 2).gpu_energy_j)  # no GPU: no figure, not 0


def test_the_report_gives_utilization_and_energy_per_inference_at_saturation(tmp_path, capsys):
    manifest = synthetic._manifest("sweep", "gpu-sweep")
    with RunWriter(tmp_path, manifest) as writer:
        for step, (c, rate, utilization, joules) in enumerate(
            [
                (1, 20_000.0, 0.35, 1_400.0),
                (2, 30_000.0, 0.60, 2_400.0),
                (4, 30_500.0, 0.61, 2_450.0),
            ]
        ):
            writer.append_step(
                {
                    "step": step, "concurrency": c, "batch_size": 1693.0, "requests": 500,
                    "started_at": iso_utc(1000.0 + 20 * step),
                    "ended_at": iso_utc(1010.0 + 20 * step),
                    "inferences_per_s": rate, "gpu_utilization": utilization,
                    "gpu_power_w": joules / 10, "gpu_energy_j": joules,
                }
            )  # fmt: skip
    assert main(["analyze", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "GPUs at saturation" in out and "61%" in out
    # 2,450 J over 10 s of 30,500 inf/s: 8.03 J per 1,000 inferences
    assert "8.03" in out
    assert main(["analyze", str(tmp_path), "--no-plots", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    gpu = run["gpu_at_saturation"]
    assert gpu["concurrency"] == 4 and gpu["joules_per_1000_inferences"] == pytest.approx(
        8.033, 1e-3
    )
    report = (tmp_path / "analysis" / "report.md").read_text()
    assert "### GPUs at saturation" in report
