"""How steady is this machine's own speed? The resolution of every ratio in bench/.

One thread repeats a fixed piece of work (a 2 MB copy, as a request body; a loop of
Python, as a client's own work) in back-to-back 1-second windows and reports the
coefficient of variation of the windows' rates and their range. On a quiet machine both
are a few tenths of a percent; on a shared virtual machine the host's other tenants show
here, and a ratio of two engines measured seconds apart carries that much noise before
either engine does anything.

    .venv/bin/python bench/host_noise.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

COPY_BYTES = 2 * 1024 * 1024


def windows(work: Callable[[], None], seconds: int) -> list[float]:
    """Repetitions of `work` per second, one value per 1-second window."""
    rates = []
    for _ in range(seconds):
        began, done = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - began) < 1.0:
            work()
            done += 1
        rates.append(done / elapsed)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    source = np.ones(COPY_BYTES // 4, np.float32)
    target = np.empty_like(source)
    works = {
        "2 MB copy": lambda: np.copyto(target, source),
        "Python loop": lambda: sum(range(1000)),
    }
    for name, work in works.items():
        rates = windows(work, args.seconds)
        mean = statistics.fmean(rates)
        spread = statistics.stdev(rates) / mean
        print(
            f"{name}: {mean:,.0f}/s over {len(rates)} windows, CV {spread:.1%},"
            f" range {min(rates) / mean:.3f}-{max(rates) / mean:.3f} of the mean"
        )


if __name__ == "__main__":
    main()
