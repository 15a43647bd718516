"""HTTP on the wire for the server tests: images to send, raw sockets for what a hostile client sends
(an HTTP client would refuse to), and the checks every refusal must pass."""

from __future__ import annotations

import io
import socket
import struct
import zlib

import httpx
from PIL import Image

from foveal.serving.process import ServerProcess


def png_bytes(size: int = 24, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header claiming 400 MP, with almost no data: refused from the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def assert_still_serving(server: ServerProcess, image: bytes) -> None:
    assert httpx.get(server.url + "/readyz").status_code == 200
    answer = httpx.post(server.url + "/predict", content=image, headers={"content-type": "image/png"})
    assert answer.status_code == 200, answer.text


def assert_json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    return body


def raw_http(server: ServerProcess, request: bytes, *, body_chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send `request` (headers and any body) on a socket, then up to `body_chunks` chunks of a chunked
    body while the server still listens; the server's answer, as bytes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        try:
            for _ in range(body_chunks):
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body ended: what it should do
        return read_all(connection)


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's timeout)."""
    answer = b""
    try:
        while data := connection.recv(65536):
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    return answer
