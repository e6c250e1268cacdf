"""The staircase: each user count of --staircase held for a while, then the next.

Holds grow with the user count (--step-seconds + --step-seconds-per-user x users), since
past saturation an event takes longer with every user and each level should still see
several events per user. With --staircase off, -u/-r/-t drive the test as usual.

`Staircase.target` is a pure schedule and `StaircaseShape.tick` only reads it, as
Locust means `tick` to be: a function of the run time (and of one flag: a run that must
stop early, e.g. because its server went away, ends at the next tick, the way a finished
staircase does). Where the steps actually began is recorded by the step watcher
(steps.py), from what the runner was asked to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from locust import LoadTestShape

SPAWN_RATE = 100.0  # grid jobs start together once their slots are allocated


@dataclass(frozen=True)
class Staircase:
    users: tuple[int, ...]
    holds_s: tuple[float, ...]

    def target(self, elapsed_s: float) -> int | None:
        """Users wanted `elapsed_s` into the run; None once the last step is over."""
        for users, hold in zip(self.users, self.holds_s, strict=True):
            if elapsed_s < hold:
                return users
            elapsed_s -= hold
        return None

    @property
    def duration_s(self) -> float:
        return sum(self.holds_s)


class StaircaseShape(LoadTestShape):
    use_common_options = True  # -u/-r/-t still apply with --staircase off

    def tick(self):
        from sonic_bench.loadgen.state import state_of  # the shape is imported by Locust first

        environment = self.runner.environment
        state = state_of(environment)
        if state.stop_reason is not None:
            return None
        staircase = state.options.staircase_schedule()
        if staircase is None:
            parsed = environment.parsed_options
            return parsed.num_users or 1, parsed.spawn_rate or SPAWN_RATE
        users = staircase.target(self.get_run_time())
        return None if users is None else (users, SPAWN_RATE)
