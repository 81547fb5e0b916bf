"""The crawl loop of ``collector=web``: frontier, politeness, resume state, documents.

Threads: the generator (the caller's thread) owns every piece of crawl state: the
frontier, the seen set, the content hashes, the counts. Worker threads only fetch and
read one URL each and hand back an ``Outcome``; the generator settles outcomes one at a
time, enqueuing links before it yields the page's document. So whenever the generator is
suspended at a ``yield``, its state is exactly "everything up to the document just
yielded", and that is what ``checkpoint`` saves: tasks still in flight go back to the
frontier, to be fetched again after a resume.

Politeness: at most one request in flight per host, and a host is free again
``max(delay, Crawl-delay)`` seconds after its last response.
"""

from __future__ import annotations

import hashlib
import http
import io
import json
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from lmforge.contracts import Document
from lmforge.errors import ConfigError
from lmforge.files import atomic_write
from lmforge.plugins.collectors._crawl_fetch import Fetcher, Response, Skip
from lmforge.plugins.collectors._crawl_text import (
    HTML_TYPES,
    SITEMAP_TYPES,
    TEXT_TYPES,
    Page,
    decode,
    read_html,
    read_sitemap,
    sniff_html,
)
from lmforge.plugins.collectors._crawl_url import Scope, clean, host_of, normalize, origin_of

log = logging.getLogger("lmforge")

STATE_FILE = "crawl-state.json"
ROBOTS_REDIRECTS = 5  # RFC 9309: follow at least five
NOT_COUNTED = {"interrupted"}
REFUSED = {"interrupted", "private_address", "dns", "scheme", "bad_url"}


@dataclass
class Task:
    url: str  # as fetched: cleaned, not normalized
    depth: int
    kind: str = "page"  # or "sitemap", or "probe": a seed host's robots.txt sitemaps, else its /sitemap.xml
    chain: list[str] = field(default_factory=list)  # normalized URLs that redirected here


@dataclass
class Outcome:
    task: Task
    requests: int = 0
    finished: float = 0.0
    crawl_delay: float = 0.0
    skip: str | None = None
    location: str | None = None
    links: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    doc: Document | None = None
    digest: str = ""
    response: Response | None = None
    truncated: bool = False  # the extractor read only the first max_extract_bytes


class Crawler:
    def __init__(self, config, workdir: Path, stats: Counter) -> None:
        self.config = config
        self.stats = stats
        self.state_path = Path(workdir) / STATE_FILE
        self.agent = config.user_agent.split("/")[0].strip() or config.user_agent
        self.stop = threading.Event()
        self.frontier: OrderedDict[str, deque[Task]] = OrderedDict()
        self.in_flight: dict[Future, Task] = {}
        self.busy: set[str] = set()
        self.ready_at: dict[str, float] = {}
        self.seen: set[str] = set()
        self.hashes: set[str] = set()
        self.pages = self.nbytes = 0
        self._robots: dict[str, RobotFileParser] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.scope = self._scope()
        self.seed_hosts = {host_of(url) for url in config.seeds}
        if self.state_path.exists():
            self._restore()
        else:
            for url in config.sitemaps:
                self._enqueue(url, 0, "sitemap")
            if config.probe_sitemap:
                for origin in dict.fromkeys(origin_of(clean(url)) for url in config.seeds):
                    self._enqueue(f"{origin}/sitemap.xml", 0, "probe")
            for url in config.seeds:
                self._enqueue(url, 0, "page")

    def _scope(self) -> Scope:
        cfg = self.config
        if not cfg.seeds and not cfg.sitemaps:
            raise ConfigError("collector=web has nothing to crawl: set collector.seeds=[https://...] or collector.sitemaps")
        for key in ("seeds", "sitemaps"):
            for url in getattr(cfg, key):
                if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                    raise ConfigError(f"collector.{key}: {url!r} is not an http(s) URL with a host")
        if cfg.concurrency < 1:
            raise ConfigError(f"collector.concurrency must be at least 1, got {cfg.concurrency}")
        hosts = {host_of(u) for u in [*cfg.seeds, *cfg.sitemaps]} if cfg.same_host else None
        try:
            return Scope(hosts, list(cfg.allow), list(cfg.deny))
        except Exception as e:  # re.error
            raise ConfigError(f"collector.allow / collector.deny: bad regular expression: {e}") from None

    # -- state -------------------------------------------------------------------------

    def _enqueue(self, url: str, depth: int, kind: str, chain: list[str] | None = None) -> str | None:
        """Add a URL to the frontier; returns why it was not added, or None."""
        try:
            url = clean(url)
            key = normalize(url, self.config.sort_query)
        except ValueError:
            return "bad_url"
        if url not in self.scope:
            return "scheme" if urlsplit(url).scheme not in ("http", "https") else "out_of_scope"
        if key in self.seen:
            return "duplicate_url"
        self.seen.add(key)
        self.frontier.setdefault(host_of(url), deque()).append(Task(url, depth, kind, chain or []))
        return None

    def checkpoint(self) -> None:
        """Save the state as of the last document yielded, atomically and durably."""
        tasks = list(self.in_flight.values()) + [t for queue in self.frontier.values() for t in queue]
        state = {
            "version": 1,
            "frontier": [asdict(t) for t in tasks],
            "seen": sorted(self.seen),
            "hashes": sorted(self.hashes),
            "pages": self.pages,
            "bytes": self.nbytes,
        }
        atomic_write(self.state_path, json.dumps(state))

    def _restore(self) -> None:
        state = json.loads(self.state_path.read_text(encoding="utf-8"))
        for t in state["frontier"]:
            task = Task(**t)
            self.frontier.setdefault(host_of(task.url), deque()).append(task)
        self.seen = set(state["seen"])
        self.hashes = set(state["hashes"])
        self.pages, self.nbytes = state["pages"], state["bytes"]
        # the skip counts are not restored here: the stage runner keeps them with each shard
        log.info("web: resuming a crawl with %d URLs in the frontier, %d pages fetched", len(state["frontier"]), self.pages)

    # -- scheduling --------------------------------------------------------------------

    def _budget_left(self) -> bool:
        cfg = self.config
        pending = sum(t.kind == "page" for t in self.in_flight.values())
        if cfg.max_pages is not None and self.pages + pending >= cfg.max_pages:
            return False
        return cfg.max_bytes is None or self.nbytes < cfg.max_bytes

    def _pick(self) -> Task | None:
        """The next task of a free host, round-robin over hosts."""
        now = time.monotonic()
        for host in list(self.frontier):
            if host in self.busy or self.ready_at.get(host, 0.0) > now:
                continue
            queue = self.frontier[host]
            task = queue.popleft()
            if queue:
                self.frontier.move_to_end(host)
            else:
                del self.frontier[host]
            return task
        return None

    def _next_ready_in(self) -> float | None:
        """Seconds until some host with work is free; None when no more work may start."""
        if not self._budget_left():
            return None
        waiting = [self.ready_at.get(h, 0.0) for h in self.frontier if h not in self.busy]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else None

    def run(self) -> Iterator[Document]:
        self.fetcher = Fetcher(self.config, self.stop)
        warc = _Warc(self.config.warc_path) if self.config.warc_path else None
        pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="lmforge-web")
        try:
            while True:
                while len(self.in_flight) < self.config.concurrency and self._budget_left():
                    task = self._pick()
                    if task is None:
                        break
                    self.busy.add(host_of(task.url))
                    self.in_flight[pool.submit(self._work, task)] = task
                timeout = self._next_ready_in() if len(self.in_flight) < self.config.concurrency else None
                if not self.in_flight:
                    if timeout is None:
                        break
                    self.stop.wait(timeout)
                    continue
                done, _ = wait(list(self.in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
                for future in [f for f in self.in_flight if f in done]:  # in submission order
                    del self.in_flight[future]
                    outcome = future.result()
                    if warc and outcome.response is not None:
                        warc.write(outcome.response)
                    doc = self._settle(outcome)
                    if doc is not None:
                        yield doc
        finally:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            if warc:
                warc.close()

    def _settle(self, out: Outcome) -> Document | None:
        """Fold one outcome into the state; returns its document if it is a new one."""
        cfg, task = self.config, out.task
        host = host_of(task.url)
        self.busy.discard(host)
        self.ready_at[host] = out.finished + max(cfg.delay, out.crawl_delay)
        self.pages += task.kind == "page" and out.requests > 0
        self.nbytes += len(out.response.body) if out.response is not None else 0
        if out.location is not None:
            self._redirect(task, out.location)
        if task.kind == "probe":  # only sitemaps of the seeds' own hosts, whatever same_host says
            out.sitemaps = [url for url in out.sitemaps if _host_or_none(url) in self.seed_hosts]
        if task.kind in ("sitemap", "probe"):
            for url in out.links:
                self._enqueue(url, 0, "page")
            for url in out.sitemaps:
                self._enqueue(url, 0, "sitemap")
        elif cfg.max_depth is None or task.depth < cfg.max_depth:
            for url in out.links:
                self._enqueue(url, task.depth + 1, "page")
        if out.skip and out.skip not in NOT_COUNTED:
            self.stats[f"skipped:{out.skip}"] += 1
        if out.truncated:
            self.stats["truncated:extract_too_large"] += 1
        if out.doc is None:
            return None
        if out.digest in self.hashes:
            self.stats["skipped:duplicate_content"] += 1
            return None
        self.hashes.add(out.digest)
        return out.doc

    def _redirect(self, task: Task, location: str) -> None:
        target = urljoin(task.url, location)
        chain = [*task.chain, normalize(task.url, self.config.sort_query)]
        try:
            looped = normalize(target, self.config.sort_query) in chain
        except ValueError:
            looped = False
        if looped:
            self.stats["skipped:redirect_loop"] += 1
        elif len(chain) > self.config.max_redirects:
            self.stats["skipped:too_many_redirects"] += 1
        elif task.kind == "probe":  # a probed /sitemap.xml that moved: a sitemap, on a seed's host only
            if _host_or_none(target) in self.seed_hosts:
                self._enqueue(target, task.depth, "sitemap", chain)
        else:
            reason = self._enqueue(target, task.depth, task.kind, chain)
            if reason in ("scheme", "out_of_scope", "bad_url"):
                self.stats[f"skipped:redirect_{reason}"] += 1

    # -- work (in worker threads) ------------------------------------------------------

    def _work(self, task: Task) -> Outcome:
        out = Outcome(task)
        if task.kind == "probe":
            return self._probe(out)
        try:
            if self.config.respect_robots:
                rules, requests = self._rules(task.url)
                out.crawl_delay = rules.delay
                if not rules.can_fetch(self.config.user_agent, task.url):
                    raise Skip("robots")
                if requests:  # robots.txt was a request to this host too
                    self.stop.wait(max(self.config.delay, out.crawl_delay))
            if task.kind == "sitemap":
                resp = self._get(out, task.url, lambda m: m in SITEMAP_TYPES or m.endswith("+xml"))
                if resp.location is None:
                    out.links, out.sitemaps = read_sitemap(resp.body, self.config.max_body_bytes)
            else:
                resp = self._get(out, task.url, lambda m: m in HTML_TYPES or m in TEXT_TYPES or m == "")
                if resp.location is None:
                    self._read_page(out, resp)
            out.location = resp.location
        except Skip as e:
            out.skip = e.reason
        except Exception as e:  # a page that breaks the extractor must not stop the crawl
            log.warning("web: %s failed: %r", task.url, e)
            out.skip = "error"
        out.finished = time.monotonic()
        return out

    def _probe(self, out: Outcome) -> Outcome:
        """A seed host's sitemaps: those its robots.txt names, else its /sitemap.xml if any.

        Nothing here is counted as a skip: a site without a sitemap is the common case.
        """
        url = out.task.url
        try:
            if self.config.respect_robots:
                rules, requests = self._rules(url)
                out.crawl_delay = rules.delay
                if named := rules.site_maps():
                    out.sitemaps = named
                    return out
                if not rules.can_fetch(self.config.user_agent, url):
                    return out
                if requests:
                    self.stop.wait(max(self.config.delay, out.crawl_delay))
            resp = self._get(out, url, lambda m: m in SITEMAP_TYPES or m.endswith("+xml"))
            if resp.location is None:
                out.links, out.sitemaps = read_sitemap(resp.body, self.config.max_body_bytes)
            out.location = resp.location
        except Skip:
            pass
        except Exception as e:
            log.warning("web: reading %s failed: %r", url, e)
        finally:
            out.finished = time.monotonic()
        return out

    def _get(self, out: Outcome, url: str, wants) -> Response:
        try:
            resp = self.fetcher.get(url, wants)
        except Skip as e:
            out.requests += e.requests
            raise
        out.requests += resp.requests
        if resp.location is None:
            out.response = resp
        return resp

    def _rules(self, url: str) -> tuple[RobotFileParser, int]:
        """The robots.txt rules of the URL's origin, fetched once; and the requests it took."""
        origin = origin_of(url)
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:
            if origin in self._robots:
                return self._robots[origin], 0
            rules, requests, target = RobotFileParser(), 0, f"{origin}/robots.txt"
            rules.delay = 0.0
            try:
                for _ in range(ROBOTS_REDIRECTS + 1):
                    try:
                        resp = self.fetcher.get(target, lambda m: True)
                    except Skip as e:
                        requests += e.requests
                        raise
                    requests += resp.requests
                    if resp.location is None:
                        lines = decode(resp.body, resp.charset, html=False).splitlines()
                        rules.parse(lines)
                        rules.delay = crawl_delay(lines, self.agent)
                        break
                    target = urljoin(target, resp.location)
                else:
                    rules.allow_all = True  # RFC 9309: too many redirects counts as unavailable
            except Skip as e:
                if e.reason in REFUSED:  # the host itself is refused: so is every page on it
                    raise
                # RFC 9309: a 4xx means no rules; an unreachable robots.txt means no access
                # (429 is the server asking to slow down: treated as unavailable, as Google does)
                if (e.reason.startswith("status_4") and e.reason != "status_429") or e.reason in ("content_type", "too_large"):
                    rules.allow_all = True
                else:
                    rules.disallow_all = True
            rules.modified()
            self._robots[origin] = rules
            return rules, requests

    def _read_page(self, out: Outcome, resp: Response) -> None:
        mime = resp.mime or ("text/html" if sniff_html(resp.body) else "")
        if not mime:
            if b"\x00" in resp.body[:4096]:
                raise Skip("content_type", "none")
            mime = "text/plain"
        html = mime in HTML_TYPES
        text = decode(resp.body, resp.charset, html)
        if html:
            page = read_html(text, resp.url, self.agent, self.config.max_extract_bytes)
            out.truncated = page.truncated
        else:
            page = Page(text=text)
        directives = {d.strip().lower() for d in resp.headers.get("x-robots-tag", "").split(",")}
        if directives & {"nofollow", "none"}:
            page.follow, page.links = False, []
        out.links = page.links
        if not page.index or directives & {"noindex", "none"}:
            raise Skip("noindex")
        if not page.text.strip():
            raise Skip("no_text")
        meta = {
            "title": page.title,
            "date": page.date or _http_date(resp.headers.get("last-modified")),
            "status": resp.status,
            "content_type": mime,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "depth": out.task.depth,
        }
        if out.task.chain:
            meta["redirected_from"] = out.task.chain[0]
        out.digest = hashlib.sha256(" ".join(page.text.split()).encode("utf-8")).hexdigest()
        out.doc = Document(
            id=normalize(resp.url, self.config.sort_query), text=page.text, source="web", uri=resp.url, license="", meta=meta
        )


def crawl_delay(lines: list[str], agent: str) -> float:
    """The Crawl-delay for ``agent``, in seconds, fractions allowed (robotparser takes integers only).

    Groups are matched as robotparser matches them: a group naming the agent wins over ``*``.
    """
    groups: list[tuple[list[str], float]] = []
    agents: list[str] = []
    in_rules = False
    for line in lines:
        key, _, value = line.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if in_rules:
                agents, in_rules = [], False
            agents.append(value.lower())
            if len(agents) == 1:
                groups.append((agents, 0.0))
        elif key and agents:
            in_rules = True
            if key == "crawl-delay":
                try:
                    groups[-1] = (agents, max(0.0, float(value)))
                except ValueError:
                    pass
    name = agent.lower()
    for names, delay in groups:
        if any(n != "*" and n in name for n in names):
            return delay
    return next((delay for names, delay in groups if "*" in names), 0.0)


def _host_or_none(url: str) -> str | None:
    try:
        return host_of(url)
    except ValueError:  # a malformed URL, such as an unclosed IPv6 bracket
        return None


def _http_date(value: str | None) -> str:
    try:
        return parsedate_to_datetime(value).date().isoformat() if value else ""
    except (TypeError, ValueError):
        return ""


class _Warc:
    """Raw responses, appended as gzipped WARC records (a resumed crawl appends again)."""

    def __init__(self, path: str) -> None:
        from warcio.warcwriter import WARCWriter

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab")
        self.writer = WARCWriter(self.file, gzip=True)

    def write(self, resp: Response) -> None:
        from warcio.statusandheaders import StatusAndHeaders

        # the body is stored decoded, so the transfer headers that described it are replaced
        drop = {"content-encoding", "content-length", "transfer-encoding"}
        headers = [(k, v) for k, v in resp.headers.items() if k not in drop]
        headers.append(("content-length", str(len(resp.body))))
        try:
            phrase = http.HTTPStatus(resp.status).phrase
        except ValueError:
            phrase = ""
        status = StatusAndHeaders(f"{resp.status} {phrase}".strip(), headers, protocol="HTTP/1.1")
        record = self.writer.create_warc_record(resp.url, "response", payload=io.BytesIO(resp.body), http_headers=status)
        self.writer.write_record(record)

    def close(self) -> None:
        self.file.close()
