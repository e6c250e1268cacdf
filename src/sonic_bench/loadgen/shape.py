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

from locust import LoadTestShape

SPAWN_RATE = 100.0  # grid jobs start together once their slots are allocated
DRAIN_S = 60.0  # at most this long for the users to stop after the last step


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
            # Headless Locust applies -t only once a shape has ended: end it here, on the
            # clock that starts when the recording does (the workload is built first).
            recording = state.recorder is not None
            if parsed.run_time and recording and self.get_run_time() >= parsed.run_time:
                return None
            return parsed.num_users or 1, parsed.spawn_rate or SPAWN_RATE
        if state.recorder is None:
            # The workload is still being built (seconds): the staircase's clock starts
            # with the recording, so until then it is at its first step, never past its end.
            return staircase.target(0.0), SPAWN_RATE
        elapsed = self.get_run_time()
        users = staircase.target(elapsed)
        if users is not None:
            return users, SPAWN_RATE
        # The staircase is over: bring every user home first (they stop between requests
        # and their workers send their last records), then end the test. Ending at once
        # would have Locust stop a master's workers only after the run folder is closed.
        if self.runner.user_count > 0 and elapsed < staircase.duration_s + DRAIN_S:
            return 0, SPAWN_RATE
        return None
