"""Retry loop and status classification of one delivery (§3.3-§3.5)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cascade.broker.dispatch.delivery import (
    HttpResponse,
    RetryPolicy,
    TransportError,
    Verdict,
    classify,
    deliver,
)
from cascade.broker.topology.delivery_spec import DeliverySpec


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_below_300_succeeds(status: int) -> None:
    assert classify(status) is Verdict.SUCCESS


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert classify(status) is Verdict.RETRYABLE


@pytest.mark.parametrize("status", [300, 301, 303, 400, 401, 403, 405, 410, 413, 415, 422, 499])
def test_other_failures_are_permanent(status: int) -> None:
    assert classify(status) is Verdict.PERMANENT


class Script:
    """A fake subscriber: each attempt pops the next answer (an int status or an exception)."""

    def __init__(self, answers: Sequence[int | Exception]) -> None:
        self.answers = list(answers)
        self.attempts: list[tuple[int, float]] = []

    async def __call__(self, attempt: int, timeout: float) -> HttpResponse:
        self.attempts.append((attempt, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return HttpResponse(answer, {}, b"")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def test_success_on_first_attempt_does_not_sleep() -> None:
    script, sleeps = Script([200]), Sleeps()
    result = asyncio.run(deliver(script, RetryPolicy(3, lambda n: 1.0), sleep=sleeps))
    assert result.succeeded
    assert result.attempts == 1
    assert sleeps.delays == []


def test_retries_until_success_with_the_kafka_exponential_backoff() -> None:
    spec = DeliverySpec(retry=5, backoff_policy="exponential", backoff_delay=0.1)
    script, sleeps = Script([503, 500, TransportError("reset"), 200]), Sleeps()
    retried: list[int] = []
    result = asyncio.run(
        deliver(
            script,
            RetryPolicy(spec.retry, spec.backoff, 2.5),
            sleep=sleeps,
            on_retry=retried.append,
        )
    )
    assert result.succeeded
    assert result.attempts == 4
    assert sleeps.delays == pytest.approx([0.2, 0.4, 0.8])  # d * 2^n, n = 1..
    assert retried == [2, 3, 4]
    assert [timeout for _, timeout in script.attempts] == [2.5] * 4


def test_linear_backoff() -> None:
    spec = DeliverySpec(retry=3, backoff_policy="linear", backoff_delay=0.5)
    script, sleeps = Script([500, 500, 500, 500]), Sleeps()
    result = asyncio.run(deliver(script, RetryPolicy(spec.retry, spec.backoff), sleep=sleeps))
    assert not result.succeeded
    assert result.attempts == 4  # 1 + retry
    assert sleeps.delays == pytest.approx([0.5, 1.0, 1.5])
    assert result.response is not None
    assert result.response.status == 500


@pytest.mark.parametrize("status", [400, 401, 422, 301])
def test_permanent_failure_stops_at_once(status: int) -> None:
    script = Script([status, 200])
    result = asyncio.run(deliver(script, RetryPolicy(5, lambda n: 0.0), sleep=Sleeps()))
    assert not result.succeeded
    assert result.attempts == 1
    assert result.response is not None
    assert result.response.status == status


def test_transport_error_last_leaves_no_response() -> None:
    script = Script([500, TransportError("timed out after 1s")])
    result = asyncio.run(deliver(script, RetryPolicy(1, lambda n: 0.0), sleep=Sleeps()))
    assert not result.succeeded
    assert result.response is None
    assert result.error == "timed out after 1s"
    assert "timed out" in result.describe()


def test_no_retry_means_one_attempt() -> None:
    script = Script([503])
    result = asyncio.run(deliver(script, RetryPolicy(0, lambda n: 9.0), sleep=Sleeps()))
    assert result.attempts == 1
    assert not result.succeeded


@pytest.mark.parametrize(("retries", "timeout"), [(-1, 1.0), (0, 0.0), (0, -1.0)])
def test_policy_validation(retries: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(retries, lambda n: 0.0, timeout)
