"""Arguments and output shared by several commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sonic_bench.model.repository import DEFAULT_REPOSITORY


def add_repository(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="the model repository folder (default: %(default)s)",
    )


def int_list(text: str) -> list[int]:
    """'1,2,4' or '1-8' (powers of two from 1 to 8) or '10:100:10' (start:stop:step)."""
    usage = "use 1,2,4 or 1-64 (doubling) or 10:100:10 (start:stop:step)"
    try:
        if ":" in text:
            start, stop, step = (int(x) for x in text.split(":"))
            if step < 1 or stop < start:
                raise argparse.ArgumentTypeError(
                    f"{text!r}: start:stop:step needs step >= 1 and stop >= start"
                )
            values = list(range(start, stop + 1, step))
        elif "-" in text.strip("-"):
            low, high = (int(x) for x in text.split("-"))
            if low < 1 or high < low:
                raise argparse.ArgumentTypeError(f"{text!r}: LOW-HIGH needs 1 <= LOW <= HIGH")
            values, v = [], low
            while v <= high:
                values.append(v)
                v *= 2
        else:
            values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers: {usage}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no value: {usage}")
    return values


def float_list(text: str) -> list[float]:
    """'10,20.5' as numbers."""
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], file=None) -> None:
    file = file or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), file=file)
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)), file=file)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def progress(message: str) -> None:
    """One line of progress on stderr, so stdout stays a clean table."""
    print(message, file=sys.stderr, flush=True)
