"""The life of one ``cascade run``: start, wait until ready, watch, stop in order.

1. Lock the data directory, start the broker (``cascade broker``; its log is sqlite in the
   data directory unless ``--log`` says otherwise) and one ``cascade serve`` per function,
   each in its own process group.
2. Wait (bounded) for the broker's ``/-/health`` and every function's ``/health/readiness``,
   saying what is ready; a child that exits meanwhile stops the start with its output's tail.
3. Write ``run.json``, print the endpoint table, then one line per delivery from the broker's
   activity feed until SIGINT or SIGTERM.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final
from urllib.parse import urlsplit

import click

from cascade.broker.log.options import broker_log_args
from cascade.console.server import ConsoleServer, console_for
from cascade.runner.display import format_activity, render_endpoints, shown_path, use_color
from cascade.runner.feed import ActivityClient, FeedError
from cascade.runner.plan import RunPlan
from cascade.runner.processes import Child, cascade_command, spawn, stop_all
from cascade.runner.state import (
    DataDirLocked,
    RunState,
    lock_data_dir,
    remove_state,
    write_state,
)
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


class Runner:
    def __init__(self, plan: RunPlan, options: RunOptions, *, out: IO[str] | None = None) -> None:
        self.plan = plan
        self.options = options
        self._out = out or sys.stdout
        self._color = use_color(self._out)
        self._print_lock = threading.Lock()
        self._stop = threading.Event()
        self._signals = 0
        self._broker: Child | None = None
        self._functions: list[Child] = []
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
        return [c for c in (self._broker, *self._functions) if c is not None]

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
                self.options.log_kind, self.options.bootstrap_servers, self.options.nats_url
            ),
            *(["--oidc"] if plan.oidc else []),
        ]
        self._broker = spawn(
            "broker", broker_argv, env=base_env, cwd=self.options.cwd, log=logs / "broker.log"
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
            self._functions.append(
                spawn(fn.name, argv, env=env, cwd=self.options.cwd, log=logs / f"{fn.name}.log")
            )
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
        plan = self.plan
        probes: dict[str, tuple[Child, str]] = {}
        assert self._broker is not None
        probes["broker"] = (self._broker, f"{plan.broker_url}/-/health")
        for fn, child in zip(plan.functions, self._functions, strict=True):
            probes[fn.name] = (child, f"{fn.url}/health/readiness")
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

    def _watch(self) -> int:
        while not self._stop.wait(0.5):
            for child in self._children():
                code = child.process.poll()
                if code is not None:
                    self._child_failed(child, f"stopped unexpectedly (exit code {code})")
                    self.say("stopping everything")
                    return EXIT_FAILED
        return EXIT_OK

    def _shutdown(self) -> None:
        if self._console is not None:
            self._console.close()  # a view only: first, so nothing is replayed while stopping
        broker, functions = self._broker, self._functions
        if broker is None and not functions:
            if self._receiver is not None:
                self._receiver.close()
            if self._spans is not None:
                self._spans.close()
            return
        if any(child.running() for child in self._children()):
            self._progress("stopping: the broker drains first, then the functions")
        started = time.monotonic()
        if broker is not None:
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
            except (OSError, FeedError, http.client.HTTPException):
                pass  # the broker is stopping or restarting: try again
            if self._stop.wait(0.5):
                return

    def _state(self) -> RunState:
        assert self._broker is not None
        return RunState(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data_dir=str(self.plan.data_dir),
            broker={
                "url": self.plan.broker_url,
                "pid": self._broker.pid,
                "log": str(self._broker.log),
                "ingress": dict(self.plan.ingress),
            },
            functions={
                fn.name: {"url": fn.url, "pid": child.pid, "log": str(child.log)}
                for fn, child in zip(self.plan.functions, self._functions, strict=True)
            },
            traces={
                "endpoint": self._receiver.endpoint if self._receiver else None,
                "store": str(self.plan.data_dir / STORE_FILE),
                "forward": self.options.otlp_endpoint,
            },
            console={"url": self._console.url} if self._console is not None else {},
        )


def _answers_200(url: str) -> bool:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=_PROBE_TIMEOUT
    )
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
