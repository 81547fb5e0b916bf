"""``collector=web``: a polite, safe, resumable crawler of seed URLs and sitemaps.

Polite: robots.txt and its Crawl-delay are obeyed, one request at a time per host with
``delay`` seconds between them, and the user-agent names lmforge. Safe: http(s) only,
no loopback, private or link-local addresses unless allowed (checked on every redirect
hop, connecting only to the checked address), no cookies or credentials, capped bodies
(decompressed size included), timeouts, bounded retries. Resumable: the frontier and the
seen set live in the stage's work folder, saved at each ``checkpoint``.

HTML becomes its main text, title and date (trafilatura); plain text is kept as it is;
other content types are skipped and counted. The implementation is in ``_crawler.py``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator, List, Optional

from lmforge import hookimpl
from lmforge.contracts import Collector, Document
from lmforge.engine.config import bad_value, check_count, shown
from lmforge.errors import ConfigError

USER_AGENT = "lmforge-crawler/0.1 (+https://github.com/lmforge/lmforge)"


@dataclass
class WebConfig:
    seeds: List[str] = field(default_factory=list)
    sitemaps: List[str] = field(default_factory=list)
    probe_sitemap: bool = True
    same_host: bool = True
    allow: List[str] = field(default_factory=list)
    deny: List[str] = field(default_factory=list)
    sort_query: bool = True
    max_depth: Optional[int] = 5
    max_pages: Optional[int] = 1000
    max_bytes: Optional[int] = None
    respect_robots: bool = True
    delay: float = 1.0
    concurrency: int = 8
    user_agent: str = USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    fetch_timeout: float = 120.0
    max_body_bytes: int = 10_000_000
    max_extract_bytes: Optional[int] = 1_000_000
    max_retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_redirects: int = 5
    allow_private: bool = False
    allow_networks: List[str] = field(default_factory=list)
    warc_path: Optional[str] = None

    def __post_init__(self) -> None:
        # cheap checks (stdlib only) so that a bad value fails before any work, naming its key
        import ipaddress
        import re
        from urllib.parse import urlsplit

        def is_http(url: str) -> bool:
            try:
                parts = urlsplit(url)
                return parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:  # "http://[::1": an unclosed IPv6 host
                return False

        for key in ("seeds", "sitemaps"):
            for url in getattr(self, key):
                if not is_http(url):
                    # a ConfigError naming its full key, as the crawler's own check (which callers catch)
                    raise ConfigError(
                        f"collector.{key}={shown(getattr(self, key))}: {url!r} is not an http(s) URL with a host; "
                        f"e.g. collector.{key}=[https://docs.python.org/3/]"
                    )
        check_count(self, "max_depth", 0, 5, optional=True)
        check_count(self, "max_pages", 1, 1000, optional=True)
        check_count(self, "max_bytes", 1, 100_000_000, optional=True)
        if not self.delay >= 0:
            raise bad_value("delay", self.delay, "seconds between requests to a host, must be 0 or more", 1.0)
        check_count(self, "concurrency", 1, 8)
        if not self.user_agent.strip():
            raise bad_value("user_agent", self.user_agent, "must not be empty: robots.txt rules match its first word", USER_AGENT)
        for key, example in (("connect_timeout", 10.0), ("read_timeout", 30.0), ("fetch_timeout", 120.0)):
            if not getattr(self, key) > 0:
                raise bad_value(key, getattr(self, key), "seconds, must be above 0", example)
        check_count(self, "max_body_bytes", 1, 10_000_000)
        check_count(self, "max_extract_bytes", 1, 1_000_000, optional=True)
        check_count(self, "max_retries", 0, 3)
        if not self.backoff >= 0:
            raise bad_value("backoff", self.backoff, "seconds before the first retry, must be 0 or more", 1.0)
        if not self.max_backoff >= self.backoff:
            raise bad_value("max_backoff", self.max_backoff, f"must be at least backoff={shown(self.backoff)}", max(60.0, self.backoff))
        check_count(self, "max_redirects", 0, 5)
        for key in ("allow", "deny"):
            for pattern in getattr(self, key):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{key}: {pattern!r} is not a valid regular expression ({exc}); e.g. {key}=[/docs/]") from None
        for net in self.allow_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_networks: {exc}; use CIDR notation such as 127.0.0.0/8") from None
        if self.warc_path is not None and not self.warc_path.strip():
            raise bad_value("warc_path", self.warc_path, "a file to append responses to, or null for none", "crawl.warc.gz")


class Web(Collector):
    """Crawls the web; its order is not repeatable, so it resumes from its own state.

    ``resumable``: the stage runner must not skip already-stored documents on a rerun
    (this collector never yields them again), and calls ``checkpoint`` once the
    documents yielded so far are stored.
    """

    name = "web"
    Config = WebConfig
    resumable: ClassVar[bool] = True

    def __init__(self, config: WebConfig | None = None) -> None:
        super().__init__(config)
        self._crawler = None

    def documents(self, workdir: Path, stats: Counter) -> Iterator[Document]:
        from lmforge.plugins.collectors._crawler import Crawler

        self._crawler = Crawler(self.config, Path(workdir), stats)  # checks the config now
        return self._crawler.run()

    def checkpoint(self) -> None:
        """Persist the crawl state as of the last document yielded (all of them stored)."""
        if self._crawler is not None:
            self._crawler.checkpoint()


@hookimpl
def register_collectors(register):
    register(Web)
