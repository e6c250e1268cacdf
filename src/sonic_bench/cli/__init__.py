"""The `sonic-bench` command line: one module per command group; only this layer prints."""

from __future__ import annotations

import argparse
import signal
import sys

from sonic_bench import __version__
from sonic_bench.cli import (
    accuracy_cmd,
    analyze_cmd,
    baseline_cmd,
    check_cmd,
    compare_cmd,
    export_cmd,
    model_cmd,
    predict_cmd,
    serve_cmd,
    sweep_cmd,
    workload_cmd,
)
from sonic_bench.errors import SonicBenchError

COMMANDS = (
    model_cmd,
    serve_cmd,
    workload_cmd,
    baseline_cmd,
    sweep_cmd,
    accuracy_cmd,
    analyze_cmd,
    predict_cmd,
    check_cmd,
    compare_cmd,
    export_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonic-bench",
        description="Benchmark inference as a service the way the SONIC ProtoDUNE-SP study did.",
    )
    parser.add_argument("--version", action="version", version=f"sonic-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def _terminate(signum: int, frame: object) -> None:
    # `kill` and CI timeouts send SIGTERM: unwind like Ctrl-C so that the servers we
    # started (in sessions of their own) are stopped and results are marked partial.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    # A shell without job control starts `sonic-bench ... &` with SIGINT ignored, and
    # Python keeps it so: Ctrl-C or `kill -INT` would then leave our servers running.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SonicBenchError as e:
        print(f"sonic-bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sonic-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
