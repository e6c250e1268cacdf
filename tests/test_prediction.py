"""Predict-then-measure: the paper's model fed with a sweep and a baseline, the knee a
Locust run would find, and the most load within a p99 budget."""

from __future__ import annotations

import json
import math

import pytest
from helpers import quick_sweep

from sonic_bench.analysis import synthetic
from sonic_bench.analysis.analyze import PlannedJobs, predict_from_runs
from sonic_bench.analysis.prediction import JobPlan
from sonic_bench.analysis.report import budget_line
from sonic_bench.analysis.throughput import within_budget
from sonic_bench.cli import main
from sonic_bench.loadgen.scale import plan_events
from sonic_bench.results.store import read_run
from sonic_bench.runs.search import LatencyBudgetSearch
from sonic_bench.workload.detector import PATCHES_PER_EVENT
from sonic_bench.workload.pool import simulated_pool

PLATEAU = 31_000.0  # inferences/s
SINGLE = 0.12  # s, one request alone
BATCH = 1693.0
OTHER = 110.0
PREPROCESS = 7.0  # what synthetic.loadgen_run records


def _truth(requests: float) -> tuple[float, float, float]:
    """knee, flat module time and slope that the model gives for the synthetic sweep."""
    slope = requests * BATCH / PLATEAU
    flat = PREPROCESS + requests * SINGLE
    return (OTHER + flat) / slope, flat, slope


def _analyze_json(paths, tmp_path, capsys) -> dict:
    assert main(["analyze", *map(str, paths), "--json", "--output", str(tmp_path / "a")]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_run_measured_as_predicted_reads_as_agreeing(tmp_path, capsys):
    requests = 32.0
    knee, flat, _ = _truth(requests)
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE)
    synthetic.baseline_run(tmp_path, single_thread_inf_s=250.0)
    synthetic.loadgen_run(
        tmp_path, knee, flat, OTHER, noise=0.02, seed=3, requests_per_event=requests
    )
    out = _analyze_json([tmp_path], tmp_path, capsys)
    (loadgen,) = [r for r in out["runs"] if r["kind"] == "loadgen"]
    predicted = loadgen["prediction"]
    assert predicted["n_sat"] == pytest.approx(knee, rel=1e-6)
    assert predicted["n_sat_low"] < knee < predicted["n_sat_high"]
    assert predicted["flat_module_s"] == pytest.approx(flat, rel=1e-6)
    ratios = predicted["measured_over_predicted"]
    assert ratios["n_sat"] == pytest.approx(1.0, abs=0.1)
    assert ratios["robust_n_sat"] == pytest.approx(1.0, abs=0.1)
    assert ratios["flat_module_s"] == pytest.approx(1.0, abs=0.05)
    assert ratios["slope_s_per_client"] == pytest.approx(1.0, abs=0.1)
    assert predicted["module_speedup"] == pytest.approx(
        (requests * BATCH / 250.0 + PREPROCESS) / flat, rel=1e-6
    )
    report = (tmp_path / "a" / "report.md").read_text()
    assert "Predicted before, measured after" in report
    assert f"{knee:.1f}" in report


def test_a_server_twice_as_fast_as_the_sweep_said_shows_in_the_ratio(tmp_path, capsys):
    """The prediction comes from the sweep: a Locust run on a server that behaved twice
    as fast reads as a knee twice the predicted one."""
    requests = 32.0
    knee, flat, _ = _truth(requests)
    synthetic.sweep_run(tmp_path, PLATEAU / 2, SINGLE)
    synthetic.loadgen_run(
        tmp_path, knee, flat, OTHER, noise=0.02, seed=4, requests_per_event=requests
    )
    (loadgen,) = [
        r for r in _analyze_json([tmp_path], tmp_path, capsys)["runs"] if r["kind"] == "loadgen"
    ]
    ratios = loadgen["prediction"]["measured_over_predicted"]
    assert ratios["n_sat"] == pytest.approx(2.0, rel=0.1)
    assert ratios["slope_s_per_client"] == pytest.approx(0.5, rel=0.1)


def test_predict_from_runs_matches_the_analysis_of_the_run_it_plans(tmp_path, capsys):
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE)
    synthetic.baseline_run(tmp_path, single_thread_inf_s=250.0)
    code = main(
        ["predict", "--from", str(tmp_path), "--batch-size", "2300", "--event-scale", "1",
         "--jobs", "400", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    requests = round(PATCHES_PER_EVENT / BATCH)
    patches = requests * BATCH
    fraction = patches / PATCHES_PER_EVENT
    slope = patches / PLATEAU
    t_ideal = OTHER * fraction + PREPROCESS * fraction + requests * SINGLE
    assert out["n_sat"] == pytest.approx(t_ideal / slope, rel=1e-6)
    assert out["servers_needed"] == -(-400 // out["n_sat"])
    assert out["servers_needed_cautious"] >= out["servers_needed"]
    assert out["inputs"]["baseline_run"] is not None


def test_a_planned_event_is_the_event_locust_builds():
    """JobPlan.planned reduces an event as the Locust file does (plan_events)."""
    pool = simulated_pool(256)
    scale = 0.02
    plans = plan_events(pool, scale, OTHER, PREPROCESS)
    requests = sum(len(p.batches) for p in plans) / len(plans)
    patches = sum(p.patches for p in plans) / len(plans)
    avg_batch = patches / requests
    planned = JobPlan.planned(avg_batch, pool.patches_per_event, scale, OTHER, PREPROCESS)
    assert planned.requests == pytest.approx(requests, rel=0.1)
    assert planned.patches == pytest.approx(patches, rel=0.1)
    assert planned.other_s == pytest.approx(sum(p.other_s for p in plans) / len(plans), rel=0.1)


def test_predict_from_without_a_matching_sweep_is_one_clear_error(tmp_path, capsys):
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE)
    assert main(["predict", "--from", str(tmp_path), "--batch-size", "small"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sweep of cnn_emtrkmichel_1 at batch setting 256" in err[0]
    assert "found: cnn_emtrkmichel_1 b2300" in err[0]
    assert main(["predict", "--from", str(tmp_path), "--t-cpu", "100"]) == 2
    assert "--t-cpu with --from" in capsys.readouterr().err


def test_predict_from_a_sweep_alone_still_gives_the_knee(tmp_path):
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE)
    jobs = PlannedJobs(model="cnn_emtrkmichel_1", batch_setting=2300, event_scale=1.0)
    prediction = predict_from_runs([tmp_path], jobs)
    assert prediction.n_sat.value > 0 and prediction.module_speedup is None
    assert any("no baseline" in w for w in prediction.warnings)


@pytest.mark.parametrize("boundary", [1, 2, 17, 40, 63, 64])
def test_budget_search_finds_the_last_level_within_in_few_steps(boundary):
    search = LatencyBudgetSearch(budget_ms=100.0, low=1, high=64)
    p99 = lambda c: 50.0 if c <= boundary else 150.0  # noqa: E731
    measured: dict[int, float] = {}
    while (c := search.next_concurrency(measured)) is not None:
        assert c not in measured
        measured[c] = p99(c)
    assert len(measured) <= search.most_steps
    answer = within_budget(list(measured), list(measured.values()), [1.0] * len(measured), 100.0)
    assert answer.concurrency == boundary


def test_budget_search_stops_when_the_lowest_level_is_over():
    search = LatencyBudgetSearch(budget_ms=10.0, low=1, high=64)
    assert search.next_concurrency({1: 20.0}) is None
    answer = within_budget([1], [20.0], [5.0], 10.0)
    assert answer.concurrency is None


def test_a_noisy_level_above_the_first_over_budget_does_not_count():
    answer = within_budget([1, 2, 4, 8], [10.0, 30.0, 12.0, 40.0], [1.0, 2.0, 3.0, 4.0], 20.0)
    assert answer.concurrency == 1


def test_a_level_without_a_p99_is_named_not_called_slow():
    """Too few answers to bound a p99 (its row holds none): the search stops there, and the
    answer says why instead of "exceeds"."""
    lowest = budget_line(within_budget([1, 8], [math.inf, 5.0], [1.0, 8.0], 20.0))
    assert lowest == (
        "p99 budget 20 ms: concurrency 1 has no p99 to judge "
        "(too few answers to bound it: lengthen --window)"
    )
    higher = within_budget([1, 4, 8], [3.0, math.inf, 5.0], [1.0, 4.0, 8.0], 20.0)
    assert (higher.concurrency, higher.without_p99_at) == (1, 4)
    slow = within_budget([1, 8], [30.0, math.inf], [1.0, 8.0], 20.0)
    assert budget_line(slow) == "p99 budget 20 ms: even the lowest level exceeds it"


def test_sweep_with_a_latency_budget_against_the_real_server(server, tmp_path, capsys):
    """The bisection runs real levels; the answer is printed, recorded and analysed.
    Batches of 8: enough answers in the short windows to bound every level's p99."""
    budget = ("--batch", "8", "--concurrency", "1-8", "--latency-budget", "1000000")
    code = main(quick_sweep(server, tmp_path, *budget))
    assert code == 0
    out = capsys.readouterr().out
    assert "p99 budget 1e+06 ms: at most concurrency 8" in out
    (folder,) = tmp_path.iterdir()
    run = read_run(folder)
    assert [s["concurrency"] for s in run.steps] == ["1", "8"]  # both ends, then done
    assert run.manifest.load.parameters["latency_budget_ms"] == 1e6
    analysed = _analyze_json([folder], tmp_path, capsys)
    assert analysed["runs"][0]["latency_budget"]["concurrency"] == 8


def test_latency_budget_with_rates_is_refused(capsys):
    assert main(["sweep", "--rate", "10", "--latency-budget", "50"]) == 2
    assert "--latency-budget searches concurrency" in capsys.readouterr().err


def test_the_whole_curve_comes_with_the_prediction_and_the_run_is_held_to_it(tmp_path, capsys):
    """analyze gives the queueing network's curve beside the asymptotes: at one job the
    module time is preprocessing plus the event's requests at the sweep's concurrency-1
    rate; far past the knee it follows the asymptote's slope; the run's steps are set
    against both."""
    requests = 32.0
    knee, flat, _ = _truth(requests)
    # A sweep whose concurrency-1 level serves one request in SINGLE seconds.
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE, knee_concurrency=PLATEAU * SINGLE / BATCH)
    synthetic.loadgen_run(
        tmp_path, knee, flat, OTHER, noise=0.02, seed=3, requests_per_event=requests
    )
    out = _analyze_json([tmp_path], tmp_path, capsys)
    (loadgen,) = [r for r in out["runs"] if r["kind"] == "loadgen"]
    curve = loadgen["prediction"]["curve"]
    assert curve["module_s"][0] == pytest.approx(flat, rel=1e-6)
    slope = requests * BATCH / PLATEAU
    end = len(curve["jobs"]) - 1
    assert curve["module_s"][end] - curve["module_s"][end - 1] == pytest.approx(slope, rel=0.02)
    band = zip(curve["module_s_low"], curve["module_s"], curve["module_s_high"], strict=True)
    assert all(lo <= c <= hi for lo, c, hi in band)
    # The run was drawn from the asymptotes: the curve, above them near the knee, is
    # close but not as close; its knee (where the module time doubles) comes later.
    check = loadgen["prediction"]["measured_against_curve"]
    assert check["steps"] and all(s["mva_module_s"] >= 0.99 * s["asymptotes_module_s"]
                                  for s in check["steps"])  # fmt: skip
    assert check["mare_asymptotes"] < 0.05 and check["mare_asymptotes"] < check["mare_mva"] < 0.2
    assert check["knee_measured"] < check["knee_mva"] < 2 * check["knee_measured"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "queueing network (exact MVA" in report


def test_a_sweep_that_did_not_saturate_falls_back_to_the_asymptotes(tmp_path, capsys):
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE, levels=(1, 2, 4), knee_concurrency=8)
    code = main(["predict", "--from", str(tmp_path), "--batch-size", "2300", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["curve"] is None and "did not saturate" in out["curve_problem"]
    assert out["n_sat"] > 0  # the asymptotes still stand


def test_predict_prints_the_curve(tmp_path, capsys):
    synthetic.sweep_run(tmp_path, PLATEAU, SINGLE)
    assert main(["predict", "--from", str(tmp_path), "--batch-size", "2300"]) == 0
    out = capsys.readouterr().out
    assert "queueing network (exact MVA" in out and "asymptotes module s" in out
