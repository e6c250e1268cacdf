"""The accuracy mode: every batch through the real server under load, each answer compared
with the FP32 network in-process. What must hold: served FP32 agrees with in-process FP32
on every transport; an answer returned for the wrong request is found and named (a
hostile front plants one); a reduced-precision variant's drift is reported, and a
threshold below it fails `check`; the variants rebuild byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import quick_sweep
from hostile import HostileGrpc, HostileHttp, every

from sonic_bench.accuracy.drift import (
    AccuracySummary,
    DriftTally,
    Judging,
    ScoreCut,
    find_mixed_up,
)
from sonic_bench.cli import main
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.emtrackmichel import MICHEL_OUTPUT, TRACK_EM_OUTPUT, model_bytes
from sonic_bench.model.precision import convert, protodune_calibration
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING, MODEL_JET_TAGGER

INT8 = "cnn_emtrkmichel_int8"


def _accuracy(url: str, protocol: str, results: Path, *extra: str) -> list[str]:
    return [
        "accuracy", "--url", url, "--protocol", protocol, "--events", "2",
        "--event-scale", "0.02", "--batch", "small", "--results", str(results), *extra,
    ]  # fmt: skip


def _run(results: Path) -> tuple[dict, dict]:
    (folder,) = [p for p in results.iterdir() if (p / "manifest.json").exists()]
    return (
        json.loads((folder / "manifest.json").read_text()),
        json.loads((folder / "accuracy.json").read_text()),
    )


# gRPC in band and HTTP through shared memory here; HTTP in band and gRPC answers pass
# through the hostile fronts below, the shared-memory read is the same for both.
@pytest.mark.parametrize(("protocol", "shared"), [("grpc", False), ("http", True)])
def test_served_fp32_equals_in_process_fp32_on_every_transport(
    server, tmp_path, capsys, protocol, shared
):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    before = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_DYNAMIC_BATCHING)
    extra = ("--shared-memory",) if shared else ()
    code = main(_accuracy(url, protocol, tmp_path, "--concurrency", "3", *extra))
    out = capsys.readouterr().out
    assert code == 0, out
    manifest, accuracy = _run(tmp_path)
    summary = AccuracySummary.from_dict(accuracy)
    assert manifest["status"] == "complete" and manifest["kind"] == "accuracy"
    assert summary.failed == 0 and not summary.mixed_up and not summary.unanswered
    assert summary.answers == summary.batches > 10  # every batch of both events, once
    # The same onnxruntime on the same patches in the same chunks: the same numbers.
    assert summary.largest_abs <= 1e-6
    assert summary.label_change_fraction == 0.0
    assert summary.score.disagree == 0 and summary.score.events == 2
    after = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_DYNAMIC_BATCHING)
    assert after - before == summary.samples
    assert "largest |diff|" in out and "agreement 100.0000%" in out


@pytest.mark.parametrize("front", [HostileHttp, HostileGrpc])
def test_an_answer_for_the_wrong_request_is_found_and_named(server, tmp_path, capsys, front):
    """Every 5th answer is the previous request's (well-formed, the right shape: batches of
    one size, 16 distinct ones): the check names it, the run is partial and exits 1."""
    protocol = "http" if front is HostileHttp else "grpc"
    upstream = server.http_url if protocol == "http" else server.grpc_url
    argv = _accuracy(
        "", protocol, tmp_path, "--input-data", "random", "--batch", "16", "--batches", "16",
        "--concurrency", "1",
    )  # fmt: skip
    with front(upstream, every(5, "stale")) as hostile:
        argv[argv.index("--url") + 1] = hostile.url
        code = main(argv)
    captured = capsys.readouterr()
    manifest, accuracy = _run(tmp_path)
    summary = AccuracySummary.from_dict(accuracy)
    assert code == 1 and manifest["status"] == "partial"
    assert [(m.batch, m.matches) for m in summary.mixed_up] == [(4, 3), (9, 8), (14, 13)]
    assert summary.answers == 16 and summary.failed == 0  # well-formed: only this finds them
    assert any("batch 4 is batch 3's" in w for w in manifest["warnings"])
    assert "MIXED UP: the answer to batch 4 is batch 3's" in captured.out


def test_the_int8_variant_drifts_and_check_fails_a_threshold_below_it(server, tmp_path, capsys):
    url = server.grpc_url
    assert main(_accuracy(url, "grpc", tmp_path, "--model", INT8)) == 0
    (folder,) = [p for p in tmp_path.iterdir() if (p / "accuracy.json").exists()]
    summary = AccuracySummary.from_dict(json.loads((folder / "accuracy.json").read_text()))
    assert 1e-4 < summary.largest_abs < 0.5  # quantized: close, not equal
    assert summary.score.samples == summary.samples > 0
    capsys.readouterr()
    loose, tight = tmp_path / "loose.toml", tmp_path / "tight.toml"
    loose.write_text("[accuracy]\nmax_abs_diff = 0.5\nlabel_change_fraction = 0.5\n")
    tight.write_text(f"[accuracy]\nmax_abs_diff = {summary.largest_abs / 2:g}\n")
    assert main(["check", str(folder), "--thresholds", str(loose)]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check", str(folder), "--thresholds", str(tight)]) == 1
    out = capsys.readouterr().out
    assert "max_abs_diff" in out and "FAIL" in out


def test_a_model_without_a_known_network_needs_a_reference_in_one_line(server, tmp_path, capsys):
    # The calibration model stands in for EmTrackMichelId; the jet tagger is its own
    # network; a model file that does not exist is refused before any request.
    code = main(_accuracy(server.grpc_url, "grpc", tmp_path, "--reference", "/nonexistent.onnx"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--reference /nonexistent.onnx" in err[0]


def test_the_jet_tagger_is_compared_per_output(server, tmp_path, capsys):
    code = main(
        _accuracy(server.grpc_url, "grpc", tmp_path, "--model", MODEL_JET_TAGGER, "--batch", "32")
    )
    assert code == 0, capsys.readouterr().err
    _, accuracy = _run(tmp_path)
    summary = AccuracySummary.from_dict(accuracy)
    assert {o.name for o in summary.outputs} == {"class_probs", "top_class"}
    assert summary.largest_abs <= 1e-3  # FP16 outputs, the same onnxruntime
    assert summary.score is None  # no Michel cut for a jet tagger


def _answers(reference, scale=0.0):
    return [{k: v + scale for k, v in r.items()} for r in reference]


def test_the_tally_counts_labels_cuts_and_events():
    rng = np.random.default_rng(0)
    references = [
        {TRACK_EM_OUTPUT: rng.dirichlet([1, 1, 1], 8).astype(np.float32),
         MICHEL_OUTPUT: rng.random((8, 1), dtype=np.float32)}
        for _ in range(4)
    ]  # fmt: skip
    served = [{k: v.copy() for k, v in r.items()} for r in references]
    served[1][TRACK_EM_OUTPUT][0] = served[1][TRACK_EM_OUTPUT][0][::-1]  # a label may flip
    served[2][MICHEL_OUTPUT][:] = 1 - served[2][MICHEL_OUTPUT]
    judging = Judging((TRACK_EM_OUTPUT,), ScoreCut(MICHEL_OUTPUT, 0.5))
    tally = DriftTally("m", "fp32", judging)
    tally.add({0: [served[0]], 1: [served[1]]}, references[:2], event=0)
    tally.add({0: [served[2]], 1: [served[3]]}, references[2:], event=1)
    summary = AccuracySummary.from_dict(json.loads(json.dumps(tally.summary().to_dict())))
    flipped = int(np.argmax(references[1][TRACK_EM_OUTPUT][0]) != 1)  # argmax of reversed
    assert summary.labels[0].changed == flipped
    want = references[2][MICHEL_OUTPUT].ravel() > 0.5
    got = served[2][MICHEL_OUTPUT].ravel() > 0.5
    assert summary.score.disagree == int(np.count_nonzero(want != got))
    assert summary.score.events == 2 and summary.samples == 32
    assert summary.score.max_event_change == abs(int(got.sum()) - int(want.sum()))
    assert not summary.mixed_up


def test_variants_rebuild_byte_for_byte():
    fp32 = model_bytes()
    calibration = protodune_calibration()
    for precision in ("fp16", "int8-dynamic", "int8-static"):
        first = convert(fp32, precision, calibration)
        assert first != fp32 and convert(fp32, precision, calibration) == first, precision


def test_a_sweep_over_variants_prints_speed_beside_drift(server, tmp_path, capsys):
    """`sweep --model A,B --accuracy`: each model's levels, then its accuracy run on the
    same server; one table of both, FP32's throughput ratio 1 and its drift 0."""
    argv = quick_sweep(server, tmp_path, "--concurrency", "1", "--accuracy")
    argv[argv.index("--model") + 1] = f"{MODEL_DYNAMIC_BATCHING},{INT8}"
    argv += ["--accuracy-events", "1", "--accuracy-event-scale", "0.02"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    table = out.split("accuracy beside speed", 1)[1].splitlines()
    fp32 = next(line for line in table if line.strip().startswith(MODEL_DYNAMIC_BATCHING))
    int8 = next(line for line in table if line.strip().startswith(INT8))
    assert " fp32 " in fp32 and " 1.00 " in fp32
    assert " int8-static " in int8
    kinds = sorted(
        json.loads((p / "manifest.json").read_text())["kind"] for p in tmp_path.iterdir()
    )
    assert kinds == ["accuracy", "accuracy", "sweep", "sweep"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--accuracy-events", "0"), ("--accuracy-event-scale", "2"), ("--accuracy-concurrency", "0")],
)
def test_a_sweeps_accuracy_flags_are_the_ones_its_errors_name(capsys, flag, value):
    assert main(["sweep", "--accuracy", flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"sonic-bench: error: {flag} {value}")


def test_drift_and_near_equal_requests_are_no_mix_up_but_a_swap_under_drift_is():
    """A reduced-precision model's answers, with two requests of near-equal patches: its
    drift is no mix-up. The same answers with two of them swapped: named, both."""
    rng = np.random.default_rng(1)
    references = [{"y": rng.random((16, 3))} for _ in range(10)]
    references[7] = {"y": references[6]["y"] + 1e-4}  # near-equal to 6
    drifted = [{"y": r["y"] + rng.normal(0, 1e-2, (16, 3))} for r in references]
    assert find_mixed_up({i: [a] for i, a in enumerate(drifted)}, references, ["y"]) == []
    swapped = {i: [a] for i, a in enumerate(drifted)}
    swapped[2], swapped[5] = swapped[5], swapped[2]
    found = find_mixed_up(swapped, references, ["y"])
    assert [(m.batch, m.matches) for m in found] == [(2, 5), (5, 2)]
