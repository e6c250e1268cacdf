"""The web UI's /swarm form read as Locust reads it, then held to the command line's rules."""

from __future__ import annotations

import argparse

import pytest

from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.webui import form_options

PARSED = argparse.Namespace(
    burn_cpu=False, event_scale=0.02, num_users=1, spawn_rate=1.0, batch="small",
    prometheus_port=9090, workload_file="",
)  # fmt: skip


def test_fields_take_their_options_types_as_locust_converts_them():
    asked = form_options(
        PARSED,
        {"burn_cpu": "false", "event_scale": "0.5", "user_count": "3", "spawn_rate": "2",
         "batch": "large", "workload_file": "w.sbwl", "user_classes": "X"},
    )  # fmt: skip
    assert asked.burn_cpu is False and asked.event_scale == 0.5 and asked.num_users == 3
    assert asked.spawn_rate == 2.0 and asked.batch == "large"
    assert asked.workload_file == "w.sbwl" and not hasattr(asked, "user_classes")
    assert form_options(PARSED, {"burn_cpu": "true"}).burn_cpu is True
    assert PARSED.event_scale == 0.02  # the running options are not touched


@pytest.mark.parametrize(("field", "value"), [("prometheus_port", "x"), ("user_count", "1.5")])
def test_a_field_that_does_not_convert_is_an_error(field, value):
    with pytest.raises(SonicBenchError, match=field):
        form_options(PARSED, {field: value})
