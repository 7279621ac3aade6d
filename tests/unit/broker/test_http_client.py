"""The lean delivery client against scripted raw HTTP servers and a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from cascade.broker.http.client import HttpClient, HttpProtocolError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/path?x=1"
    finally:
        server.close()
        await server.wait_closed()


def scripted(*answers: bytes, close_after: bool = False) -> tuple[Handler, list[bytes]]:
    """Answer each request on a connection with the next canned bytes."""
    requests: list[bytes] = []
    queue = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while queue:
                head, body = await read_request(reader)
                requests.append(head + body)
                writer.write(queue.pop(0))
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle, requests


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_request_shape_and_content_length_answer() -> None:
    async def scenario() -> None:
        handler, requests = scripted(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nKne-X: y\r\n\r\nok"
        )
        async with raw_server(handler) as url:
            client = HttpClient()
            response = await client.post(url, {"ce-id": "1", "Prefer": "reply"}, b"body", 5)
            await client.close()
        assert response.status == 202
        assert response.body == b"ok"
        assert response.headers["kne-x"] == "y"
        head = requests[0].decode()
        assert head.startswith("POST /path?x=1 HTTP/1.1\r\n")
        assert "ce-id: 1\r\n" in head
        assert "Content-Length: 4\r\n" in head
        assert head.endswith("\r\n\r\nbody")
        assert "Content-Type" not in head

    run(scenario())


def test_chunked_answer_and_informational_answers_are_handled() -> None:
    async def scenario() -> None:
        answer = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        )
        handler, _ = scripted(answer)
        async with raw_server(handler) as url:
            client = HttpClient()
            response = await client.post(url, {}, b"", 5)
            await client.close()
        assert response.status == 200
        assert response.body == b"abcde"

    run(scenario())


def test_close_delimited_answer() -> None:
    async def scenario() -> None:
        handler, _ = scripted(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close_after=True)
        async with raw_server(handler) as url:
            client = HttpClient()
            response = await client.post(url, {}, b"", 5)
            await client.close()
        assert response.body == b"until the end"

    run(scenario())


def test_keep_alive_reuses_one_connection() -> None:
    async def scenario() -> None:
        connections = 0
        ok = b"HTTP/1.1 204 No Content\r\n\r\n"
        inner, requests = scripted(ok, ok, ok)

        async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await inner(reader, writer)

        async with raw_server(counting) as url:
            client = HttpClient()
            for _ in range(3):
                assert (await client.post(url, {}, b"x", 5)).status == 204
            await client.close()
        assert connections == 1
        assert len(requests) == 3

    run(scenario())


def test_connection_close_is_honoured_and_a_stale_connection_retried_once() -> None:
    async def scenario() -> None:
        connections = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                await read_request(reader)
                # Claims keep-alive, then closes anyway: the next request finds it dead.
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            finally:
                writer.close()

        async with raw_server(handler) as url:
            client = HttpClient()
            assert (await client.post(url, {}, b"", 5)).status == 200
            await asyncio.sleep(0.05)
            assert (await client.post(url, {}, b"", 5)).status == 200
            await client.close()
        assert connections == 2

    run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
def test_malformed_answers_raise_protocol_errors(answer: bytes) -> None:
    async def scenario() -> None:
        handler, _ = scripted(answer + b"\r\n" * 2)
        async with raw_server(handler) as url:
            client = HttpClient()
            with pytest.raises(HttpProtocolError):
                await client.post(url, {}, b"", 5)
            await client.close()

    run(scenario())


def test_server_closing_mid_answer_is_a_connection_error() -> None:
    async def scenario() -> None:
        handler, _ = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=True)
        async with raw_server(handler) as url:
            client = HttpClient()
            with pytest.raises(ConnectionResetError, match="mid-answer"):
                await client.post(url, {}, b"", 5)
            await client.close()

    run(scenario())


def test_timeout_and_refused() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await read_request(reader)
                await asyncio.sleep(5)
            finally:
                writer.close()

        async with raw_server(silent) as url:
            client = HttpClient()
            with pytest.raises(TimeoutError):
                await client.post(url, {}, b"", 0.1)
            await client.close()
        closed_port = url  # the server is gone now
        client = HttpClient()
        with pytest.raises(ConnectionRefusedError):
            await client.post(closed_port, {}, b"", 5)
        await client.close()

    run(scenario())


def test_a_timed_out_connection_is_never_reused_for_the_next_request() -> None:
    async def scenario() -> None:
        connections = 0

        async def late_then_prompt(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal connections
            connections += 1
            late = connections == 1
            try:
                while True:
                    await read_request(reader)
                    if late:
                        await asyncio.sleep(0.3)  # answers after the client gave up
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
                    else:
                        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async with raw_server(late_then_prompt) as url:
            client = HttpClient()
            with pytest.raises(TimeoutError):
                await client.post(url, {}, b"", 0.1)
            await asyncio.sleep(0.3)
            answer = await client.post(url, {}, b"", 5)
            await client.close()
        # The late answer of the first connection never stands in for the second request's.
        assert connections == 2
        assert answer.status == 204

    run(scenario())


def test_header_lines_are_checked_one_by_one() -> None:
    async def scenario() -> None:
        handler, requests = scripted(b"HTTP/1.1 204 No Content\r\n\r\n")
        async with raw_server(handler) as url:
            client = HttpClient()
            many = {f"ce-x{n}": f"v{n}" for n in range(5)}
            assert (await client.post(url, many, b"", 5)).status == 204
            for bad in ({"a": "1", "b": "x\ny"}, {"a": "1\r", "b": "2"}, {"a\nb": "1"}):
                with pytest.raises(ValueError, match="line break"):
                    await client.post(url, bad, b"", 5)
            await client.close()
        head = requests[0].decode()
        assert "".join(f"ce-x{n}: v{n}\r\n" for n in range(5)) in head
        assert len(requests) == 1  # refused requests were never sent

    run(scenario())


def test_header_injection_is_refused_and_https_is_not_handled() -> None:
    async def scenario() -> None:
        client = HttpClient()
        with pytest.raises(ValueError, match="line break"):
            await client.post("http://127.0.0.1:1/", {"x": "a\r\nb: c"}, b"", 1)
        with pytest.raises(ValueError, match="plain http"):
            await client.post("https://example.com/", {}, b"", 1)
        await client.close()

    run(scenario())


def test_pool_limit_queues_requests() -> None:
    async def scenario() -> None:
        concurrent = 0
        most = 0

        async def handler(request: web.Request) -> web.Response:
            nonlocal concurrent, most
            concurrent += 1
            most = max(most, concurrent)
            await asyncio.sleep(0.02)
            concurrent -= 1
            return web.Response(status=200, text="ok")

        app = web.Application()
        app.router.add_post("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client = HttpClient(max_per_origin=3)
        try:
            answers = await asyncio.gather(
                *(client.post(f"http://127.0.0.1:{port}/", {}, b"x", 5) for _ in range(12))
            )
        finally:
            await client.close()
            await runner.cleanup()
        assert [a.body for a in answers] == [b"ok"] * 12
        assert most == 3

    run(scenario())


def test_a_cancelled_waiter_does_not_block_the_next_one() -> None:
    async def scenario() -> None:
        async def handler(request: web.Request) -> web.Response:
            await asyncio.sleep(0.05)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        client = HttpClient(max_per_origin=1)
        try:
            holder = asyncio.ensure_future(client.post(url, {}, b"", 5))
            await asyncio.sleep(0.01)
            impatient = asyncio.ensure_future(client.post(url, {}, b"", 5))
            patient = asyncio.ensure_future(client.post(url, {}, b"", 5))
            await asyncio.sleep(0.01)
            impatient.cancel()
            assert (await holder).status == 204
            assert (await asyncio.wait_for(patient, 5)).status == 204
            with pytest.raises(asyncio.CancelledError):
                await impatient
        finally:
            await client.close()
            await runner.cleanup()

    run(scenario())
