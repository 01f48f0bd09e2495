"""Fetch the bytes of one media item: a data: URL, http(s), or an allowed local file.

Every limit is enforced while streaming (bytes, per-read and total time), and remote
fetches pass an SSRF guard: the host is resolved once, every address it resolves to must
be allowed, and the connection goes to that checked address (so a DNS answer that changes
between check and connect cannot redirect us). Redirects are followed by hand, each hop
checked again. Blocking: callers off the event loop run it in a worker thread.

Errors are ``InvalidRequest`` whose message starts with the content part it concerns.
Pure Python: no MLX import.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.media_config import MediaConfig

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_USER_AGENT = "mlxserve-media-fetch/0.1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    mime_type: str | None  # from the data: URL or the Content-Type header, if any
    source: str  # "data", "http", "file"


class MediaFetchError(InvalidRequest):
    code = "invalid_media"


def fetch_media(url: str, *, kind: str, part: str, config: MediaConfig) -> FetchedMedia:
    """Return the bytes of ``url``. ``kind`` is "image" or "video" (picks the byte limit);
    ``part`` names the content part for error messages (e.g. "messages[0].content[1]")."""
    max_bytes = config.max_video_bytes if kind == "video" else config.max_image_bytes
    if not isinstance(url, str) or not url.strip():
        raise _error(part, f"the {kind} URL is empty")
    url = url.strip()
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("data:") else ""
    if scheme == "data":
        return _from_data_url(url, part, max_bytes)
    if scheme in ("http", "https"):
        return _HttpFetcher(config, part, max_bytes).fetch(url)
    if scheme == "file" or scheme == "":
        path = unquote(urlsplit(url).path) if scheme == "file" else url
        return _from_local_file(path, part, max_bytes, config)
    raise _error(part, f"unsupported URL scheme '{scheme}' (use data:, http:, https:)")


def _error(part: str, why: str) -> MediaFetchError:
    return MediaFetchError(f"{part}: {why}", param=part)


# --- data: URLs ---------------------------------------------------------------------


def _from_data_url(url: str, part: str, max_bytes: int) -> FetchedMedia:
    header, sep, payload = url[len("data:"):].partition(",")
    if not sep:
        raise _error(part, "malformed data URL (no ',' before the payload)")
    fields = header.split(";")
    mime = fields[0].strip().lower() or None
    is_base64 = any(f.strip().lower() == "base64" for f in fields[1:])
    if is_base64:
        compact = "".join(payload.split())
        if len(compact) * 3 // 4 > max_bytes + 3:
            raise _error(part, f"the data URL is larger than the {max_bytes}-byte limit")
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _error(part, "the data URL is not valid base64") from None
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _error(part, f"the data URL is larger than the {max_bytes}-byte limit")
    if not data:
        raise _error(part, "the data URL is empty")
    return FetchedMedia(data, mime, "data")


# --- local files --------------------------------------------------------------------


def _from_local_file(path: str, part: str, max_bytes: int, config: MediaConfig) -> FetchedMedia:
    root = config.allowed_local_media_path
    if not root:
        raise _error(part, "local media paths are not allowed on this server "
                           "(use a data: or http(s) URL)")
    real_root = os.path.realpath(root)
    real = os.path.realpath(path if os.path.isabs(path) else os.path.join(real_root, path))
    if os.path.commonpath([real, real_root]) != real_root:
        raise _error(part, "the local path is outside the allowed media folder")
    if not os.path.isfile(real):
        raise _error(part, "the local media file does not exist")
    size = os.path.getsize(real)
    if size > max_bytes:
        raise _error(part, f"the file is larger than the {max_bytes}-byte limit")
    with open(real, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _error(part, f"the file is larger than the {max_bytes}-byte limit")
    return FetchedMedia(data, None, "file")


# --- SSRF guard ---------------------------------------------------------------------


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    return None


def address_refusal(ip: IPAddress, config: MediaConfig) -> str | None:
    """Why ``ip`` may not be fetched from, or None when it may."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        why = address_refusal(inner, config)
        if why:
            return why
    if any(ip == ipaddress.ip_address(a) for a in config.blocked_addresses):
        return "a cloud metadata address"
    if ip.is_global and not ip.is_multicast:
        return None
    if config.allow_private_network:
        return None
    if any(ip in ipaddress.ip_network(n, strict=False) for n in config.allowed_networks):
        return None
    for label, flag in (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
                        ("a multicast", ip.is_multicast), ("an unspecified",
                        ip.is_unspecified), ("a private", ip.is_private),
                        ("a reserved", ip.is_reserved)):
        if flag:
            return f"{label} address"
    return "a non-public address"


def _domain_allowed(host: str, config: MediaConfig) -> bool:
    if not config.allowed_domains:
        return True
    host = host.lower().rstrip(".")
    return any(host == d.lower() or host.endswith("." + d.lower().lstrip("."))
               for d in config.allowed_domains)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path + query, ready for the request line
    ip: str  # the checked address we connect to


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to an already-checked IP; Host header and TLS name stay the
    URL's host (certificate checked against it)."""

    def __init__(self, target: _Target, connect_timeout: float, tls: ssl.SSLContext | None):
        super().__init__(target.host, target.port, timeout=connect_timeout)
        self._ip = target.ip
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


class _HttpFetcher:
    def __init__(self, config: MediaConfig, part: str, max_bytes: int):
        self.config = config
        self.part = part
        self.max_bytes = max_bytes
        self.deadline = time.monotonic() + config.total_timeout_s

    def fetch(self, url: str) -> FetchedMedia:
        for _hop in range(self.config.max_redirects + 1):
            target = self._check(url)
            status, location, mime, data = self._request(target)
            if status in _REDIRECTS:
                if not location:
                    raise _error(self.part, f"the server answered {status} without a Location")
                url = urljoin(url, location)
                continue
            if status != 200:
                raise _error(self.part, f"fetching the media failed with HTTP status {status}")
            return FetchedMedia(data, mime, "http")
        raise _error(self.part, f"more than {self.config.max_redirects} redirects")

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _error(self.part, f"fetching the media took longer than "
                                    f"{self.config.total_timeout_s:g} s")
        return left

    def _check(self, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _error(self.part, f"a redirect to a '{scheme}:' URL is not followed")
        host = parts.hostname
        if not host:
            raise _error(self.part, "the URL has no host")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise _error(self.part, "the URL has an invalid port") from None
        if not _domain_allowed(host, self.config):
            raise _error(self.part, f"the host '{host}' is not in the allowed domains")
        ip = self._resolve_checked(host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Target(scheme, host, port, path, str(ip))

    def _resolve_checked(self, host: str, port: int) -> IPAddress:
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._resolve(host, port)
        for ip in addresses:
            why = address_refusal(ip, self.config)
            if why:
                raise _error(self.part, f"the host '{host}' resolves to {why}, "
                                        "which this server does not fetch from")
        return addresses[0]

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise _error(self.part, f"the host '{host}' could not be resolved") from None
        seen: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if ip not in seen:
                seen.append(ip)
        if not seen:
            raise _error(self.part, f"the host '{host}' could not be resolved")
        return seen

    def _request(self, target: _Target) -> tuple[int, str | None, str | None, bytes]:
        tls = ssl.create_default_context() if target.scheme == "https" else None
        timeout = min(self.config.connect_timeout_s, self._remaining())
        conn = _PinnedConnection(target, timeout, tls)
        try:
            conn.request("GET", target.path, headers={"User-Agent": _USER_AGENT,
                                                      "Accept": "*/*"})
            sock = conn.sock  # the response may detach it from conn; keep our handle
            sock.settimeout(min(self.config.read_timeout_s, self._remaining()))
            resp = conn.getresponse()
            if resp.status in _REDIRECTS or resp.status != 200:
                return resp.status, resp.getheader("Location"), None, b""
            mime = (resp.getheader("Content-Type") or "").split(";")[0].strip() or None
            return resp.status, None, mime, self._read_body(sock, resp)
        except (TimeoutError, socket.timeout):
            raise _error(self.part, "the media server did not answer in time") from None
        except (OSError, http.client.HTTPException) as e:
            raise _error(self.part, f"fetching the media failed ({type(e).__name__})") from None
        finally:
            conn.close()

    def _read_body(self, sock: socket.socket, resp: http.client.HTTPResponse) -> bytes:
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise _error(self.part, f"the media is larger than the {self.max_bytes}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            sock.settimeout(min(self.config.read_timeout_s, self._remaining()))
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > self.max_bytes:
                raise _error(self.part, f"the media is larger than the {self.max_bytes}-byte "
                                        "limit")
            chunks.append(chunk)
            self._remaining()
        if total == 0:
            raise _error(self.part, "the media server returned an empty body")
        return b"".join(chunks)
