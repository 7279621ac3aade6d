"""Admin endpoints: ``/-/health``, ``/-/triggers`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cascade.broker.dispatch.dispatcher import TriggerDispatcher
from cascade.broker.telemetry.metrics import BrokerMetrics

__all__ = ["Admin", "TriggerView"]


@dataclass(frozen=True)
class TriggerView:
    """A running Trigger as the admin endpoints show it."""

    namespace: str
    name: str
    description: Mapping[str, Any]  # static: broker, filter, subscriber, delivery, ordered
    dispatcher: TriggerDispatcher


class Admin:
    def __init__(
        self,
        triggers: Sequence[TriggerView],
        metrics: BrokerMetrics,
        executor: Executor,
        *,
        draining: Callable[[], bool],
    ) -> None:
        self._triggers = list(triggers)
        self._metrics = metrics
        self._executor = executor
        self._draining = draining

    def routes(self) -> dict[str, Callable[[web.BaseRequest], Any]]:
        return {"/-/health": self.health, "/-/triggers": self.triggers, "/metrics": self.metrics}

    async def health(self, request: web.BaseRequest) -> web.Response:
        if self._draining():
            return _json({"status": "draining"}, status=503)
        return _json({"status": "ready"})

    async def triggers(self, request: web.BaseRequest) -> web.Response:
        views = []
        # Together: the Triggers of a Broker then share one end-offset question.
        all_states = await asyncio.gather(
            *(trigger.dispatcher.partition_states() for trigger in self._triggers)
        )
        for trigger, states in zip(self._triggers, all_states, strict=True):
            views.append(
                {
                    **trigger.description,
                    "partitions": [
                        {
                            "partition": state.partition,
                            "end_offset": state.end_offset,
                            "committed": state.committed,
                            "lag": state.lag,
                        }
                        for state in states
                    ],
                    "lag": sum(state.lag for state in states),
                }
            )
        return _json(views)

    async def metrics(self, request: web.BaseRequest) -> web.Response:
        all_states = await asyncio.gather(
            *(trigger.dispatcher.partition_states() for trigger in self._triggers)
        )
        for trigger, states in zip(self._triggers, all_states, strict=True):
            self._metrics.set_lag(trigger.namespace, trigger.name, sum(s.lag for s in states))
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self._executor, generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(value, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )
