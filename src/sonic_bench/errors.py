"""The one exception type that the CLI turns into a single clear line and an exit code."""


class SonicBenchError(Exception):
    """A user-facing failure: the message says what was wrong and how to fix it."""

    exit_code = 2


def first_line(error: Exception) -> str:
    """An error's first line (its type where it says nothing): what a one-line message
    quotes of it."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
