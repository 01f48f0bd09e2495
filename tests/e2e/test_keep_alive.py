"""An idle keep-alive connection outlives the idle expiry of the clients' pools (httpx,
which the openai and anthropic SDKs use, drops idle connections after 5 s): a request sent
on it after 6 s idle is answered, not reset."""

from __future__ import annotations

import socket
import time

import pytest

from mlxserve.cli.serve import KEEP_ALIVE_S


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.mark.slow
def test_a_connection_idle_for_six_seconds_still_serves(tiny_server):
    assert KEEP_ALIVE_S > 6
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=30) as sock:
        assert _get(sock, "/v1/models").startswith(b"HTTP/1.1 200")
        time.sleep(6)
        assert _get(sock, "/v1/models").startswith(b"HTTP/1.1 200")
