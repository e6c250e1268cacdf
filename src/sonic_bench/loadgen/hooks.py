"""Wiring into Locust's events: arguments, per-process set-up, records, the run folder.

Importing this module installs the listeners (the Locust file does). It adds one event
of its own, `events.sonic_event`, fired once per reconstructed event with its timings;
other listeners may subscribe to it like to any Locust event.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import gevent
import grpc.experimental.gevent as grpc_gevent
from gevent.event import AsyncResult
from locust import events
from locust.event import EventHook
from locust.runners import MasterRunner, WorkerRunner

from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.context import ATTRIBUTE, LoadgenContext, build_context, context_of
from sonic_bench.loadgen.options import add_arguments, from_parsed
from sonic_bench.loadgen.recorder import (
    FLUSH_INTERVAL_S,
    MESSAGE,
    STEP_GRACE_S,
    RecordBuffer,
    RunRecorder,
)
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics
from sonic_bench.results.machine import this_harness, this_machine
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    WorkloadInfo,
    make_run_id,
    served_model,
    utc_now,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.triton.client import check_server

logger = logging.getLogger("sonic-bench")

# tritonclient imports gRPC; without this its threads and gevent's loop deadlock in
# Locust worker processes (and the gRPC protocol would block every user).
grpc_gevent.init_gevent()

if not hasattr(events, "sonic_event"):
    events.sonic_event = EventHook()

_state: dict = {"recorder": None, "buffer": None, "warnings": []}


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    add_arguments(parser)


def _fail(environment, message: str) -> None:
    logger.error("sonic-bench: %s", message)
    environment.process_exit_code = 2
    if environment.runner is not None:
        gevent.spawn_later(0.1, environment.runner.quit)


# Users stop between requests, so that a request the server counted is never lost; a
# request in flight takes at most this long (the master sends it to its workers).
DEFAULT_STOP_TIMEOUT_S = 120.0


@events.init.add_listener
def _set_up(environment, **_) -> None:
    if not environment.stop_timeout:
        environment.stop_timeout = DEFAULT_STOP_TIMEOUT_S
    try:
        options = from_parsed(environment.parsed_options)
    except SonicBenchError as e:
        _fail(environment, str(e))
        return
    # Simulating the workload takes seconds of CPU: in a thread, so that this process's
    # greenlets (a worker's heartbeats to its master) keep running meanwhile. Users and
    # listeners wait for the result through context_of().
    pending = AsyncResult()
    setattr(environment, ATTRIBUTE, pending)
    built = gevent.get_hub().threadpool.spawn(build_context, options)
    built.rawlink(lambda done: _context_ready(environment, pending, done))
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        buffer = RecordBuffer()
        _state["buffer"] = buffer
        environment.events.request.add_listener(buffer.on_request)
        environment.events.sonic_event.add_listener(buffer.on_event)
        gevent.spawn(_flush_forever, environment, buffer)
    if not isinstance(runner, WorkerRunner):
        runner.register_message(MESSAGE, _on_records)


def _context_ready(environment, pending: AsyncResult, done) -> None:
    try:
        pending.set(done.get())
    except SonicBenchError as e:
        pending.set_exception(e)
        _fail(environment, str(e))


def _flush(environment, buffer: RecordBuffer) -> None:
    payload = buffer.take()
    if payload["requests"] or payload["events"]:
        environment.runner.send_message(MESSAGE, payload)


def _flush_forever(environment, buffer: RecordBuffer) -> None:
    while True:
        gevent.sleep(FLUSH_INTERVAL_S)
        _flush(environment, buffer)
        _note_cpu(environment)


def _note_cpu(environment) -> None:
    recorder: RunRecorder | None = _state["recorder"]
    runner = environment.runner
    if recorder is None or runner is None:
        return
    usages = [getattr(runner, "current_cpu_usage", 0.0)]
    usages += [getattr(c, "cpu_usage", 0.0) for c in getattr(runner, "clients", {}).values()]
    recorder.note_cpu(max(usages))


def _on_records(environment, msg, **_) -> None:
    recorder: RunRecorder | None = _state["recorder"]
    if recorder is not None:
        recorder.receive(msg.data)
        if isinstance(environment.runner, MasterRunner):
            _note_cpu(environment)


def _manifest(context: LoadgenContext, server_info: dict) -> Manifest:
    options = context.options
    plans = context.plans
    return Manifest(
        run_id=make_run_id(f"{options.label}-b{options.batch_setting}"),
        kind="loadgen",
        started_at=utc_now(),
        harness=this_harness(),
        server=served_model(options.url, options.protocol, options.model, server_info),
        workload=WorkloadInfo(
            seed=options.seed,
            batch_size_setting=options.batch_setting,
            avg_batch_size=sum(p.patches for p in plans) / sum(len(p.batches) for p in plans),
            patches_per_event=round(sum(p.patches for p in plans) / len(plans)),
            event_scale=options.event_scale,
        ),
        load=LoadInfo(
            mode="closed",
            levels=tuple(float(u) for u in options.staircase),
            step_seconds=options.step_seconds,
            parameters={
                "other_s_per_event": sum(p.other_s for p in plans) / len(plans),
                "preprocess_s_per_event": sum(p.preprocess_s for p in plans) / len(plans),
                "requests_per_event": sum(len(p.batches) for p in plans) / len(plans),
                "step_seconds_per_user": options.step_seconds_per_user,
                "burn_cpu": options.burn_cpu,
                "other_jitter": options.other_jitter,
                "protocol": options.protocol,
            },
        ),
        machine=this_machine(),
        warnings=(),
    )


@events.test_start.add_listener
def _start_run(environment, **_) -> None:
    if isinstance(environment.runner, WorkerRunner) or not hasattr(environment, ATTRIBUTE):
        return
    try:
        context = context_of(environment)
        info = check_server(context.endpoint, context.options.model)
        writer = RunWriter(context.options.results, _manifest(context, info))
    except SonicBenchError as e:
        _fail(environment, str(e))
        return
    metrics = _start_metrics(context.options, writer)
    _state["recorder"] = RunRecorder(writer, context.steps, metrics)
    _state["warnings"] = []
    logger.info("sonic-bench: recording to %s", writer.folder)


def _start_metrics(options, writer: RunWriter) -> RunMetrics | None:
    if options.metrics == "off":
        return None
    settings = MetricsOptions(
        mode=options.metrics,
        prometheus_url=options.prometheus_url or None,
        prometheus_port=options.prometheus_port,
    )
    workdir = Path(tempfile.mkdtemp(prefix="sonic-prometheus-"))
    metrics = RunMetrics(settings, options.triton_metrics_url, workdir)
    metrics.__enter__()
    writer.update(metrics=metrics.info())
    for message in metrics.warnings:
        logger.warning("sonic-bench: %s", message)
    return metrics


@events.cpu_warning.add_listener
def _cpu_warning(environment, cpu_usage, **_) -> None:
    message = f"Locust's CPU warning fired ({cpu_usage:.0f}%): the load generator may limit"
    if message not in _state["warnings"]:
        _state["warnings"].append(message)


@events.test_stop.add_listener
def _stop_run(environment, **_) -> None:
    buffer = _state["buffer"]
    if buffer is not None:
        _flush(environment, buffer)  # a worker's last records go to the master now
    recorder: RunRecorder | None = _state["recorder"]
    if recorder is None or isinstance(environment.runner, WorkerRunner):
        return
    context = context_of(environment)
    context.steps.close(time.time())
    if isinstance(environment.runner, MasterRunner):
        gevent.sleep(STEP_GRACE_S)  # the workers' last messages
    done = context.finished_staircase or not context.options.staircase
    folder = recorder.finish("complete" if done else "partial", tuple(_state["warnings"]))
    _state["recorder"] = None
    logger.info("sonic-bench: run written to %s", folder)


@events.quitting.add_listener
def _quit(environment, **_) -> None:
    recorder: RunRecorder | None = _state["recorder"]
    if recorder is not None:  # quit without a clean stop: keep what we have
        recorder.finish("partial", (*_state["warnings"], "load test ended without stopping"))
        _state["recorder"] = None
