"""One safe HTTP GET for ``collector=web``: address checks, caps, retries.

Safety rules, all enforced here so that no caller can forget one:

- only http and https;
- the host is resolved once, every address it resolves to is checked (loopback,
  private, link-local and other non-public networks are refused unless allowed), and
  the connection goes to a checked address, so a DNS answer cannot change between
  the check and the connect;
- no cookies and no Authorization header are ever sent (there is no cookie jar);
- redirects are not followed here: the crawler schedules the target as a new URL,
  which passes the scope, robots and these checks again;
- the body is read in chunks and decompressed here, bounded, so that a gzip bomb is
  cut at ``max_body_bytes`` of output without inflating the rest.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

CHUNK = 16 << 10
REDIRECTS = {301, 302, 303, 307, 308}


class Skip(Exception):
    """A URL that is not fetched, or whose response is not used; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.requests = 0  # HTTP requests made before giving up


@dataclass
class Response:
    url: str
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes = b""
    requests: int = 0  # HTTP requests made for it, retries included
    location: str | None = None

    @property
    def mime(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip("\"'") or None
        return None


@dataclass
class AddressPolicy:
    allow_private: bool = False
    allow_networks: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in self.allow_networks]

    def allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.networks):
            return True
        if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return False
        return ip.is_global or self.allow_private

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each one checked; refused if any one is not allowed."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise Skip("dns", f"{host}: {e}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:
            if not self.allowed(ipaddress.ip_address(address.split("%")[0])):
                raise Skip("private_address", f"{host} resolves to {address}")
        return addresses


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Inflater:
    """gzip or zlib decompression whose output never exceeds the room it is given."""

    def __init__(self) -> None:
        self.d = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, auto-detected

    def __call__(self, data: bytes, room: int) -> bytes:
        try:
            return self.d.decompress(data, room)
        except zlib.error as e:
            raise Skip("bad_encoding", str(e)) from None


def _identity(data: bytes, room: int) -> bytes:
    return data


def decoder_for(encoding: str) -> Callable[[bytes, int], bytes]:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return _identity
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater()
    raise Skip("content_encoding", encoding)


def read_capped(chunks, decode: Callable[[bytes, int], bytes], cap: int, deadline: float) -> bytes:
    """Join the decoded chunks; Skip('too_large') as soon as the output passes ``cap``.

    ``decode(data, room)`` returns at most ``room`` bytes (when it can bound its output),
    so a bomb costs at most ``cap + 1`` bytes of memory before it is cut off.
    """
    out = bytearray()
    for raw in chunks:
        out += decode(raw, cap + 1 - len(out))
        if len(out) > cap:
            raise Skip("too_large", f"more than {cap} bytes")
        if time.monotonic() > deadline:
            raise Skip("timeout", "the body took too long")
    return bytes(out)


class Fetcher:
    """GETs one URL at a time per caller; thread-safe, connection pools shared by host."""

    def __init__(self, config, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.policy = AddressPolicy(config.allow_private, list(config.allow_networks))
        self.timeout = urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout)
        self.headers = {
            "User-Agent": config.user_agent,
            "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
            "Accept-Encoding": "gzip, deflate",
        }
        self._pools: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _pool(self, scheme: str, address: str, port: int, host: str):
        key = (scheme, address, port, host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                kwargs = dict(maxsize=2, block=False, retries=False, timeout=self.timeout)
                if scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host, **kwargs)
                else:
                    pool = urllib3.HTTPConnectionPool(address, port, **kwargs)
                self._pools[key] = pool
                if len(self._pools) > 256:  # idle pools of hosts long done; their sockets close with them
                    self._pools.popitem(last=False)
            self._pools.move_to_end(key)
            return pool

    def _open(self, url: str):
        """One request to a checked address; returns the unread urllib3 response."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Skip("scheme", url)
        host = parts.hostname
        if not host:
            raise Skip("bad_url", url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise Skip("bad_url", url) from None
        default = port == (443 if parts.scheme == "https" else 80)
        netloc_host = f"[{host}]" if ":" in host else host
        headers = {**self.headers, "Host": netloc_host if default else f"{netloc_host}:{port}"}
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        error: Skip | None = None
        for address in self.policy.resolve(host, port):
            try:
                return self._pool(parts.scheme, address, port, host).urlopen(
                    "GET", target, headers=headers, redirect=False, retries=False,
                    preload_content=False, decode_content=False, assert_same_host=False,
                )
            except (ConnectTimeoutError, NewConnectionError) as e:  # try the next checked address
                error = Skip("timeout" if isinstance(e, ConnectTimeoutError) else "connection_error", str(e))
            except ReadTimeoutError as e:
                raise Skip("timeout", str(e)) from None
            except SSLError as e:
                raise Skip("tls_error", str(e)) from None
            except HTTPError as e:
                raise Skip("connection_error", str(e)) from None
        raise error or Skip("dns", f"{host} has no address")

    def get(self, url: str, wants: Callable[[str], bool]) -> Response:
        """GET ``url`` with retries on 429 and 5xx; the body is read if ``wants(mime)``.

        A redirect comes back with ``location`` set and no body. Raises Skip for a URL
        refused or a response not used (the reason is the stats key).
        """
        counter = [0]
        try:
            return self._get(url, wants, counter)
        except Skip as e:
            e.requests = counter[0]
            raise

    def _get(self, url: str, wants: Callable[[str], bool], counter: list[int]) -> Response:
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            if self.stop.is_set():
                raise Skip("interrupted")
            started = time.monotonic()
            raw = self._open(url)
            counter[0] += 1
            requests = counter[0]
            headers = {k.lower(): v for k, v in raw.headers.items()}
            resp = Response(url, raw.status, headers, requests=requests)
            if raw.status == 429 or 500 <= raw.status < 600:
                _discard(raw)
                wait = retry_after(headers.get("retry-after"))
                wait = max(cfg.backoff * 2**attempt if wait is None else wait, cfg.delay)  # never faster than the host delay
                if attempt == cfg.max_retries or wait > cfg.max_backoff:
                    raise Skip(f"status_{raw.status}", url)
                self.stop.wait(wait)
                continue
            if raw.status in REDIRECTS and headers.get("location"):
                _discard(raw)
                resp.location = headers["location"]
                return resp
            if raw.status != 200:
                _discard(raw)
                raise Skip(f"status_{raw.status}", url)
            if not wants(resp.mime):
                _discard(raw, limit=0)
                raise Skip("content_type", resp.mime or "none")
            length = headers.get("content-length", "")
            try:
                decode = decoder_for(headers.get("content-encoding", ""))
                if decode is _identity and length.isdigit() and int(length) > cfg.max_body_bytes:
                    raise Skip("too_large", f"Content-Length {length}")
                resp.body = read_capped(raw.stream(CHUNK, decode_content=False), decode, cfg.max_body_bytes, started + cfg.fetch_timeout)
            except Skip:
                raw.close()
                raise
            except ReadTimeoutError as e:
                raw.close()
                raise Skip("timeout", str(e)) from None
            except HTTPError as e:
                raw.close()
                raise Skip("connection_error", str(e)) from None
            finally:
                raw.release_conn()
            return resp
        raise AssertionError("unreachable")


def _discard(raw, limit: int = 64 << 10) -> None:
    """Finish with a response whose body is not wanted: drain a small one, drop a large one."""
    try:
        length = raw.headers.get("content-length", "")
        if limit and length.isdigit() and int(length) <= limit:
            raw.drain_conn()
        else:
            raw.close()  # the connection is not reused; the pool opens a fresh one
    except (HTTPError, OSError):
        raw.close()
    finally:
        raw.release_conn()
