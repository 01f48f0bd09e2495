"""Media fetching against a real HTTP server on 127.0.0.1: SSRF guard, redirects, limits."""

from __future__ import annotations

import base64
import ipaddress
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.fetch import address_refusal, fetch_media
from mlxserve.multimodal.media_config import MediaConfig

PAYLOAD = bytes(range(256)) * 40  # 10 KiB
PART = "messages[0].content[1]"
LOOPBACK_OK = MediaConfig(allowed_networks=("127.0.0.1/32",))


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/media.bin":
            self._send(200, PAYLOAD)
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/slow":
            time.sleep(float(query["s"][0]))
            self._send(200, PAYLOAD)
        elif url.path == "/drip":  # no Content-Length, trickles bytes
            self.send_response(200)
            self.end_headers()
            for _ in range(int(query["n"][0])):
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                time.sleep(float(query["s"][0]))
        elif url.path == "/missing":
            self._send(404, b"no")
        else:
            self._send(500, b"?")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that hang up on purpose
        pass


@pytest.fixture(scope="module")
def server():
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _refused(url: str, config: MediaConfig, *words: str, kind: str = "image") -> str:
    with pytest.raises(InvalidRequest) as info:
        fetch_media(url, kind=kind, part=PART, config=config)
    message = info.value.message
    assert message.startswith(PART), message
    for word in words:
        assert word in message, message
    return message


def test_loopback_refused_by_default(server):
    _refused(f"{server}/media.bin", MediaConfig(), "loopback")


def test_localhost_name_refused_by_default(server):
    port = urlsplit(server).port
    _refused(f"http://localhost:{port}/media.bin", MediaConfig(), "localhost", "loopback")


def test_loopback_allowed_with_flag(server):
    for config in (LOOPBACK_OK, MediaConfig(allow_private_network=True)):
        got = fetch_media(f"{server}/media.bin", kind="image", part=PART, config=config)
        assert got.data == PAYLOAD and got.source == "http"
        assert got.mime_type == "application/octet-stream"


def test_redirect_is_followed_and_rechecked(server):
    ok = fetch_media(f"{server}/redirect?to=/media.bin", kind="image", part=PART,
                     config=LOOPBACK_OK)
    assert ok.data == PAYLOAD
    # From an allowed host to a loopback address that is not allowed.
    _refused(f"{server}/redirect?to=http://127.0.0.2:1/x", LOOPBACK_OK, "loopback")
    _refused(f"{server}/redirect?to=http://169.254.169.254/latest/meta-data/", LOOPBACK_OK,
             "metadata")
    _refused(f"{server}/redirect?to=file:///etc/passwd", LOOPBACK_OK, "'file:'")
    _refused(f"{server}/loop", LOOPBACK_OK, "redirects")


def test_metadata_refused_even_when_private_allowed():
    config = MediaConfig(allow_private_network=True)
    for addr in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert address_refusal(ipaddress.ip_address(addr), config) == "a cloud metadata address"
    _refused("http://169.254.169.254/latest/meta-data/", config, "metadata")
    _refused("http://[fd00:ec2::254]/latest/", config, "metadata")


@pytest.mark.parametrize("addr", ["10.0.0.1", "192.168.1.1", "172.16.0.5", "127.0.0.1",
                                  "169.254.1.1", "224.0.0.1", "0.0.0.0", "240.0.0.1",
                                  "100.64.0.1", "::1", "fe80::1", "fc00::1", "ff02::1",
                                  "::ffff:127.0.0.1", "2002:7f00:1::"])
def test_non_public_addresses_refused(addr):
    assert address_refusal(ipaddress.ip_address(addr), MediaConfig()) is not None


def test_public_address_passes_guard():
    assert address_refusal(ipaddress.ip_address("93.184.215.14"), MediaConfig()) is None
    assert address_refusal(ipaddress.ip_address("2606:4700::1111"), MediaConfig()) is None


def test_allowed_domains(server):
    config = MediaConfig(allowed_domains=("example.com",), allow_private_network=True)
    _refused(f"{server}/media.bin", config, "allowed domains")
    port = urlsplit(server).port
    _refused(f"http://evil-example.com:{port}/x", config, "allowed domains")


def test_size_limit_from_header_and_stream(server):
    small = MediaConfig(allowed_networks=("127.0.0.1/32",), max_image_bytes=1000)
    _refused(f"{server}/media.bin", small, "1000-byte limit")
    # No Content-Length: the stream is cut once it passes the limit.
    _refused(f"{server}/drip?n=5&s=0", small, "1000-byte limit")
    # The video limit applies to videos.
    got = fetch_media(f"{server}/media.bin", kind="video", part=PART, config=small)
    assert len(got.data) == len(PAYLOAD)


def test_read_timeout(server):
    config = MediaConfig(allowed_networks=("127.0.0.1/32",), read_timeout_s=0.3)
    _refused(f"{server}/slow?s=1.5", config, "did not answer in time")


def test_total_timeout_with_trickling_server(server):
    config = MediaConfig(allowed_networks=("127.0.0.1/32",), read_timeout_s=1.0,
                         total_timeout_s=0.6)
    start = time.monotonic()
    _refused(f"{server}/drip?n=20&s=0.1", config)
    assert time.monotonic() - start < 1.5


def test_http_error_status(server):
    _refused(f"{server}/missing", LOOPBACK_OK, "HTTP status 404")


def test_data_urls():
    raw = b"\x89PNG fake bytes"
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    got = fetch_media(url, kind="image", part=PART, config=MediaConfig())
    assert got.data == raw and got.mime_type == "image/png" and got.source == "data"
    _refused("data:image/png;base64,@@@notbase64", MediaConfig(), "base64")
    _refused("data:image/png;base64", MediaConfig(), "malformed")
    big = "data:image/png;base64," + base64.b64encode(b"a" * 5000).decode()
    _refused(big, MediaConfig(max_image_bytes=4000), "4000-byte limit")


def test_unsupported_scheme():
    _refused("ftp://example.com/a.png", MediaConfig(), "scheme 'ftp'")
    _refused("   ", MediaConfig(), "empty")


def test_local_paths(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (root / "a.bin").write_bytes(PAYLOAD)
    (tmp_path / "secret.bin").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.bin", root / "link.bin")
    _refused(str(root / "a.bin"), MediaConfig(), "not allowed")
    config = MediaConfig(allowed_local_media_path=str(root))
    assert fetch_media(str(root / "a.bin"), kind="image", part=PART, config=config).data == PAYLOAD
    assert fetch_media(f"file://{root}/a.bin", kind="image", part=PART,
                       config=config).data == PAYLOAD
    _refused(str(tmp_path / "secret.bin"), config, "outside")
    _refused(str(root / ".." / "secret.bin"), config, "outside")
    _refused(str(root / "link.bin"), config, "outside")
    _refused(str(root / "nope.bin"), config, "does not exist")
