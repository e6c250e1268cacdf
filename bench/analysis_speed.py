"""Issue 7's figure: analysing a run with 1,000,000 request records takes < 10 s and
< 2 GiB (the analysis runs in a child process so that its peak memory is its own).

    .venv/bin/python bench/analysis_speed.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, Figures

from sonic_bench.analysis.synthetic import loadgen_run

CHILD = """
import json, resource, sys, time
from sonic_bench.cli import main
began = time.perf_counter()
code = main(["analyze", sys.argv[1], "--output", sys.argv[2]])
print(json.dumps({"seconds": time.perf_counter() - began, "code": code,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_requests(folder: Path, records: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    t_send = np.sort(rng.uniform(0, 3600, records)) + 1.8e9
    latency = rng.lognormal(3, 0.5, records)
    step = np.minimum((np.arange(records) * steps) // records, steps - 1)
    with gzip.open(folder / "requests.csv.gz", "wt", compresslevel=1) as f:
        f.write("step,worker,t_send,t_recv,latency_ms,batch_size,ok,error\n")
        for i in range(0, records, 100_000):
            rows = zip(
                step[i : i + 100_000],
                t_send[i : i + 100_000],
                latency[i : i + 100_000],
                strict=True,
            )
            f.write(
                "".join(
                    f"{s},w/{s},{t:.6f},{t + lat / 1000:.6f},{lat:.3f},235,1,\n"
                    for s, t, lat in rows
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    figures = Figures()
    with tempfile.TemporaryDirectory() as tmp:
        folder = loadgen_run(Path(tmp), 270, 13, 110, 0.05, seed=0, events_per_level=200)
        write_requests(folder, args.records, 10)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        began = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        wall = time.perf_counter() - began
    figures.value(
        f"analyze {args.records:,} records: seconds (with start-up)",
        wall,
        target=10,
        fmt="{:.2f}",
        lower_is_better=True,
    )
    figures.value(
        "peak memory (MiB)", result["max_rss_mb"], target=2048, fmt="{:.0f}", lower_is_better=True
    )
    figures.exit()


if __name__ == "__main__":
    main()
