"""The staircase: each user count of --staircase held for a while, then the next.

Holds grow with the user count (--step-seconds + --step-seconds-per-user x users), since
past saturation an event takes longer with every user and each level should still see
several events per user. With --staircase off, -u/-r/-t drive the test as usual.
"""

from __future__ import annotations

from locust import LoadTestShape

from sonic_bench.loadgen.context import context_of

SPAWN_RATE = 100.0  # grid jobs start together once their slots are allocated


class StaircaseShape(LoadTestShape):
    use_common_options = True  # -u/-r/-t still apply with --staircase off

    def tick(self):
        context = context_of(self.runner.environment)
        options = context.options
        if not options.staircase:
            parsed = self.runner.environment.parsed_options
            users = parsed.num_users or 1
            context.enter_step(users)
            return users, parsed.spawn_rate or SPAWN_RATE
        elapsed = self.get_run_time()
        for users in options.staircase:
            hold = options.hold_seconds(users)
            if elapsed < hold:
                context.enter_step(users)
                return users, SPAWN_RATE
            elapsed -= hold
        context.finished_staircase = True
        return None
