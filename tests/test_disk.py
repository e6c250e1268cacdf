"""Results folders that take no more: a full disk, a read-only one, one that vanishes.

Each is a real file system the test mounts (a small tmpfs, remounted read-only where
asked) and unmounts again; where the suite may not mount, the test says so and skips.
The property: one clear line, the status written when it can be, no temp manifest
left, what was written kept and readable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, locust_command, quick_sweep, wait_for_first_event

from sonic_bench.cli import main
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks, MeasurementSettings
from sonic_bench.metrics.recording import MetricsOptions
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target

pytestmark = pytest.mark.server
QUICK = MeasurementSettings(window_s=0.3, warmup_s=0.1, max_windows=2)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(folder: Path) -> None:
    """Take every free byte of the file system."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass


def _sweep(server, results: Path, on_progress) -> None:
    plan = SweepPlan(
        configurations(
            [256], "on", MODEL_CALIBRATION
        ),  # the small batch setting of the calibration model
        levels([1, 2, 4]),
        QUICK,
        pool_batches=4,
        results=results,
    )
    target = Target(url=server.grpc_url)
    run_sweep(plan, target, MetricsOptions(mode="off"), LevelHooks(on_progress=[on_progress]))


def test_a_disk_that_fills_mid_run_is_one_line_and_keeps_its_status(
    server, small_disk, tmp_path, capsys
):
    def fill_after_the_first_level(message: str) -> None:
        if message.startswith("[2/"):
            _fill(small_disk)

    with pytest.raises(SonicBenchError) as failure:
        _sweep(server, small_disk / "results", fill_after_the_first_level)
    message = str(failure.value)
    assert "\n" not in message and "No space left on device (ENOSPC)" in message
    (folder,) = (small_disk / "results").iterdir()
    assert not list(folder.glob("*.tmp"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "partial"  # one level was written before the disk filled
    assert any("No space left" in w for w in manifest["warnings"])
    # What was written is kept and reads back: analyze tells it from a killed harness.
    (small_disk / "filler").unlink()
    copy = shutil.copytree(folder, tmp_path / folder.name)
    code = main(["analyze", str(copy), "--json", "--no-plots", "--output", str(tmp_path / "a")])
    assert code == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["status"] == "partial"
    assert any("No space left" in n for n in run["warnings"]) and not any(
        "killed" in n for n in run["warnings"]
    )


def test_a_read_only_results_folder_is_refused_before_the_run(server, small_disk, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code = main(quick_sweep(server, small_disk / "results", "--concurrency", "1"))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "error" in x]
    assert "Read-only file system (EROFS)" in line and "--results" in line


def test_a_results_folder_that_vanishes_mid_run_is_one_line(server, tmp_path):
    results = tmp_path / "results"

    def remove_after_the_first_level(message: str) -> None:
        if message.startswith("[2/"):
            shutil.rmtree(results)

    with pytest.raises(SonicBenchError) as failure:
        _sweep(server, results, remove_after_the_first_level)
    assert "\n" not in str(failure.value) and "No such file or directory" in str(failure.value)


def test_a_file_in_place_of_the_results_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    code = main(["sweep", "--results", str(blocker / "sub"), "--url", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "cannot write" in err


def test_a_locust_run_whose_disk_fills_stops_with_one_line(server, small_disk):
    """The master writes as records arrive: when the disk takes no more it says so once,
    records what status the disk allows, and ends the test (exit 2, no traceback)."""
    results = small_disk / "results"
    command = locust_command(
        server, results, "--model", MODEL_CALIBRATION, "--metrics", "off",
        "--other-seconds", "20", "--staircase", "2", "--step-seconds", "120",
    )  # fmt: skip
    locust = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_first_event(locust, results)
        _fill(small_disk)
        _, err = locust.communicate(timeout=90)
    finally:
        locust.kill()
        locust.wait()
    err = err.decode()
    assert locust.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert len([line for line in err.splitlines() if "No space left on device" in line]) == 1
    assert not list(results.glob("*/*.tmp"))
