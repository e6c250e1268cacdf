"""The reaper of one server (see sonic_bench.process): waits on its standard input, a
pipe from the harness; at EOF without "done" the harness died, so it ends the server's
process group and removes what the server left behind. With `--group 0` it only removes
leftovers (the harness's own shared-memory regions).

    python -m sonic_bench.reaper --group PGID [--folder DIR]... [--shm-prefix NAME]...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from sonic_bench.process import DONE, NO_GROUP, Leftovers

GRACE_S = 5.0


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap(group: int, leftovers: Leftovers) -> None:
    if group == NO_GROUP:
        leftovers.remove()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    time.sleep(0.2)  # let the group's processes unmap their regions before removal
    leftovers.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sonic_bench.reaper")
    parser.add_argument("--group", type=int, required=True)
    parser.add_argument("--folder", action="append", default=[], type=Path)
    parser.add_argument("--shm-prefix", action="append", default=[])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle
    message = sys.stdin.buffer.read()
    if not message.endswith(DONE):
        reap(args.group, Leftovers(tuple(args.folder), tuple(args.shm_prefix)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
