"""Analysis on synthetic runs with known truth, the latency model, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sonic_bench.analysis.latency_model import ModelInputs
from sonic_bench.analysis.synthetic import baseline_run, loadgen_run
from sonic_bench.cli import main

KNEE, FLAT, OTHER = 270.0, 13.0, 110.0


def analyze_json(*paths) -> tuple[int, dict]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sonic_bench.cli",
            "analyze",
            "--json",
            "--no-plots",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout)


def test_fit_recovers_the_knee_and_its_interval_covers_it(tmp_path):
    seeds = range(10)
    for seed in seeds:
        loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=seed)
    code, result = analyze_json(tmp_path)
    assert code == 0
    fits = [r["saturation"] for r in result["runs"]]
    assert len(fits) == len(seeds)
    for fit in fits:
        assert fit["saturated"]
        assert fit["n_sat"] == pytest.approx(KNEE, rel=0.10)
        assert fit["flat_module_s"] == pytest.approx(FLAT, rel=0.05)
        assert fit["slope_s_per_client"] == pytest.approx((FLAT + OTHER) / KNEE, rel=0.10)
        assert fit["consistency"] == pytest.approx(1.0, abs=0.1)
    covered = sum(f["n_sat_low"] <= KNEE <= f["n_sat_high"] for f in fits)
    assert covered >= 8


def test_a_run_that_never_saturates_reports_a_lower_bound(tmp_path):
    loadgen_run(tmp_path, knee=2000.0, flat=FLAT, other=OTHER, noise=0.05, seed=1)
    code, result = analyze_json(tmp_path)
    (fit,) = [r["saturation"] for r in result["runs"]]
    assert code == 0
    assert fit["saturated"] is False and fit["n_sat"] is None
    assert fit["n_sat_low"] == 400  # all it can say: beyond the last level


def test_speedups_against_a_cpu_only_baseline(tmp_path):
    loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.0, seed=0)
    baseline_run(tmp_path, single_thread_inf_s=250.0)  # 55,000 patches: 220 s on one core
    _, result = analyze_json(tmp_path)
    (loadgen,) = [r for r in result["runs"] if r["kind"] == "loadgen"]
    cpu_module = 55_000 / 250.0 + 7.0
    assert loadgen["speedup"]["module"] == pytest.approx(cpu_module / FLAT, rel=0.01)
    assert loadgen["speedup"]["total"] == pytest.approx(
        (OTHER + cpu_module) / (OTHER + FLAT), rel=0.01
    )


def test_report_and_plots_are_written(tmp_path, capsys):
    loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=3)
    assert main(["analyze", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "N_sat" in report and "module_time.png" in report
    assert (tmp_path / "out" / "module_time.png").stat().st_size > 10_000
    assert "not saturated" not in capsys.readouterr().out


def test_corrupt_and_partial_runs_are_skipped_and_the_rest_analysed(tmp_path, capsys):
    good = loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=4)
    corrupt = loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=5, label="corrupt")
    (corrupt / "manifest.json").write_text("{ not json")
    truncated = loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=6, label="truncated")
    (truncated / "events.csv").write_bytes((truncated / "events.csv").read_bytes()[:300])
    empty = loadgen_run(tmp_path, KNEE, FLAT, OTHER, noise=0.05, seed=7, label="empty")
    (empty / "steps.csv").unlink()
    code = main(["analyze", str(tmp_path), "--no-plots"])
    out, err = capsys.readouterr()
    assert code == 3  # something was skipped
    assert good.name in out
    assert f"{corrupt}/manifest.json is corrupt" in err
    assert str(truncated) in err and str(empty) in err


def test_missing_path_is_one_clear_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist")


def test_model_unsaturated_regime_by_hand():
    m = ModelInputs(t_cpu=100, p=0.6, t_gpu=2, t_preprocess=3, t_transmit=1, t_travel=1, n_gpu=2)
    # t_ideal = 0.4 * 100 + 2 + 5 = 47; knee at 47 / 2 = 23.5 per GPU, 47 on 2 GPUs.
    assert m.t_ideal == pytest.approx(47)
    assert m.cpu_per_gpu == pytest.approx(23.5) and m.n_sat == pytest.approx(47)
    assert m.t_sonic(10) == pytest.approx(47)
    assert m.module_time(10) == pytest.approx(7)
    assert m.module_speedup == pytest.approx((60 + 3) / 7)
    assert m.total_speedup == pytest.approx(100 / 47)


def test_model_saturated_regime_by_hand():
    m = ModelInputs(t_cpu=100, p=0.6, t_gpu=2, t_preprocess=3, t_transmit=1, t_travel=1, n_gpu=2)
    # Eq. 5: past the knee the event takes t_GPU * N_CPU / N_GPU.
    assert m.t_sonic(100) == pytest.approx(2 * 100 / 2)
    assert m.t_sonic(np.array([47, 60])) == pytest.approx([47, 60])


def test_predict_with_the_papers_inputs_lands_on_its_figures(capsys):
    assert (
        main(
            [
                "predict",
                "--json",
                "--t-gpu",
                "1.77",
                "--t-transmit",
                "2.05",
                "--requests",
                "32",
                "--rtt-ms",
                "12",
                "--n-gpu",
                "4",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["cpu_per_gpu"] == pytest.approx(68, rel=0.1)  # paper: 68 per GPU
    assert result["n_sat"] == pytest.approx(270, rel=0.1)  # paper: ~270 processes
    assert result["total_speedup"] == pytest.approx(2.7, rel=0.05)  # paper: 2.7x
    assert result["module_cpu_only_s"] == pytest.approx(220, rel=0.02)  # paper: 220 s


def test_predict_refuses_a_fraction_above_one(capsys):
    assert main(["predict", "--p", "1.5"]) == 2
    assert "--p 1.5" in capsys.readouterr().err
