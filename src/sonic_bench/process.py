"""Child servers the harness owns: started, watched until ready, and always stopped.

One class for every server the harness starts (tritonserver, Prometheus): the port
check, a log file, a readiness poll that notices an early death, and a stop that ends
the whole process group. What a server leaves behind (its temp folder, its shared
memory regions) goes with it.

A stop in `finally` does not run when the harness itself is SIGKILLed (a CI hard kill,
the OOM killer). For that, each server gets a reaper: a small process that holds the
read end of a pipe whose write end only the harness holds. When the harness dies, the
kernel closes that end, the reaper reads EOF and ends the server's process group and
removes its files. On a normal stop the harness tells the reaper "done" first, so a
process-group id that the system later reuses is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sonic_bench.errors import SonicBenchError

SHM_FOLDER = Path("/dev/shm")
DONE = b"done\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do: connections of a just-stopped server (TIME_WAIT) do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def last_line(text: str) -> str:
    """The last non-blank line of a log, for a one-line error."""
    return ([line for line in text.splitlines() if line.strip()][-1:] or ["(empty log)"])[0]


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass(frozen=True)
class Leftovers:
    """What a server leaves on the machine, removed when it stops (or its owner dies)."""

    folders: tuple[Path, ...] = ()
    shm_prefixes: tuple[str, ...] = ()  # names in /dev/shm that start with one of these

    def remove(self) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        for prefix in self.shm_prefixes:
            for region in SHM_FOLDER.glob(f"{prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def as_args(self) -> list[str]:
        return [*(f"--folder={f}" for f in self.folders)] + [
            f"--shm-prefix={p}" for p in self.shm_prefixes
        ]


@dataclass
class ManagedProcess:
    """A server process in a session of its own; use as a context manager."""

    name: str
    command: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    startup_timeout_s: float = 60.0
    env: dict[str, str] | None = None
    leftovers: Leftovers = field(default_factory=Leftovers)
    # Turns the log text and exit code of a server that died during start into one line.
    death_reason: Callable[[str, int | None], str] | None = None
    # Whether, once the server was told to stop, the rest of its shutdown is of use to no
    # one and may be cut short (SIGKILL; its leftovers are removed as after any stop).
    # None: it always runs to its end.
    shutdown_moot: Callable[[], bool] | None = None
    process: subprocess.Popen[bytes] | None = None
    _reaper: Reaper | None = None

    @staticmethod
    def check_ports(host: str, ports: dict[str, int], hint: Callable[[str], str]) -> None:
        for role, port in ports.items():
            if not port_free(host, port):
                raise SonicBenchError(
                    f"port {port} on {host} ({role}) is already in use: {hint(role)}"
                )

    def start(self, on_wait: Callable[[float], None] | None = None) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # A session of its own: Ctrl-C reaches the harness, which stops the group.
            self.process = subprocess.Popen(
                list(self.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self._reaper = Reaper.start(self.process.pid, self.leftovers)
        try:
            self._wait_ready(on_wait)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, on_wait: Callable[[float], None] | None) -> None:
        assert self.process is not None
        began = time.monotonic()
        while True:
            waited = time.monotonic() - began
            if self.process.poll() is not None:
                raise SonicBenchError(self._death_reason())
            if self.ready():
                return
            if waited > self.startup_timeout_s:
                raise SonicBenchError(
                    f"{self.name} not ready after {self.startup_timeout_s:.0f} s "
                    f"(log: {self.log_path})"
                )
            if on_wait:
                on_wait(waited)
            time.sleep(0.2)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _death_reason(self) -> str:
        code = self.process.returncode if self.process else None
        if self.death_reason is not None:
            return self.death_reason(self.log_text(), code)
        return (
            f"{self.name} exited during start (code {code}): "
            f"{last_line(self.log_text())} (log: {self.log_path})"
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """End the process and every process of its group, then remove its leftovers."""
        if self.process is not None:
            group = self.process.pid
            _signal_group(group, signal.SIGTERM)
            self._wait_for_shutdown(timeout_s)
            # What is left of the group (backend stubs, a shutdown cut short) ends here.
            _signal_group(group, signal.SIGKILL)
            self.process.wait()
            self.process = None
        self.leftovers.remove()
        if self._reaper is not None:
            self._reaper.dismiss()
            self._reaper = None

    def _wait_for_shutdown(self, timeout_s: float) -> None:
        """Until the process exits, its shutdown turns moot, or `timeout_s` passes."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            if self.shutdown_moot is not None and self.shutdown_moot():
                return
            time.sleep(0.02)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


class LeftoversGuard:
    """What the harness itself leaves (client-side shared-memory regions): removed at
    `close()`, or by a reaper of its own should the harness be killed first."""

    def __init__(self, leftovers: Leftovers):
        self.leftovers = leftovers
        self._reaper: Reaper | None = Reaper.start(NO_GROUP, leftovers)

    def close(self) -> None:
        self.leftovers.remove()
        if self._reaper is not None:
            self._reaper.dismiss()
            self._reaper = None


@contextlib.contextmanager
def owned_folder(prefix: str) -> Iterator[Path]:
    """A temp folder of the harness's own (perf_analyzer's input data and reports):
    removed at the end of the block, or by its reaper should the harness be killed."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    guard = LeftoversGuard(Leftovers(folders=(path,)))
    try:
        yield path
    finally:
        guard.close()


NO_GROUP = 0  # a reaper with no process group to end, only leftovers to remove


@dataclass
class Reaper:
    """A `sonic_bench.reaper` process and the pipe that keeps it waiting: if the harness
    dies, the pipe closes without "done" and the reaper cleans up after it."""

    process: subprocess.Popen[bytes]
    lifeline: int  # write end of the reaper's pipe

    @classmethod
    def start(cls, group: int, leftovers: Leftovers) -> Reaper:
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sonic_bench.reaper",
                    f"--group={group}",
                    *leftovers.as_args(),
                ],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C on the terminal must not end it first
                close_fds=True,
            )
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def dismiss(self) -> None:
        """The harness cleaned up itself: the reaper leaves without doing anything."""
        with contextlib.suppress(OSError):
            os.write(self.lifeline, DONE)
        os.close(self.lifeline)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
