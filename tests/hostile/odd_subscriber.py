"""A subscriber that answers the way careless or hostile ones do, written byte by byte on a raw
socket: endless chunks, bodies past any limit, headers that are not UTF-8, resets mid-body,
replies nested past what JSON codecs handle. One behaviour per request path."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from cascade.closing import ClosesOnExit

Behaviour = Callable[[socket.socket], None]

_MIB = b"x" * (1024 * 1024)


def _stream_forever(sock: socket.socket, head: bytes) -> None:
    """``head``, then megabytes until the broker hangs up (bounded: 2 GiB)."""
    sock.sendall(head)
    with contextlib.suppress(OSError):
        for _ in range(2048):
            sock.sendall(_MIB)


def endless_chunk(sock: socket.socket) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffff\r\n"
    _stream_forever(sock, head)


def many_chunks(sock: socket.socket) -> None:
    """Chunks of 1 MiB each, well framed, never a last one."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with contextlib.suppress(OSError):
        for _ in range(2048):
            sock.sendall(b"100000\r\n" + _MIB + b"\r\n")


def huge_length(sock: socket.socket) -> None:
    _stream_forever(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")


def until_close(sock: socket.socket) -> None:
    _stream_forever(sock, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")


def non_utf8_kne_header(sock: socket.socket) -> None:
    sock.sendall(
        b"HTTP/1.1 422 Unprocessable\r\nKne-Reason: caf\xe9 \xff\xfe\x1b[2J broken\r\n"
        b"Content-Length: 7\r\n\r\nrefused"
    )


def deep_reply(sock: socket.socket) -> None:
    data = b'{"data": ' + b"[" * 300 + b"]" * 300 + b"}"
    body = (
        b'{"specversion": "1.0", "id": "deep-reply", "source": "/odd", "type": "odd.reply", '
        b'"datacontenttype": "application/json", ' + data[1:]
    )
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/cloudevents+json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def reset_mid_body(sock: socket.socket) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    # SO_LINGER 0: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def garbage(sock: socket.socket) -> None:
    sock.sendall(b"SURPRISE \x00\xff\r\n\r\n")


BEHAVIOURS: dict[str, Behaviour] = {
    "/endless-chunk": endless_chunk,
    "/many-chunks": many_chunks,
    "/huge-length": huge_length,
    "/until-close": until_close,
    "/non-utf8-kne": non_utf8_kne_header,
    "/deep-reply": deep_reply,
    "/reset-mid-body": reset_mid_body,
    "/garbage": garbage,
}


class OddSubscriber(ClosesOnExit):
    """Reads each request's head and body, then answers per :data:`BEHAVIOURS`."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[str] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError):
            sock.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                more = sock.recv(65536)
                if not more:
                    return
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = next(
                (
                    int(v)
                    for k, _, v in (x.partition(":") for x in lines)
                    if k.lower() == "content-length"
                ),
                0,
            )
            while len(body) < length:
                more = sock.recv(65536)
                if not more:
                    return
                body += more
            self.requests.append(path)
            BEHAVIOURS[path](sock)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._thread.join(timeout=5)
