"""The one exception type that the CLI turns into a single clear line and an exit code."""


class SonicBenchError(Exception):
    """A user-facing failure: the message says what was wrong and how to fix it."""

    exit_code = 2
