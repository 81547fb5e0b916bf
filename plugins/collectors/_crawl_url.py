"""URL normalization and the crawl scope of ``collector=web``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def clean(url: str) -> str:
    """The URL as fetched: no fragment, no user name or password, whitespace trimmed.

    Credentials in a URL are never sent anywhere, so they are dropped at the door.
    Raises ValueError for a URL that cannot be parsed (a bad port, say).
    """
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))


def normalize(url: str, sort_query: bool = True) -> str:
    """The identity of a page: lowercase scheme and host, no default port, no fragment.

    ``/`` stands for an empty path, and with ``sort_query`` the query's pairs are sorted
    so that ``?a=1&b=2`` and ``?b=2&a=1`` are one page.
    """
    parts = urlsplit(clean(url))
    host = (parts.hostname or "").lower()
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        pass
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"
    query = parts.query
    if sort_query and query:
        query = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    return urlunsplit((parts.scheme, netloc, parts.path or "/", query, ""))


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Scope:
    """Which URLs the crawl may fetch: http(s), on the seeds' hosts, allowed, not denied."""

    def __init__(self, hosts: set[str] | None, allow: list[str], deny: list[str]) -> None:
        self.hosts = hosts  # None: any host
        self.allow = [re.compile(p) for p in allow]
        self.deny = [re.compile(p) for p in deny]

    def __contains__(self, url: str) -> bool:
        if urlsplit(url).scheme not in DEFAULT_PORTS:
            return False
        if self.hosts is not None and host_of(url) not in self.hosts:
            return False
        if self.allow and not any(p.search(url) for p in self.allow):
            return False
        return not any(p.search(url) for p in self.deny)
