"""The activity feed: bounded, ordered, resumable, and served as NDJSON (plain and followed)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson
import pytest
from aiohttp import web

from cascade.broker.telemetry.activity import ActivityFeed, ActivityQuery, parse_query
from cascade.broker.topology.service_urls import (
    ServiceUrlError,
    parse_service_url,
    parse_service_urls,
)


def note(feed: ActivityFeed, event_id: str, outcome: str = "delivered") -> None:
    feed.record(
        namespace="default",
        trigger="t",
        subscriber="http://127.0.0.1:1/",
        attributes={"type": "com.example.x", "id": event_id, "source": "/s", "partitionkey": "k"},
        attempt=1,
        outcome=outcome,
        status=200,
        latency=0.0015,
        elapsed=0.0015,
    )


def test_keeps_the_newest_entries_in_order() -> None:
    feed = ActivityFeed(capacity=3)
    for n in range(5):
        note(feed, str(n))
    held = feed.entries(ActivityQuery(limit=10))
    assert [entry.id for entry in held] == ["2", "3", "4"]
    assert [entry.seq for entry in held] == [3, 4, 5]
    assert [entry.id for entry in feed.entries(ActivityQuery(limit=2))] == ["3", "4"]
    assert feed.entries(ActivityQuery(limit=0)) == []


def test_after_resumes_and_a_number_from_an_earlier_process_gets_everything() -> None:
    feed = ActivityFeed(capacity=10)
    for n in range(4):
        note(feed, str(n))
    assert [e.id for e in feed.entries(ActivityQuery(after=2))] == ["2", "3"]
    assert feed.entries(ActivityQuery(after=4)) == []
    # seq 99 was seen from a broker that has since restarted (numbers start at 1 again).
    assert [e.id for e in feed.entries(ActivityQuery(after=99))] == ["0", "1", "2", "3"]


def test_an_entry_serializes_with_an_rfc3339_time_and_the_event_fields() -> None:
    feed = ActivityFeed()
    note(feed, "e1", "dead-lettered")
    document = orjson.loads(feed.entries(ActivityQuery())[0].to_json())
    assert document["time"].endswith("Z")
    assert document["time"][10] == "T"
    assert document["latency_ms"] == 1.5
    assert (document["type"], document["id"], document["partitionkey"]) == (
        "com.example.x",
        "e1",
        "k",
    )
    assert document["outcome"] == "dead-lettered"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "x"}, "limit must be an integer"),
        ({"limit": "-1"}, "limit must be 0..2000"),
        ({"after": "-3"}, "after must be >= 0"),
        ({"follow": "maybe"}, "follow must be 1 or 0"),
        ({"since": "1"}, "unknown parameter 'since'"),
    ],
)
def test_bad_queries_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_query(params)


def test_good_queries() -> None:
    assert parse_query({}) == ActivityQuery(limit=100, after=None, follow=False)
    assert parse_query({"follow": "1", "after": "7", "limit": "5"}) == ActivityQuery(5, 7, True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve_and_follow() -> tuple[list[dict[str, object]], int, list[dict[str, object]]]:
    feed = ActivityFeed()
    note(feed, "before")
    runner = web.ServerRunner(web.Server(feed.handle))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    followed: list[dict[str, object]] = []
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/-/activity?limit=5") as plain:
                listed = [orjson.loads(line) for line in (await plain.read()).splitlines()]
            async with session.get(f"http://127.0.0.1:{port}/-/activity?limit=x") as bad:
                bad_status = bad.status

            async def follow() -> None:
                url = f"http://127.0.0.1:{port}/-/activity?follow=1&limit=1"
                async with session.get(url) as stream:
                    async for line in stream.content:
                        if line.strip():
                            followed.append(orjson.loads(line))

            reader = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            note(feed, "live-1")
            note(feed, "live-2", "retried")
            await asyncio.sleep(0.2)
            feed.close()  # what the broker does when it stops: the stream ends
            await asyncio.wait_for(reader, 10)
    finally:
        await runner.cleanup()
    return listed, bad_status, followed


def test_http_lists_and_follows_until_the_feed_closes() -> None:
    listed, bad_status, followed = asyncio.run(_serve_and_follow())
    assert [entry["id"] for entry in listed] == ["before"]
    assert bad_status == 400
    assert [entry["id"] for entry in followed] == ["before", "live-1", "live-2"]
    assert [entry["outcome"] for entry in followed] == ["delivered", "delivered", "retried"]


def test_service_url_values() -> None:
    assert parse_service_url("order=http://127.0.0.1:8081") == (
        ("default", "order"),
        "http://127.0.0.1:8081",
    )
    assert parse_service_url("shop/dead-letter=https://x.example/") == (
        ("shop", "dead-letter"),
        "https://x.example/",
    )
    for bad, message in [
        ("order", "use \\[NAMESPACE/\\]NAME=URL"),
        ("Order=http://x", "not a valid Service name"),
        ("a_b/order=http://x", "not a valid namespace"),
        ("order=ftp://x", "not an absolute http"),
        ("order=http://x:99999", "out of range"),
    ]:
        with pytest.raises(ServiceUrlError, match=message):
            parse_service_url(bad)
    with pytest.raises(ServiceUrlError, match="given twice"):
        parse_service_urls(["order=http://a", "default/order=http://b"])
