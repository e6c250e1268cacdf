"""Wiring into Locust's events: arguments, per-process set-up, records, the run folder.

Importing this module installs the listeners (the Locust file does). It adds events
of its own: `events.sonic_event`, fired once per reconstructed event with its timings,
`events.sonic_step`, fired on the leading process when the target user count changes,
and `events.sonic_users`, fired there when the count of users running changes;
other listeners may subscribe to them like to any Locust event. Everything sonic-bench
keeps per process lives in one `LoadgenState` on the Environment.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack

import gevent
import grpc.experimental.gevent as grpc_gevent
from gevent.event import AsyncResult
from locust import events
from locust.event import EventHook
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen import webui
from sonic_bench.loadgen.context import LoadgenContext, build_context
from sonic_bench.loadgen.options import LoadgenOptions, add_arguments, from_parsed
from sonic_bench.loadgen.recorder import (
    FLUSH_INTERVAL_S,
    LAST_RECORDS,
    MESSAGE,
    STEP_GRACE_S,
    RecordBuffer,
    RunRecorder,
)
from sonic_bench.loadgen.state import ATTRIBUTE, LoadgenState, state_of
from sonic_bench.loadgen.steps import watch_steps
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics
from sonic_bench.results.manifest import new_manifest, target_parameters, workload_info
from sonic_bench.results.schema import LoadInfo, Manifest, served_model
from sonic_bench.results.store import ResultsUnwritable, RunWriter
from sonic_bench.triton.client import check_server
from sonic_bench.triton.stats import stats_for

logger = logging.getLogger("sonic-bench")

# tritonclient imports gRPC; without this its threads and gevent's loop deadlock in
# Locust worker processes (and the gRPC protocol would block every user).
grpc_gevent.init_gevent()

for _name in ("sonic_event", "sonic_step", "sonic_users"):
    if not hasattr(events, _name):
        setattr(events, _name, EventHook())


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    add_arguments(parser)
    # The web UI starts load at any target its visitor names: on loopback unless asked
    # (--web-host '*' or an address, with --web-login where others can reach it).
    parser.set_defaults(web_host="127.0.0.1")


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
        options = from_parsed(environment.parsed_options, environment.host)
    except SonicBenchError as e:
        # Before anything runs: one line and exit 2, as the sweep's command line does.
        logger.error("sonic-bench: %s", e)
        raise SystemExit(2) from None
    if environment.web_ui is not None:
        webui.install(environment)
    state = LoadgenState(options)
    setattr(environment, ATTRIBUTE, state)
    _build(environment, state)
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        state.buffer = RecordBuffer()
        environment.events.request.add_listener(state.buffer.on_request)
        environment.events.sonic_event.add_listener(state.buffer.on_event)
        gevent.spawn(_flush_forever, environment, state)
    if isinstance(runner, WorkerRunner):
        runner.register_message(
            LAST_RECORDS, lambda *_, **__: _flush(environment, state, last=True)
        )
    else:
        runner.register_message(MESSAGE, _on_records)
    if isinstance(runner, MasterRunner):  # the event does not say which environment
        environment.events.worker_connect.add_listener(
            lambda client_id, **_: _worker_joined(environment, client_id)
        )


def _build(environment, state: LoadgenState) -> None:
    """The model's tensors are read from the server (in a greenlet: gevent's sockets let
    the others run), then the workload is built: simulating it takes seconds of CPU, in
    a thread, so that this process's greenlets (a worker's heartbeats to its master) keep
    running meanwhile. Users and listeners wait for the result through state.context()."""
    pending = state.pending  # a rebuild gets a new one: each build answers its own
    options = state.options

    def build() -> None:
        try:
            info = check_server(options.endpoint(), options.model)
        except SonicBenchError as e:
            pending.set_exception(e)
            if isinstance(environment.runner, WorkerRunner) or environment.web_ui is not None:
                # A worker's own command line need not name the server, nor a web UI's:
                # the master's options (or the form's) come at each start, built again then.
                logger.info("sonic-bench: %s (the options at the start will say)", e)
            else:
                _fail(environment, str(e))
            return
        built = gevent.get_hub().threadpool.spawn(build_context, options, info)
        built.rawlink(lambda done: _context_ready(environment, pending, done))

    gevent.spawn(build)


def _adopt_options(environment, state: LoadgenState) -> None:
    """Run what was asked for at the start of the test, whatever this process's own
    command line said: a worker gets the master's options (Locust forwards them with each
    spawn), and the web UI's fields and Host reach the runner's parsed options."""
    try:
        asked = from_parsed(environment.parsed_options, environment.host)
    except SonicBenchError as e:
        _fail(environment, str(e))
        return
    failed = state.pending.ready() and not state.pending.successful()
    if asked != state.options or failed:
        state.options = asked
        state.pending = AsyncResult()
        _build(environment, state)


def _context_ready(environment, pending: AsyncResult, done) -> None:
    try:
        pending.set(done.get())
    except SonicBenchError as e:
        pending.set_exception(e)
        _fail(environment, str(e))


def _flush(environment, state: LoadgenState, last: bool = False) -> None:
    """Send the records kept since the last flush; `last`: a worker's final ones, which the
    master asked for as the run ends, sent even if there are none (it waits for them)."""
    if state.buffer is None:
        return
    payload = state.buffer.take()
    if payload["requests"] or payload["events"] or last:
        # Who sent it and with which settings: the master records and compares them.
        payload["worker"] = getattr(environment.runner, "client_id", "local")
        payload["settings"] = state.options.settings()
        payload["last"] = last
        environment.runner.send_message(MESSAGE, payload)


def _flush_forever(environment, state: LoadgenState) -> None:
    while True:
        gevent.sleep(FLUSH_INTERVAL_S)
        _flush(environment, state)
        _note_cpu(environment, state)


def _note_cpu(environment, state: LoadgenState) -> None:
    runner = environment.runner
    if state.recorder is None or runner is None:
        return
    usages = [getattr(runner, "current_cpu_usage", 0.0)]
    usages += [getattr(c, "cpu_usage", 0.0) for c in getattr(runner, "clients", {}).values()]
    state.recorder.note_cpu(max(usages))


def _on_records(environment, msg, **_) -> None:
    state = state_of(environment)
    if msg.data.get("last"):
        state.sent_last.add(msg.data.get("worker"))
    recorder = state.recorder
    if recorder is None:
        return
    try:
        recorder.receive(msg.data)
    except ResultsUnwritable as e:  # a full or vanished results folder: one line, stop
        _abandon(environment, state, str(e))
        return
    if isinstance(environment.runner, MasterRunner):
        _note_cpu(environment, state)
        _note_missing_workers(environment, state)
    if recorder.failures.give_up and state.stop_reason is None:
        failures = recorder.failures
        state.stop_reason = (
            f"stopped: the last {failures.failed_in_a_row} events all failed "
            f"({failures.first_error}); is the server still up?"
        )
        state.warn_once(state.stop_reason)
        logger.error("sonic-bench: %s", state.stop_reason)
        environment.process_exit_code = 1  # the shape ends the test at its next tick


def _abandon(environment, state: LoadgenState, reason: str) -> None:
    """The run cannot be written on: say so once, record what status the disk lets us,
    and end the test."""
    recorder = _detach(environment, state)
    if recorder is None:
        return
    logger.error("sonic-bench: %s", reason)
    recorder.abandon(reason)
    state.stop_reason = reason
    environment.process_exit_code = 2
    if environment.runner is not None:
        gevent.spawn_later(0.1, environment.runner.quit)


def _manifest(context: LoadgenContext, server_info: dict) -> Manifest:
    options = context.options
    plans = context.plans
    requests = sum(len(p.batches) for p in plans)
    samples = sum(p.patches for p in plans)
    return new_manifest(
        "loadgen",
        f"{options.label}-{context.requests.tag}",
        server=served_model(options.url, options.protocol, options.model, server_info),
        workload=workload_info(
            context.requests,
            event_scale=options.event_scale,
            avg_batch_size=samples / requests,
            patches_per_event=samples / len(plans) if context.requests.protodune else 0,
        ),
        load=LoadInfo(
            mode="closed",
            levels=tuple(float(u) for u in options.staircase),
            step_seconds=options.step_seconds,
            shared_memory=context.endpoint.shared_memory,
            parameters={
                "other_s_per_event": sum(p.other_s for p in plans) / len(plans),
                "preprocess_s_per_event": sum(p.preprocess_s for p in plans) / len(plans),
                "requests_per_event": requests / len(plans),
                "step_seconds_per_user": options.step_seconds_per_user,
                "burn_cpu": options.burn_cpu,
                "other_jitter": options.other_jitter,
                **target_parameters(context.endpoint),
                **(
                    {"gateway": {"replicas": list(options.target.replica_urls)}}
                    if options.target.replica_urls
                    else {}
                ),
            },
        ),
    )


def _run_metrics(options: LoadgenOptions) -> RunMetrics | None:
    if options.metrics == "off":
        return None
    settings = MetricsOptions(
        mode=options.metrics,
        prometheus_url=options.prometheus_url or None,
        prometheus_port=options.prometheus_port,
    )
    return RunMetrics(settings, options.triton_metrics_urls)


def _note_missing_workers(environment, state: LoadgenState) -> None:
    """A worker that stopped sending heartbeats (killed, its machine gone): its users' load
    is missing from then on, which the run must say."""
    for client in getattr(environment.runner, "clients", {}).values():
        if client.state == STATE_MISSING:
            state.lost_worker = True
            state.warn_once(
                f"worker {client.id} stopped reporting (killed or unreachable): the load "
                "after that is short of its users"
            )


def _worker_joined(environment, client_id: str) -> None:
    recorder = state_of(environment).recorder
    if recorder is not None:
        step = recorder.steps.current
        where = f"during step {step.index} ({step.users} users)" if step else "late"
        state_of(environment).warn_once(
            f"worker {client_id} joined {where}: users were rebalanced across workers"
        )


@events.test_start.add_listener
def _start_run(environment, **_) -> None:
    if not hasattr(environment, ATTRIBUTE):
        return
    state = state_of(environment)
    _adopt_options(environment, state)
    if isinstance(environment.runner, WorkerRunner):
        return
    with ExitStack() as early:
        # Prometheus starts before the wait for the workload: it scrapes only ~5.5 s after
        # it starts, and the workload's build takes that time anyway.
        metrics = _run_metrics(state.options)
        if metrics is not None:
            early.enter_context(metrics)
        try:
            context = state.context()
            info = check_server(context.endpoint, context.options.model)
            writer = RunWriter(context.options.results, _manifest(context, info))
        except SonicBenchError as e:
            _fail(environment, str(e))
            return
        if metrics is not None:
            metrics.ready_to_measure()  # what is left of its first scrape's wait
        recorder = RunRecorder(
            writer,
            metrics,
            context.options.max_failed_events,
            context.options.settings(),
            stats_for(context.endpoint, context.options.replica_endpoints(), context.options.model),
        )
        early.pop_all()  # the recorder stops the metrics recording when the run ends
    for message in recorder.metrics.warnings if recorder.metrics else ():
        logger.warning("sonic-bench: %s", message)
    state.recorder, state.warnings = recorder, []
    environment.events.sonic_step.add_listener(recorder.on_step)
    environment.events.sonic_users.add_listener(recorder.steps.on_running)
    # The staircase's clock starts now that users can run: the workload was being built
    # until here, and the first step must not lose that time.
    if environment.shape_class is not None:
        environment.shape_class.reset_time()
    state.step_watcher = watch_steps(environment)
    logger.info("sonic-bench: recording to %s", writer.folder)


@events.cpu_warning.add_listener
def _cpu_warning(environment, cpu_usage, **_) -> None:
    if hasattr(environment, ATTRIBUTE):
        state_of(environment).warn_once(
            f"Locust's CPU warning fired ({cpu_usage:.0f}%): the load generator may limit"
        )


def _detach(environment, state: LoadgenState) -> RunRecorder | None:
    """The run's recorder, no longer fed by the step watcher or the events."""
    recorder, state.recorder = state.recorder, None
    if recorder is None:
        return None
    if state.step_watcher is not None:
        state.step_watcher.kill(block=False)
        state.step_watcher = None
    environment.events.sonic_step.remove_listener(recorder.on_step)
    environment.events.sonic_users.remove_listener(recorder.steps.on_running)
    return recorder


def _finish(environment, status, extra: tuple[str, ...] = ()) -> None:
    state = state_of(environment)
    recorder = _detach(environment, state)
    if recorder is None:
        return
    try:
        folder = recorder.finish(status, (*state.warnings, *extra))
    except ResultsUnwritable as e:
        logger.error("sonic-bench: %s", e)
        recorder.abandon(str(e))
        environment.process_exit_code = 2
        return
    logger.info("sonic-bench: run written to %s", folder)


@events.test_stop.add_listener
def _stop_run(environment, **_) -> None:
    if not hasattr(environment, ATTRIBUTE):
        return
    state = state_of(environment)
    _flush(environment, state)  # a worker's records go to the master now
    if state.recorder is None or isinstance(environment.runner, WorkerRunner):
        return
    if isinstance(environment.runner, MasterRunner):
        _await_last_records(environment.runner, state)
        _note_missing_workers(environment, state)
    staircase = state.options.staircase_schedule()
    shape = environment.shape_class
    done = staircase is None or (
        shape is not None and staircase.target(shape.get_run_time()) is None
    )
    _finish(environment, "complete" if done and not state.lost_worker else "partial")


def _await_last_records(runner: MasterRunner, state: LoadgenState) -> None:
    """Asks every worker for its last records and waits until each one still reporting
    has sent them, at most STEP_GRACE_S (a worker that is gone but not yet missed, or one
    that runs another locustfile). Its users have stopped: nothing comes after them."""
    state.sent_last.clear()  # a web UI runs one test after another in one process
    runner.send_message(LAST_RECORDS)
    deadline = time.monotonic() + STEP_GRACE_S
    while time.monotonic() < deadline:
        reporting = {c.id for c in runner.clients.values() if c.state != STATE_MISSING}
        if reporting <= state.sent_last:
            return
        gevent.sleep(0.05)


@events.quitting.add_listener
def _quit(environment, **_) -> None:
    if hasattr(environment, ATTRIBUTE):  # quit without a clean stop: keep what we have
        _finish(environment, "partial", ("load test ended without stopping",))
