"""Locust file: ProtoDUNE-SP grid jobs sending EmTrackMichelId requests to Triton.

    locust -f loadgen/sonic.py --headless --url 127.0.0.1:8000

runs the paper's staircase (1 to 400 jobs) at reduced scale and writes a run folder
under results/. `locust -f loadgen/sonic.py --help` lists the sonic-bench options; the
logic lives in sonic_bench.loadgen.
"""

from locust import task

import sonic_bench.loadgen.hooks  # noqa: F401  (installs the listeners and arguments)
from sonic_bench.loadgen.shape import StaircaseShape  # noqa: F401  (Locust finds it here)
from sonic_bench.loadgen.user import GridJobUser


class ProtoDuneGridJob(GridJobUser):
    """One reconstruction job: other work, preprocessing, then the module's requests."""

    @task
    def event(self) -> None:
        self.reconstruct_event()
