"""The console's server: bound when built, served from a thread of its own once started.

``cascade run`` builds it before it starts its children (so the URL is known and a taken port
stops the run early) and starts it once they are forked, like its span receiver: no thread may
run while a process forks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from cascade.console.app import ConsoleState, make_app
from cascade.console.dead_letters import DeadLetters
from cascade.console.security import Guard, new_token
from cascade.console.topology import graph_of
from cascade.dead_letters.client import DEAD_LETTER_SERVICE
from cascade.runner.plan import RunPlan
from cascade.traces.store import STORE_FILE

__all__ = ["ConsoleServer", "console_for"]

_log = logging.getLogger("cascade.console")
_SHUTDOWN_SECONDS: Final = 2.0


class ConsoleServer:
    def __init__(
        self,
        *,
        graph: Mapping[str, Any],
        broker_url: str,
        span_store: Path,
        dead_letter_url: str | None,
        ingress: str | None,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        self.host = host
        self.token = token or new_token()
        dead_letters = (
            DeadLetters(
                dead_letter_url,
                ingress,
                data_dir,
                self.token,
                functions={
                    str(node["label"]): str(node["url"])
                    for node in graph.get("nodes", ())
                    if node.get("kind") == "function"
                },
            )
            if dead_letter_url is not None and ingress is not None
            else None
        )
        self._state = ConsoleState(
            guard=Guard(self.token, self.port, hosts=[host]),
            graph=graph,
            broker_url=broker_url,
            span_store=span_store,
            dead_letters=dead_letters,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:
            _log.exception("the console stopped")
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(
            make_app(self._state), access_log=None, shutdown_timeout=_SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            await web.SockSite(runner, self._socket).start()
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving (open live streams are closed) and release the port."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and self._thread is not None:
            loop.call_soon_threadsafe(stopped.set)
            self._thread.join(timeout)
        self._socket.close()


def console_for(plan: RunPlan, port: int) -> ConsoleServer:
    """The console of a planned ``cascade run`` (binds now; OSError when the port is taken)."""
    functions = {fn.name: fn.url for fn in plan.functions}
    ingress = list(plan.ingress.values())
    return ConsoleServer(
        graph=graph_of(plan),
        broker_url=plan.broker_url,
        span_store=plan.data_dir / STORE_FILE,
        dead_letter_url=functions.get(DEAD_LETTER_SERVICE),
        ingress=ingress[0] if len(ingress) == 1 else None,
        data_dir=plan.data_dir,
        host=plan.host,
        port=port,
    )
