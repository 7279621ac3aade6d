"""The life of one ``cascade run``: start, wait until ready, watch, stop in order.

1. Lock the data directory, start the broker (``cascade broker``; its log is sqlite in the
   data directory unless ``--log`` says otherwise) and one ``cascade serve`` per function,
   each in its own process group.
2. Wait (bounded) for the broker's ``/-/health`` and every function's ``/health/readiness``,
   saying what is ready; a child that exits meanwhile stops the start with its output's tail.
3. Write ``run.json``, print the endpoint table, then one line per delivery from the broker's
   activity feed until SIGINT or SIGTERM. Meanwhile a process that exits is started again
   after a back-off delay (``supervisor.py``, like a kubelet), each restart said and counted.
4. Stop: the broker first (it refuses new events and lets in-flight deliveries finish, then
   commits), then the functions (gunicorn drains), then remove ``run.json``. A second Ctrl-C
   kills everything at once; uncommitted work is delivered again on the next run.

Nothing is kept in this process: the broker's log and offsets and the functions' stores live
in the data directory, so running again resumes where the last run stopped.
"""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import click

from cascade.broker.log.options import broker_log_args
from cascade.broker.log.retention import RetentionPolicy
from cascade.console.server import ConsoleServer, console_for
from cascade.http_client import Unreachable, request
from cascade.runner.display import format_activity, render_endpoints, shown_path, use_color
from cascade.runner.feed import ActivityClient, FeedError
from cascade.runner.plan import RunPlan
from cascade.runner.processes import Child, cascade_command, stop_all
from cascade.runner.state import (
    DataDirLocked,
    RunState,
    lock_data_dir,
    remove_state,
    write_state,
)
from cascade.runner.supervisor import RestartPolicy, Supervised, describe_exit
from cascade.traces.receiver import TraceReceiver
from cascade.traces.store import (
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_SPANS,
    STORE_FILE,
    SpanStore,
)

__all__ = ["RunOptions", "Runner"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
# Inherited values that would be wrong for every child but one (set per child instead).
_NOT_INHERITED: Final = ("K_SINK", "PORT", "CASCADE_HOST", "PROMETHEUS_MULTIPROC_DIR")
_PROBE_TIMEOUT: Final = 2.0


@dataclass(frozen=True)
class RunOptions:
    startup_timeout: float = 60.0
    drain_seconds: float = 5.0
    function_grace_seconds: float = 35.0  # gunicorn's graceful timeout (30 s) and a margin
    otlp_endpoint: str | None = None  # a full OTLP/HTTP traces URL spans are forwarded to
    trace_max_spans: int = DEFAULT_MAX_SPANS
    trace_max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    quiet: bool = False
    cwd: Path = Path(".")
    log_kind: str = "sqlite"
    bootstrap_servers: str | None = None
    nats_url: str | None = None
    console_port: int | None = 0  # None: no console; 0: a free port
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    restart: RestartPolicy = field(default_factory=RestartPolicy)


class Runner:
    def __init__(self, plan: RunPlan, options: RunOptions, *, out: IO[str] | None = None) -> None:
        self.plan = plan
        self.options = options
        self._out = out or sys.stdout
        self._color = use_color(self._out)
        self._print_lock = threading.Lock()
        self._stop = threading.Event()
        self._signals = 0
        self._processes: list[Supervised] = []  # the broker first, then the functions
        self._follower: threading.Thread | None = None
        self._spans: SpanStore | None = None
        self._receiver: TraceReceiver | None = None
        self._console: ConsoleServer | None = None

    # --- output -----------------------------------------------------------------------

    def say(self, text: str, **style: Any) -> None:
        if self._color and style:
            text = click.style(text, **style)
        with self._print_lock:
            click.echo(text, file=self._out, color=self._color)

    def _progress(self, text: str) -> None:
        if not self.options.quiet:
            self.say(text)

    # --- lifecycle --------------------------------------------------------------------

    def run(self) -> int:
        data_dir = self.plan.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.say(f"error: cannot create the data directory {data_dir}: {exc}", fg="red")
            return EXIT_FAILED
        try:
            lock = lock_data_dir(data_dir)
        except DataDirLocked as exc:
            self.say(f"error: {exc}", fg="red")
            return EXIT_FAILED
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            return self._run()
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            lock.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # Impatient second Ctrl-C: kill everything now; the next run redoes what was cut.
            for child in self._children():
                child.kill_group(wait=False)  # no waiting inside a signal handler
        self._stop.set()

    def _children(self) -> list[Child]:
        return [p.child for p in self._processes if p.child is not None]

    def _run(self) -> int:
        plan = self.plan
        logs = plan.data_dir / "logs"
        where = self.options.bootstrap_servers or self.options.nats_url
        log = f"{self.options.log_kind} log" + (f" at {where}" if where else "")
        self._progress(
            f"starting the broker ({log}) and {len(plan.functions)} functions "
            f"(logs in {shown_path(logs)}/)"
        )
        base_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        # The local walkthrough uses the operator routes (PUT /faults, the DLQ's write API).
        base_env.setdefault("CASCADE_ADMIN_ROUTES", "true")
        # All functions share this machine: one gunicorn worker each gave the chain more orders/s
        # for less CPU than two (docs/benchmarks.md, "One worker per function").
        base_env.setdefault("CASCADE_WORKERS", "1")
        # Every process exports its spans to our receiver (bound now, served once the children
        # are started: no thread may run while they are forked), which keeps them for
        # `cascade trace` and forwards them to --otlp-endpoint when given.
        store = plan.data_dir / STORE_FILE
        try:
            self._spans = SpanStore(
                store,
                max_spans=self.options.trace_max_spans,
                max_age_seconds=self.options.trace_max_age_seconds,
            )
        except (OSError, sqlite3.Error) as exc:
            self.say(
                f"error: cannot open the span store {store}: {exc} (remove it to start afresh)",
                fg="red",
            )
            return EXIT_FAILED
        self._receiver = TraceReceiver(self._spans, forward_to=self.options.otlp_endpoint)
        base_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self._receiver.endpoint
        base_env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        base_env.setdefault("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        # Batches leave every half second instead of every 5: a trace is complete by the time
        # someone types `cascade trace`.
        base_env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")
        if self.options.console_port is not None:
            try:
                self._console = console_for(plan, self.options.console_port)
            except OSError as exc:
                self.say(
                    f"error: the console cannot listen on {plan.host}:"
                    f"{self.options.console_port} ({exc.strerror}): choose another "
                    "--console-port, or --no-console",
                    fg="red",
                )
                return EXIT_FAILED
        command = cascade_command()
        broker_argv = [
            *command,
            "broker",
            *(arg for path in plan.manifests for arg in ("-f", str(path))),
            *(arg for value in plan.service_url_options() for arg in ("--service-url", value)),
            "--host",
            plan.host,
            "--port",
            str(plan.broker_port),
            "--data-dir",
            str(plan.data_dir),
            "--drain-seconds",
            f"{self.options.drain_seconds:g}",
            *broker_log_args(
                self.options.log_kind,
                self.options.bootstrap_servers,
                self.options.nats_url,
                self.options.retention,
            ),
            *(["--oidc"] if plan.oidc else []),
        ]
        self._processes.append(
            Supervised(
                "broker",
                broker_argv,
                env=base_env,
                cwd=self.options.cwd,
                log=logs / "broker.log",
                health_url=f"{plan.broker_url}/-/health",
            )
        )
        for fn in plan.functions:
            argv = [
                *command,
                "serve",
                str(fn.path),
                "--host",
                plan.host,
                "--port",
                str(fn.port),
                "--data-dir",
                str(plan.data_dir),
            ]
            # CASCADE_DATA_DIR too, so a function can keep its own files in the run's folder.
            env = {**base_env, "CASCADE_DATA_DIR": str(plan.data_dir), **fn.env}
            self._processes.append(
                Supervised(
                    fn.name,
                    argv,
                    env=env,
                    cwd=self.options.cwd,
                    log=logs / f"{fn.name}.log",
                    health_url=f"{fn.url}/health/readiness",
                )
            )
        for process in self._processes:
            process.start()
        self._receiver.start()
        if self._console is not None:
            self._console.start()
        if not self._wait_ready():
            return EXIT_FAILED if not self._stop.is_set() else EXIT_OK
        state_path = write_state(plan.data_dir, self._state())
        self.say("")
        console = self._console.url if self._console is not None else None
        self.say(render_endpoints(plan, state_path, color=self._color, console=console))
        self.say("")
        self._follower = threading.Thread(target=self._follow, name="activity", daemon=True)
        self._follower.start()
        return self._watch()

    def _wait_ready(self) -> bool:
        """Poll every health endpoint until all answer 200; False on failure or a signal."""
        probes: dict[str, tuple[Child, str]] = {
            p.name: (p.child, p.health_url) for p in self._processes if p.child is not None
        }
        started = time.monotonic()
        deadline = started + self.options.startup_timeout
        next_report = started + 5.0
        waiting = dict(probes)
        while waiting:
            if self._stop.is_set():
                self.say("interrupted while starting")
                return False
            for name, (child, url) in list(waiting.items()):
                code = child.process.poll()
                if code is not None:
                    self._child_failed(child, f"exited with code {code} while starting")
                    return False
                if _answers_200(url):
                    del waiting[name]
                    self._process(name).ready = True
                    self._progress(f"  ready  {name:<14} {time.monotonic() - started:5.1f} s")
            now = time.monotonic()
            if waiting and now >= deadline:
                for name in waiting:
                    child = waiting[name][0]
                    self._child_failed(
                        child,
                        f"not ready after {self.options.startup_timeout:g} s "
                        f"({waiting[name][1]} did not answer 200)",
                    )
                return False
            if waiting and now >= next_report:
                self._progress(f"  waiting for {', '.join(waiting)} ...")
                next_report = now + 5.0
            if waiting:
                self._stop.wait(0.2)
        return True

    def _child_failed(self, child: Child, what: str) -> None:
        self.say(f"error: {child.name} {what}; the last lines of {child.log}:", fg="red")
        self.say("    " + child.output_tail(20).replace("\n", "\n    "))

    def _process(self, name: str) -> Supervised:
        return next(p for p in self._processes if p.name == name)

    def _watch(self) -> int:
        """Restart every process that exits, with back-off, until SIGINT or SIGTERM."""
        policy = self.options.restart
        while not self._stop.wait(0.2):
            for process in self._processes:
                if self._stop.is_set():
                    break
                child = process.child
                assert child is not None
                if process.restart_at is not None:
                    if process.due():
                        self._restart(process)
                    continue
                code = child.process.poll()
                if code is not None:
                    ran = time.monotonic() - process.started_at
                    delay = process.exited(policy)
                    self.say(
                        f"restart: {process.name} {describe_exit(code)} after {ran:.1f} s; "
                        f"starting it again in {delay:g} s (see {shown_path(process.log)})",
                        fg="yellow",
                    )
                    if code > 0:
                        self.say("    " + child.output_tail(5).replace("\n", "\n    "))
                elif not process.ready and _answers_200(process.health_url):
                    process.ready = True
                    self._progress(
                        f"  ready  {process.name:<14} again, restart #{process.restarts} "
                        f"({time.monotonic() - process.started_at:.1f} s)"
                    )
        return EXIT_OK

    def _restart(self, process: Supervised) -> None:
        child = process.restart()
        self.say(
            f"restart: {process.name} started again (pid {child.pid}), "
            f"restart #{process.restarts} of this run",
            fg="yellow",
        )
        write_state(self.plan.data_dir, self._state())  # new PIDs for the other commands

    def _shutdown(self) -> None:
        if self._console is not None:
            self._console.close()  # a view only: first, so nothing is replayed while stopping
        broker = self._processes[0].child if self._processes else None
        functions = [p.child for p in self._processes[1:] if p.child is not None]
        if broker is None:
            if self._receiver is not None:
                self._receiver.close()
            if self._spans is not None:
                self._spans.close()
            return
        if any(child.running() for child in self._children()):
            self._progress("stopping: the broker drains first, then the functions")
        started = time.monotonic()
        broker.terminate()
        if broker.wait(self.options.drain_seconds + 15.0) is None:
            self.say(f"the broker did not stop in time; killing it (pid {broker.pid})")
        broker.kill_group()
        self._progress(f"  stopped  broker         {time.monotonic() - started:5.1f} s")
        stop_all(functions, self.options.function_grace_seconds)
        if functions:
            self._progress(f"  stopped  functions      {time.monotonic() - started:5.1f} s")
        remove_state(self.plan.data_dir)
        if self._follower is not None:
            self._follower.join(5.0)
        # After the children: their last spans are flushed as they stop.
        if self._receiver is not None:
            self._receiver.close()
        if self._spans is not None:
            self._spans.close()
        for child in self._children():
            code = child.process.returncode
            if code not in (0, None) and self._signals < 2:
                self._progress(f"  {child.name} exited with code {code} (see {child.log})")
        restarted = [f"{p.name} {p.restarts}" for p in self._processes if p.restarts]
        if restarted:
            self.say(f"restarts during this run: {', '.join(restarted)}")
        self._progress(
            f"stopped; `cascade run` again resumes from {shown_path(self.plan.data_dir)}/"
        )

    # --- activity -----------------------------------------------------------------------

    def _follow(self) -> None:
        client = ActivityClient(self.plan.broker_url)
        after = 0
        while not self._stop.is_set():
            try:
                for entry in client.entries(follow=True, after=after):
                    seq = entry.get("seq")
                    if isinstance(seq, int):
                        after = max(after, seq)
                    if self.options.quiet and entry.get("outcome") == "delivered":
                        continue
                    with self._print_lock:
                        click.echo(
                            format_activity(entry, color=self._color),
                            file=self._out,
                            color=self._color,
                        )
            except (Unreachable, OSError, FeedError, http.client.HTTPException):
                pass  # the broker is stopping or restarting: try again
            if self._stop.wait(0.5):
                return

    def _state(self) -> RunState:
        broker, *functions = self._processes

        def described(process: Supervised) -> dict[str, Any]:
            assert process.child is not None
            return {
                "pid": process.child.pid,
                "log": str(process.log),
                "restarts": process.restarts,
            }

        return RunState(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data_dir=str(self.plan.data_dir),
            broker={
                "url": self.plan.broker_url,
                **described(broker),
                "ingress": dict(self.plan.ingress),
            },
            functions={
                fn.name: {"url": fn.url, **described(process)}
                for fn, process in zip(self.plan.functions, functions, strict=True)
            },
            traces={
                "endpoint": self._receiver.endpoint if self._receiver else None,
                "store": str(self.plan.data_dir / STORE_FILE),
                "forward": self.options.otlp_endpoint,
            },
            console={"url": self._console.url} if self._console is not None else {},
        )


def _answers_200(url: str) -> bool:
    try:
        return request("GET", url, timeout=_PROBE_TIMEOUT).status == 200
    except (Unreachable, ValueError):
        return False
