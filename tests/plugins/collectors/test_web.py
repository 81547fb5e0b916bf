"""collector=web against a local site (tests/plugins/collectors/_site.py) on 127.0.0.1.

An autouse guard fails any test whose process tries to connect anywhere but 127.0.0.1,
so a refused address is proven refused without connecting.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lmforge.plugins.collectors.web import Web, WebConfig
from lmforge.testing import CollectorContract

from _site import BINARIES, COPIES, PAGES, Site

LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            raise AssertionError(f"the crawler tried to connect to {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def site():
    with Site() as s:
        yield s


def config(site: Site, *paths: str, **overrides) -> WebConfig:
    # the site serves /sitemap.xml for the sitemap tests; the probe for it has tests of its own
    values = dict(seeds=[site.url(p) for p in paths], allow_networks=LOOPBACK, delay=0.0, concurrency=4, probe_sitemap=False)
    return WebConfig(**{**values, **overrides})


def crawl(cfg: WebConfig, workdir: Path) -> tuple[list, Counter]:
    stats: Counter = Counter()
    return list(Web(cfg).documents(workdir, stats)), stats


def path(doc) -> str:
    parts = urlsplit(doc.id)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class TestWebContract(CollectorContract):
    component = Web

    @pytest.fixture(autouse=True)
    def _site(self, site):
        self.config = config(site, "/", concurrency=1, max_pages=8)


def test_a_full_crawl_stores_each_page_once_and_fetches_nothing_it_should_not(site, tmp_path):
    docs, stats = crawl(config(site, "/"), tmp_path)
    stored = sorted(path(d) for d in docs)
    copies = [p for p in stored if p in COPIES]
    assert len(copies) == 1 and sorted(set(stored) - set(copies)) == sorted(PAGES)
    assert site.count("/private/secret") == 0, "robots.txt disallows /private/"
    assert site.count("/offsite") == 0 and site.count("/outside") == 0
    assert site.count("/dup") == 1, "?a=1&b=2 and ?b=2&a=1#top are one URL"
    assert all(site.count(p) == 1 for p in PAGES + COPIES + BINARIES + ["/robots.txt"])
    assert stats == Counter({"skipped:content_type": 2, "skipped:robots": 1, "skipped:duplicate_content": 1})


def test_documents_carry_provenance(site, tmp_path):
    docs, _ = crawl(config(site, "/docs/1", max_depth=0), tmp_path)
    (doc,) = docs
    assert doc.id == doc.uri == site.url("/docs/1") and doc.source == "web" and doc.license == ""
    assert doc.meta["title"] == "Document 1" and doc.meta["status"] == 200 and doc.meta["depth"] == 0
    assert doc.meta["content_type"] == "text/html" and doc.meta["fetched_at"] and "date" in doc.meta
    assert "<p>" not in doc.text and len(doc.text) > 1000


def test_charsets_from_a_bom_a_lying_header_or_no_label_at_all(site, tmp_path):
    docs, _ = crawl(config(site, "/latin1", "/cp1252", "/bom", "/notes.txt", max_depth=0), tmp_path)
    text = {path(d): d.text for d in docs}
    assert "café" in text["/latin1"] and "naïve" in text["/latin1"] and "garçon" in text["/latin1"]
    assert "“quotes”" in text["/cp1252"] and "…" in text["/cp1252"]
    assert "naïve café" in text["/bom"] and not text["/bom"].startswith("\ufeff")
    assert text["/notes.txt"].startswith(text["/notes.txt"].strip()[:20])


def test_a_sitemap_index_and_a_gzipped_sitemap_give_their_pages(site, tmp_path):
    cfg = config(site, sitemaps=[site.url("/sitemap.xml")], max_depth=0)
    docs, _ = crawl(cfg, tmp_path)
    assert sorted(path(d) for d in docs) == ["/docs/1", "/orphan"]
    assert sorted(site.paths()) == ["/docs/1", "/orphan", "/robots.txt", "/sitemap-pages.xml.gz", "/sitemap.xml"]


@pytest.mark.parametrize(
    "overrides,fetched,not_fetched",
    [
        ({"max_depth": 1}, ["/", "/docs/3"], ["/deep/1"]),
        ({"deny": [r"/docs/[2-8]$"]}, ["/", "/docs/1"], ["/docs/2", "/deep/1"]),
        ({"allow": [r"/$", r"/docs/1$"]}, ["/", "/docs/1"], ["/docs/2", "/notes.txt"]),
        ({"respect_robots": False}, ["/private/secret"], []),
    ],
)
def test_scope_depth_and_robots_options(site, tmp_path, overrides, fetched, not_fetched):
    crawl(config(site, "/", **overrides), tmp_path)
    assert all(site.count(p) == 1 for p in fetched)
    assert not any(site.count(p) for p in not_fetched)


def test_max_pages_and_max_bytes_stop_the_crawl(site, tmp_path):
    docs, _ = crawl(config(site, "/", max_pages=3), tmp_path / "a")
    assert len([p for p in site.paths() if p != "/robots.txt"]) == 3 and len(docs) <= 3
    before = len(site.paths())
    docs, _ = crawl(config(site, "/", max_bytes=1, concurrency=1), tmp_path / "b")
    assert len(site.paths()) - before == 2 and len(docs) == 1  # robots.txt and the first page


def test_redirects_in_scope_are_followed_and_the_rest_are_not(site, tmp_path):
    traps = ["/trap/redirect-in", "/trap/redirect-out", "/trap/redirect-private", "/trap/redirect-file",
             "/trap/loop-a", "/trap/chain/8"]
    docs, stats = crawl(config(site, *traps, max_depth=0, max_redirects=3), tmp_path)
    (doc,) = docs
    assert doc.uri == site.url("/redirected-target") and doc.meta["redirected_from"] == site.url("/trap/redirect-in")
    assert site.count("/outside") == 0
    assert [site.count(f"/trap/chain/{i}") for i in range(9)] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert site.count("/trap/loop-a") == site.count("/trap/loop-b") == 1
    assert stats == Counter({"skipped:redirect_out_of_scope": 2, "skipped:redirect_scheme": 1,
                             "skipped:redirect_loop": 1, "skipped:too_many_redirects": 1})


def test_private_addresses_are_refused_after_a_redirect_even_off_host(site, tmp_path):
    cfg = config(site, "/trap/redirect-private", "/trap/redirect-file", same_host=False, max_depth=0)
    docs, stats = crawl(cfg, tmp_path)  # the guard fails the test on any connect to 10.0.0.1
    assert docs == []
    assert stats == Counter({"skipped:private_address": 1, "skipped:redirect_scheme": 1})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_unless_allowed(site, tmp_path, host):
    docs, stats = crawl(WebConfig(seeds=[site.url("/", host)], delay=0.0), tmp_path)
    assert docs == [] and stats == Counter({"skipped:private_address": 1}) and site.paths() == []


def test_errors_are_counted_and_5xx_retried_a_bounded_number_of_times(site, tmp_path):
    cfg = config(site, "/trap/404", "/trap/500", max_depth=0, max_retries=2, backoff=0.01)
    docs, stats = crawl(cfg, tmp_path)
    assert docs == [] and site.count("/trap/404") == 1 and site.count("/trap/500") == 3
    assert stats == Counter({"skipped:status_404": 1, "skipped:status_500": 1})


def test_429_waits_for_retry_after_then_stores_the_page(site, tmp_path):
    docs, _ = crawl(config(site, "/trap/429", max_depth=0, backoff=0.01), tmp_path)
    first, second = site.times("/trap/429")
    assert len(docs) == 1 and second - first >= 0.95


def test_a_slow_page_times_out(site, tmp_path):
    start = time.monotonic()
    docs, stats = crawl(config(site, "/trap/slow", max_depth=0, read_timeout=0.3), tmp_path)
    assert docs == [] and stats == Counter({"skipped:timeout": 1}) and time.monotonic() - start < 0.9


def test_oversized_pages_and_a_gzip_bomb_are_cut_at_the_cap(site, tmp_path):
    cfg = config(site, "/trap/big", "/trap/big-chunked", "/trap/bomb", max_depth=0, max_body_bytes=1 << 20)
    start = time.monotonic()
    docs, stats = crawl(cfg, tmp_path)
    assert docs == [] and stats == Counter({"skipped:too_large": 3}) and time.monotonic() - start < 2


def test_the_extractor_reads_at_most_max_extract_bytes_of_markup(site, tmp_path):
    """trafilatura takes seconds per MB of dense markup and cannot be interrupted: it gets a prefix."""
    docs, stats = crawl(config(site, "/trap/dense", "/docs/1", max_depth=0, max_extract_bytes=20_000), tmp_path)
    dense = next(d for d in docs if path(d) == "/trap/dense")
    assert stats == Counter({"truncated:extract_too_large": 1}) and len(docs) == 2
    assert dense.text.startswith("Line 0 of a dense page.") and "Line 9999 " not in dense.text
    assert 0 < len(dense.text.encode()) < 20_000


def test_max_extract_bytes_has_a_default_and_refuses_nonsense():
    assert WebConfig().max_extract_bytes == 1_000_000
    with pytest.raises(ValueError, match="max_extract_bytes"):
        WebConfig(max_extract_bytes=0)


def test_the_decompressed_body_never_grows_past_the_cap():
    from lmforge.plugins.collectors._crawl_fetch import Skip, decoder_for, read_capped

    bomb = gzip.compress(b"\0" * (50 << 20))
    raw = io.BytesIO(bomb)
    with pytest.raises(Skip, match="too_large"):
        read_capped(iter(lambda: raw.read(1024), b""), decoder_for("gzip"), 1 << 20, time.monotonic() + 10)
    assert raw.tell() < len(bomb) // 10, "the bomb was inflated past the cap"
    assert read_capped([gzip.compress(b"hello")], decoder_for("gzip"), 5, time.monotonic() + 10) == b"hello"


@pytest.mark.parametrize("overrides", [{"user_agent": "slowbot/1.0"}, {"delay": 0.2}])
def test_crawl_delay_and_the_per_host_delay_space_requests(site, tmp_path, overrides):
    crawl(config(site, "/docs/1", "/docs/2", max_depth=0, **overrides), tmp_path)
    times = [site.times(p)[0] for p in ("/robots.txt", "/docs/1", "/docs/2")]
    assert all(later - earlier >= 0.19 for earlier, later in zip(times, times[1:])), times


def test_a_seed_hosts_sitemap_xml_is_probed_when_robots_txt_names_none(site, tmp_path):
    """The site's robots.txt has no Sitemap line; its /sitemap.xml lists /orphan, linked from nowhere."""
    assert WebConfig().probe_sitemap is True
    docs, stats = crawl(config(site, "/docs/2", max_depth=0, probe_sitemap=True), tmp_path)
    assert sorted(path(d) for d in docs) == ["/docs/1", "/docs/2", "/orphan"]
    assert site.count("/sitemap.xml") == 1 and site.count("/robots.txt") == 1 and not stats
    site.requests.clear()
    docs, _ = crawl(config(site, "/docs/2", max_depth=0, probe_sitemap=False), tmp_path / "off")
    assert [path(d) for d in docs] == ["/docs/2"] and site.count("/sitemap.xml") == 0


def test_the_probe_obeys_robots_txt_and_prefers_the_sitemaps_it_names(tmp_path):
    with Site(robots=b"User-agent: *\nDisallow: /sitemap\n") as site:
        docs, stats = crawl(config(site, "/docs/2", max_depth=0, probe_sitemap=True), tmp_path / "a")
        assert [path(d) for d in docs] == ["/docs/2"] and site.count("/sitemap.xml") == 0 and not stats
    with Site(robots=b"User-agent: *\nDisallow:\n\nSitemap: /sitemap-pages.xml.gz\n") as site:
        robots = f"User-agent: *\nDisallow:\n\nSitemap: {site.url('/sitemap-pages.xml.gz')}\n"
        robots += "Sitemap: https://elsewhere.example/sitemap.xml\n"  # another host: never read
        site.robots = robots.encode()
        docs, _ = crawl(config(site, "/docs/2", max_depth=0, probe_sitemap=True), tmp_path / "b")
        assert sorted(path(d) for d in docs) == ["/docs/1", "/docs/2", "/orphan"]
        assert site.count("/sitemap.xml") == 0 and site.count("/sitemap-pages.xml.gz") == 1


def test_requests_carry_no_cookies_or_credentials_and_name_lmforge(site, tmp_path):
    seen = []
    respond = site.respond
    site.respond = lambda h: (seen.append(dict(h.headers)), respond(h))[1]
    cfg = config(site, max_depth=0)
    cfg.seeds = [site.url("/docs/1").replace("http://", "http://user:secret@")]
    docs, _ = crawl(cfg, tmp_path)
    assert docs and docs[0].uri == site.url("/docs/1")
    for headers in seen:
        assert not {"Cookie", "Authorization"} & set(headers) and headers["User-Agent"].startswith("lmforge")


def test_an_interrupted_crawl_resumes_without_refetching_stored_pages(site, tmp_path):
    cfg = config(site, "/", concurrency=2)
    web, stored = Web(cfg), []
    docs = web.documents(tmp_path, Counter())
    for doc in docs:
        stored.append(doc)
        if len(stored) == 6:
            web.checkpoint()  # the stage runner has written these six to a shard
        if len(stored) == 9:
            break  # a crash: the last three were yielded but never stored
    docs.close()
    lost, stored = stored[6:], stored[:6]
    fetched_before = Counter(site.paths())
    again = Web(cfg)
    stats: Counter = Counter()
    rest = list(again.documents(tmp_path, stats))
    refetched = Counter(site.paths()) - fetched_before
    assert not any(refetched[path(d)] for d in stored), "a stored page was fetched again"
    assert all(refetched[path(d)] == 1 for d in lost)
    ids = [path(d) for d in stored + rest]
    assert len(ids) == len(set(ids))
    copies = [p for p in ids if p in COPIES]
    assert len(copies) == 1 and sorted(set(ids) - set(copies)) == sorted(PAGES)
    assert stats["skipped:robots"] == 1 and stats["skipped:content_type"] == 2


def test_raw_responses_go_to_a_warc_file(site, tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    warc = tmp_path / "out" / "crawl.warc.gz"
    crawl(config(site, "/docs/1", "/notes.txt", max_depth=0, warc_path=str(warc)), tmp_path)
    with open(warc, "rb") as f:
        records = [(r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read()) for r in ArchiveIterator(f)]
    assert sorted(uri for uri, _ in records) == [site.url("/docs/1"), site.url("/notes.txt")]
    assert all(body for _, body in records)


def test_a_config_without_seeds_is_a_clear_error(tmp_path):
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="collector.seeds"):
        Web(WebConfig()).documents(tmp_path, Counter())
    with pytest.raises(ConfigError, match="not an http"):
        Web(WebConfig(seeds=["file:///etc/passwd"])).documents(tmp_path, Counter())


def test_lmforge_train_on_a_crawled_site(site, tmp_path):
    from support import TINY, lmforge

    overrides = [o for o in TINY if not o.startswith("collector.")]
    lmforge(
        "train", "collector=web", f"collector.seeds=['{site.url('/')}']", "collector.allow_networks=['127.0.0.0/8']",
        "collector.delay=0", "collector.probe_sitemap=false", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["components"]["collector"] == "web"
    assert manifest["data"]["collect"]["documents"] == len(PAGES) + 1  # and one of the two copies
    assert manifest["data"]["collect"]["counts"]["skipped:robots"] == 1
    assert site.count("/private/secret") == 0


def test_a_crawl_killed_inside_the_stage_runner_resumes_from_its_last_shard(site, tmp_path):
    """The real resume path: collect() writes a shard per page and checkpoints the crawler."""
    from lmforge.stages.collect import collect
    from lmforge.stages.shards import read_documents, shard_paths

    cfg = config(site, "/", concurrency=2)

    class Killed(Web):
        def documents(self, workdir, stats):
            for i, doc in enumerate(super().documents(workdir, stats)):
                if i == 7:
                    raise KeyboardInterrupt("killed")
                yield doc

    with pytest.raises(KeyboardInterrupt):
        collect(Killed(cfg), tmp_path, shard_bytes=1)  # one shard, and one checkpoint, per page
    stored = [path(d) for d in read_documents(shard_paths(tmp_path))]
    before = Counter(site.paths())
    report = collect(Web(cfg), tmp_path, shard_bytes=1)
    refetched = Counter(site.paths()) - before
    assert len(stored) == 7 and not any(refetched[p] for p in stored), "a stored page was fetched again"
    ids = [path(d) for d in read_documents(shard_paths(tmp_path))]
    assert len(ids) == len(set(ids)) and ids[:7] == stored
    copies = [p for p in ids if p in COPIES]
    assert len(copies) == 1 and sorted(set(ids) - set(copies)) == sorted(PAGES)
    assert report["counts"]["skipped:robots"] == 1 and report["counts"]["skipped:content_type"] == 2


def test_bad_options_fail_when_the_config_is_checked():
    with pytest.raises(ValueError, match="allow_networks: .*CIDR"):
        WebConfig(allow_networks=["127.0.0.0/33"])
    with pytest.raises(ValueError, match="deny: '\\(' is not a valid regular expression"):
        WebConfig(deny=["("])
    with pytest.raises(ValueError, match="concurrency"):
        WebConfig(concurrency=0)
