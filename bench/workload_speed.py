"""Issue 3's figures:

- a full ~55,000-hit event with its patches in < 10 s on one core, < 2 GiB (measured in a
  child process with one thread, so its peak memory is its own);
- streaming request batches from a workload file at >= 10x the patch rate the embedded
  server can serve (its saturation, measured here with the in-process reference);
- hits per event, label fractions, zero pixels, average batches, zlib ratio vs random.

    .venv/bin/python bench/workload_speed.py [--events 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Figures

from sonic_bench.measure.baseline import infer, open_session
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.workload.batching import LARGE_BATCH_SETTING, SMALL_BATCH_SETTING
from sonic_bench.workload.dataset import Dataset, write_dataset
from sonic_bench.workload.summary import summarize_events

CHILD = """
import json, resource, time
from sonic_bench.workload.event import simulate_event
began = time.perf_counter()
event = simulate_event(seed={seed}, index=0)
patches = sum(len(g.patches) for g in event.groups())
print(json.dumps({{"seconds": time.perf_counter() - began, "hits": len(event.hits),
    "patches": patches, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def one_event(seed: int) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", CHILD.format(seed=seed)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3)
    args = parser.parse_args()
    figures = Figures()
    runs = [one_event(seed) for seed in range(args.events)]
    figures.value(
        "full event generation, one core (s, worst)",
        max(r["seconds"] for r in runs),
        target=10,
        fmt="{:.2f}",
        lower_is_better=True,
    )
    figures.value(
        "peak memory (MiB, worst)",
        max(r["max_rss_mb"] for r in runs),
        target=2048,
        fmt="{:.0f}",
        lower_is_better=True,
    )
    summary = summarize_events(1234, args.events, 1.0, (SMALL_BATCH_SETTING, LARGE_BATCH_SETTING))
    figures.value("hits per event (mean)", summary.hits_mean)
    print(
        "label fractions: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.label_fractions.items())
    )
    figures.value("zero pixels in patches", summary.zero_fraction, fmt="{:.3f}")
    figures.value("zlib ratio, patches", summary.compression_ratio, fmt="{:.1f}")
    figures.value(
        "zlib ratio, uniform random patches", summary.random_compression_ratio, fmt="{:.2f}"
    )
    for setting, stats in summary.batches.items():
        print(
            f"setting {setting}: {stats.requests_per_event:.1f} requests/event, "
            f"average batch {stats.avg_batch_size:.0f}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.sbwl"
        write_dataset(path, seed=1, n_events=2, event_scale=1.0)
        began, patches = time.perf_counter(), 0
        with Dataset(path) as data:
            for batch in data.requests(LARGE_BATCH_SETTING):
                patches += batch.size
        streamed = patches / (time.perf_counter() - began)
        session = open_session(model_bytes(), 0)
        batch = next(iter(Dataset(path).requests(SMALL_BATCH_SETTING))).patches
        began, served = time.perf_counter(), 0
        while time.perf_counter() - began < 3:
            infer(session, batch, 256)
            served += len(batch)
        server_rate = served / (time.perf_counter() - began)
    figures.value("streaming from a workload file (patches/s)", streamed)
    figures.value("embedded model's best rate (in-process, all cores)", server_rate)
    figures.value("streaming / serving", streamed / server_rate, target=10, fmt="{:.1f}")
    figures.exit()


if __name__ == "__main__":
    main()
