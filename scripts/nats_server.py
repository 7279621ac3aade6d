"""A throwaway NATS server with JetStream (``nats-server -js``) for tests that must stop,
kill or restart it, so they never touch the shared server on 127.0.0.1:4222.

From Python::

    from scripts.nats_server import NatsServer, nats_url_for_tests

    with NatsServer(store_dir) as server:  # listens on 127.0.0.1:<free port>
        server.url                         # "nats://127.0.0.1:<port>"
        server.kill()                      # kill -9; server.start() again on the same port+store

``nats_url_for_tests()`` is the server the log contract suite uses: ``CASCADE_TEST_NATS_URL``,
else the one on 127.0.0.1:4222 when it answers, else None (the caller starts its own).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from scripts.kafka_server import free_port

T = TypeVar("T")
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
SHARED_URL = "nats://127.0.0.1:4222"


def nats_server_binary() -> str:
    """``nats-server`` on PATH or where Debian's package puts it."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(
            "nats-server is not installed: apt-get install nats-server (Debian) provides it"
        )
    return found


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")  # a NATS server greets first
    except OSError:
        return False


def nats_url_for_tests() -> str | None:
    configured = os.environ.get("CASCADE_TEST_NATS_URL")
    if configured:
        return configured
    return SHARED_URL if answers("127.0.0.1", 4222) else None


class NatsServer:
    """One ``nats-server -js`` on 127.0.0.1, its JetStream files in ``store_dir`` (a temporary
    folder when None). ``start()`` after ``stop()``/``kill()`` reuses the port and the files."""

    def __init__(self, store_dir: Path | None = None, *, jetstream: bool = True) -> None:
        self.jetstream = jetstream
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="nats-js-"))
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    nats_server_binary(),
                    *(["-js"] if self.jetstream else []),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-sd",
                    str(self.store_dir / "jetstream"),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if answers("127.0.0.1", self.port):
                return self
            time.sleep(0.05)
        output = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"nats-server did not start on port {self.port}; its output:\n{output}")

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=_STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)


def delete_stream(url: str, name: str) -> None:
    """Remove a stream a test or benchmark created (and its consumers); gone already is fine."""
    import nats
    import nats.js.errors

    async def delete() -> None:
        client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            await client.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await client.close()

    run_coroutine(delete())


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: a caller's thread may already run a loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
