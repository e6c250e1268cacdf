"""Manifests record what a result needs to be reproduced; comparisons say what differs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

from helpers import ROOT

from sonic_bench.cli import main
from sonic_bench.results.machine import differences, this_harness, this_machine
from sonic_bench.results.schema import SCHEMA_VERSION, Manifest
from sonic_bench.results.store import read_run

FIXTURES = ROOT / "tests" / "fixtures" / "schema-v1"


def _old_sweep() -> Manifest:
    (folder,) = FIXTURES.glob("*-old-sweep-*")
    return read_run(folder).manifest


def test_a_new_manifest_records_versions_cpu_flags_and_the_checkout():
    harness, machine = this_harness(), this_machine()
    for package in ("python", "tritonclient", "onnxruntime", "numpy", "locust", "nvidia-pytriton"):
        assert harness.versions.get(package), package
    assert harness.git_sha and harness.git_dirty in (True, False)
    assert machine.cpu_model and machine.cpu_flags and machine.os
    manifest = replace(_old_sweep(), harness=harness, machine=machine)
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert SCHEMA_VERSION == 2


def test_schema_v1_manifests_still_read():
    manifest = _old_sweep()
    assert manifest.schema_version == 1
    assert manifest.harness.versions == {} and manifest.machine.cpu_flags == ()


def _with(manifest: Manifest, **versions: str) -> Manifest:
    harness = replace(manifest.harness, versions={**manifest.harness.versions, **versions})
    return replace(manifest, harness=harness)


def test_runs_that_differ_in_onnxruntime_say_so():
    base = _with(_old_sweep(), onnxruntime="1.18.0", numpy="1.26.4")
    assert differences(base, base) == []
    (found,) = differences(base, _with(base, onnxruntime="1.20.1"))
    assert found == "onnxruntime: 1.18.0 vs 1.20.1"


def test_a_cpu_without_avx512_is_named():
    base = _old_sweep()
    fast = replace(base, machine=replace(base.machine, cpu_flags=("avx2", "avx512f", "sse4_2")))
    slow = replace(base, machine=replace(base.machine, cpu_flags=("avx2", "sse4_2")))
    (found,) = differences(fast, slow)
    assert "avx512f" in found


def _copy_with_versions(tmp_path, name: str, onnxruntime: str):
    (source,) = FIXTURES.glob("*-old-sweep-*")
    folder = shutil.copytree(source, tmp_path / name)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["harness"]["versions"] = {"onnxruntime": onnxruntime}
    path.write_text(json.dumps(data))
    return folder


def test_check_warns_when_run_and_baseline_differ_in_onnxruntime(tmp_path, capsys):
    run = _copy_with_versions(tmp_path, "run", "1.20.1")
    baseline = _copy_with_versions(tmp_path, "baseline", "1.18.0")
    thresholds = tmp_path / "t.toml"
    thresholds.write_text('[metrics.inferences_per_s]\ntolerance = 0.1\nnormalize = "none"\n')
    main(["check", str(run), "--baseline", str(baseline), "--thresholds", str(thresholds)])
    err = capsys.readouterr().err
    assert "run and baseline differ in onnxruntime: 1.20.1 vs 1.18.0" in err


def test_analyze_warns_when_sweep_and_baseline_differ(tmp_path, capsys):
    root = tmp_path / "runs"
    for kind in ("sweep", "baseline"):
        (source,) = FIXTURES.glob(f"*-old-{kind}*")
        folder = shutil.copytree(source, root / source.name)
        path = folder / "manifest.json"
        data = json.loads(path.read_text())
        data["harness"]["versions"] = {"onnxruntime": "1.20.1" if kind == "sweep" else "1.18.0"}
        path.write_text(json.dumps(data))
    main(["analyze", str(root), "--json", "--no-plots", "--output", str(tmp_path / "a")])
    report = json.loads(capsys.readouterr().out)
    (sweep,) = [r for r in report["runs"] if r["kind"] == "sweep"]
    assert any("onnxruntime: 1.20.1 vs 1.18.0" in w for w in sweep["warnings"])
