"""The web UI's sonic-bench fields, held to the same rules as the command line.

Locust copies a /swarm form's fields into the parsed options, converting each to the
type it had, and then starts the test (or the shape) with no check of its own on them:
`batch_size=foo` or `event_scale=-1` would start a run that can only fail. A check in
front of /swarm validates the form as `from_parsed` validates a command line and
answers as Locust's own form errors do (`success: false` with a message), so that no
run starts.
"""

from __future__ import annotations

import argparse
import copy

from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.options import from_parsed

# The form's names for Locust's own values that the shape reads.
_LOCUST_FIELDS = {"user_count": ("num_users", int), "spawn_rate": ("spawn_rate", float)}


def form_options(parsed: argparse.Namespace, form) -> argparse.Namespace:
    """The parsed options as the form would leave them (Locust's conversion: a field
    takes the type its option has); a value that does not convert is an error."""
    asked = copy.copy(parsed)
    for key, value in form.items():
        name, kind = _LOCUST_FIELDS.get(key, (key, None))
        if kind is None:
            if not hasattr(parsed, key) or key in ("host", "user_classes", "run_time"):
                continue
            kind = _kind_of(getattr(parsed, key))
        try:
            setattr(asked, name, kind(value))
        except ValueError:
            raise SonicBenchError(f"{key} {value!r}: not a valid {kind.__name__}") from None
    return asked


def _form_bool(value: str) -> bool:
    return value == "true"  # as Locust reads a checkbox


_form_bool.__name__ = "true/false"


def _kind_of(current):
    """How Locust converts a form field for an option holding `current`."""
    if isinstance(current, bool):
        return _form_bool
    return str if current is None else type(current)


def validate_swarm(environment, form) -> str | None:
    """The error the form must be answered with, or None when it may start a run."""
    try:
        from_parsed(form_options(environment.parsed_options, form), form.get("host") or None)
    except SonicBenchError as e:
        return str(e)
    return None


def install(environment) -> None:
    """Check /swarm forms before Locust takes them."""
    from flask import jsonify, request

    web_ui = environment.web_ui

    def check_swarm():
        if request.method != "POST" or not request.path.rstrip("/").endswith("/swarm"):
            return None
        error = validate_swarm(environment, request.form)
        if error is None:
            return None
        return jsonify(
            {"success": False, "message": f"sonic-bench: {error}", "host": environment.host}
        )

    web_ui.app.before_request(check_swarm)
