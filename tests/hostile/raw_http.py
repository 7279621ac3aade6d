"""Hand-built HTTP/1.1 requests on a raw socket, and the strategies that build hostile ones.

A client library refuses to send most of what an attacker sends (bare CR, NUL, non-UTF-8
header bytes, lying Content-Length, broken chunks), so the suite writes the bytes itself.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = ["RawAnswer", "events", "raw_requests", "send_raw"]


@dataclass(frozen=True)
class RawAnswer:
    status: int | None  # None: the server closed without answering
    head: bytes


def send_raw(port: int, data: bytes, timeout: float = 20.0, *, half_close: bool) -> RawAnswer:
    """Send ``data`` and read the status line of the first answer.

    ``half_close`` ends the request stream (a body shorter than announced then ends at once);
    without it the server's own read deadline must end such a request."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before it has read everything
        received = b""
        try:
            while b"\r\n" not in received:
                more = sock.recv(65536)
                if not more:
                    break
                received += more
        except ConnectionResetError:
            pass
    if not received.startswith(b"HTTP/1."):
        return RawAnswer(None, received[:200])
    parts = received.split(b" ", 2)
    return RawAnswer(int(parts[1]) if parts[1].isdigit() else None, received[:200])


# Header values: printable ASCII, then anything a socket can carry.
_VALUE = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
        str.encode
    ),
    st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"\x00", b"a\x1b[2Jb", b"\xff\xfe", b"caf\xc3\xa9", b"%00", b"%ZZ", b" "]),
)
_NAME = st.one_of(
    st.sampled_from(
        [
            b"ce-specversion",
            b"ce-id",
            b"ce-source",
            b"ce-type",
            b"ce-time",
            b"ce-subject",
            b"ce-dataschema",
            b"ce-x",
            b"Content-Type",
            b"Expect",
            b"Transfer-Encoding",
            b"Content-Encoding",
            b"traceparent",
            b"Kne-Reason",
        ]
    ),
    st.binary(min_size=1, max_size=12).filter(lambda b: not set(b) & set(b"\r\n: \t")),
)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


_BODY = st.one_of(
    st.binary(max_size=300),
    st.integers(min_value=1, max_value=2000).map(_nested),
    st.integers(min_value=1, max_value=2000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from(
        [
            b'{"name": "Ada"}',
            b'{"name": "Ada\\u0000"}',
            b'{"specversion":"1.0","id":"x","source":"/s","type":"t","data":' + _nested(300) + b"}",
            b'{"specversion":"1.0","id":"x\\u001b","source":"/s","type":"t"}',
        ]
    ),
)

_CONTENT_TYPES = st.sampled_from(
    [
        None,
        b"application/json",
        b"application/cloudevents+json",
        b"text/plain",
        b"application/cloudevents-batch+json",
        b"application/cloudevents+json; charset=latin-1",
    ]
)


@st.composite
def raw_requests(draw: st.DrawFn, paths: tuple[bytes, ...]) -> bytes:
    """One request: a method, a path, a valid CloudEvent's headers or not, odd headers, a body
    framed honestly, by a lying Content-Length, or chunked (broken or not)."""
    method = draw(st.sampled_from([b"POST", b"POST", b"POST", b"GET", b"PUT", b"OPTIONS"]))
    path = draw(st.one_of(st.sampled_from(paths), st.sampled_from([b"/x", b"/%00", b"//"])))
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"hostile")]
    if draw(st.booleans()):
        headers += [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", draw(st.sampled_from([b"h-1", b"h-2", b"\x00", b"a\x1bb"]))),
            (b"ce-source", b"/hostile"),
            (b"ce-type", draw(st.sampled_from([b"com.example.greeting.requested", b"t"]))),
        ]
    headers += draw(st.lists(st.tuples(_NAME, _VALUE), max_size=6))
    content_type = draw(_CONTENT_TYPES)
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    body = draw(_BODY)
    framing = draw(st.sampled_from(["length", "length", "short", "long", "chunked", "bad-chunk"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "short":  # more bytes follow than announced
        headers.append((b"Content-Length", str(len(body) // 2).encode()))
    elif framing == "long":  # fewer bytes than announced, then the client half-closes
        headers.append((b"Content-Length", str(len(body) + 50).encode()))
    else:
        headers.append((b"Transfer-Encoding", b"chunked"))
        size = b"%x" % len(body) if framing == "chunked" else b"zz"
        body = (size + b"\r\n" + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    head = method + b" " + path + b" HTTP/1.1\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


def events(event_id: str, event_type: str, path: bytes) -> bytes:
    """A well-formed binary CloudEvent request, for checking nothing accepted is lost."""
    body = b'{"name": "Ada"}'
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: hostile\r\nce-specversion: 1.0\r\n"
        b"ce-id: " + event_id.encode() + b"\r\nce-source: /hostile\r\n"
        b"ce-type: " + event_type.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
