"""Run folders written by earlier versions are read, and analysed, exactly as before.

tests/fixtures/schema-v1/ holds a baseline, a sweep and a Locust run written by the code
before the run orchestration moved out of the CLI; beside it is what that code's
`analyze` printed (--json) and wrote (report.md).
"""

from __future__ import annotations

import json
import math

from helpers import ROOT

from sonic_bench.cli import main
from sonic_bench.results.store import read_run

FIXTURES = ROOT / "tests" / "fixtures"


def _close(actual, expected, path="") -> None:
    if isinstance(expected, dict):
        assert set(actual) >= set(expected), path
        for key, value in expected.items():
            _close(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-9), path
    else:
        assert actual == expected, path


def test_old_run_folders_read_into_typed_manifests():
    for folder in sorted((FIXTURES / "schema-v1").iterdir()):
        run = read_run(folder)
        assert run.manifest.run_id == folder.name
        assert run.manifest.status == "complete"
        assert run.steps


def test_old_run_folders_analyse_as_before(tmp_path, capsys):
    code = main(["analyze", str(FIXTURES / "schema-v1"), "--json", "--output", str(tmp_path)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    _close(printed, json.loads((FIXTURES / "schema-v1-analysis.json").read_text()))
    report = (tmp_path / "report.md").read_text()
    assert report == (FIXTURES / "schema-v1-report.md").read_text()
