"""Peer (d): the function as functions-framework's templates write it (Google's, Knative's).

A ``@functions_framework.cloud_event`` handler doing the Cascade bench function's work for
``com.example.bench.ping``: the event's data validated into a pydantic model of the same
fields, nothing returned (the framework answers 200 "OK"). Loaded by ``bench/apps/ff_app.py``
in ``bench/.venvs/ff`` only: functions-framework pins cloudevents 1.x, which clashes with ours.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent
from pydantic import BaseModel


class OrderPinged(BaseModel):
    order_id: str
    customer: str
    sku: str
    quantity: int
    note: str = ""


@functions_framework.cloud_event
def acknowledge(event: CloudEvent) -> None:
    OrderPinged.model_validate(event.data)
