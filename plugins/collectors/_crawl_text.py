"""From response bytes to text for ``collector=web``: charset, main text, links, sitemaps."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin

from lmforge.plugins.collectors._decode import codec
from lmforge.plugins.collectors._decode import decode as decode_bytes

HTML_TYPES = {"text/html", "application/xhtml+xml"}
TEXT_TYPES = {"text/plain"}
SITEMAP_TYPES = {"application/xml", "text/xml", "application/gzip", "application/x-gzip", "text/plain", ""}

META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([-\w.:]+)""", re.I)
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def decode(body: bytes, header_charset: str | None, html: bool) -> str:
    """Bytes to text: a BOM wins, then the header's charset, then the meta tag, then detection.

    A declared charset the bytes do not decode under is ignored rather than trusted; bytes
    no encoding fits are read as windows-1252, replacing what it cannot map.
    """
    declared = [header_charset]
    if html:
        found = META_CHARSET.search(body[:4096])
        meta = codec(found.group(1).decode("ascii", "replace")) if found else None
        # a meta tag read in ASCII cannot truthfully say UTF-16 (WHATWG: read it as UTF-8)
        declared.append("utf-8" if meta and meta.startswith("utf_16") else meta)
    text = decode_bytes(body, declared)
    return text if text is not None else body.decode("cp1252", errors="replace")


def sniff_html(body: bytes) -> bool:
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


@dataclass
class Page:
    text: str
    title: str = ""
    date: str = ""
    links: list[str] = field(default_factory=list)
    index: bool = True  # meta robots noindex says False
    follow: bool = True  # meta robots nofollow says False
    truncated: bool = False  # only the first max_extract_bytes of markup went to the extractor


def read_html(html: str, url: str, agent: str, max_extract_bytes: int | None = None) -> Page:
    """Main text, title and date through trafilatura; links and meta robots through lxml.

    trafilatura's time grows faster than the markup (about 15 s for 1 MB of dense ``<p>``
    tags), and no timeout can stop it, so it reads at most ``max_extract_bytes`` of
    markup, cut before a tag; links and directives still come from the whole page.
    """
    import lxml.html
    import trafilatura

    html = XML_DECLARATION.sub("", html, count=1)  # lxml refuses a str that declares an encoding
    page = Page(text="")
    try:
        tree = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return page
    base = url
    for el in tree.iter("base"):
        if el.get("href"):
            base = urljoin(url, el.get("href").strip())
            break
    for el in tree.iter("meta"):
        if (el.get("name") or "").lower() in ("robots", agent.lower()):
            directives = {d.strip().lower() for d in (el.get("content") or "").split(",")}
            page.index &= not directives & {"noindex", "none"}
            page.follow &= not directives & {"nofollow", "none"}
    if page.follow:
        page.links = [urljoin(base, el.get("href").strip()) for el in tree.iter("a", "area") if el.get("href")]
    if page.index:
        if max_extract_bytes is not None and len(html) > max_extract_bytes // 4:  # a char is 1-4 bytes
            html, page.truncated = _cut(html, max_extract_bytes)
        found = trafilatura.bare_extraction(html, url=url, with_metadata=True, fast=True, include_comments=False)
        if found is not None:
            page.text = found.text or ""
            page.title = found.title or ""
            page.date = found.date or ""
    return page


def _cut(html: str, limit: int) -> tuple[str, bool]:
    """The markup's first ``limit`` bytes of UTF-8, ending before a tag; and whether it was cut."""
    raw = html.encode("utf-8")
    if len(raw) <= limit:
        return html, False
    head = raw[:limit].decode("utf-8", errors="ignore")
    tag = head.rfind("<")
    return (head[:tag] if tag > 0 else head), True


def read_sitemap(body: bytes, limit: int) -> tuple[list[str], list[str]]:
    """The (page URLs, child sitemap URLs) of an XML or plain-text sitemap, gzipped or not."""
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    if body.startswith(b"\x1f\x8b"):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = d.decompress(body, limit + 1)
        if len(body) > limit:
            return [], []
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped.startswith(b"<"):
        lines = stripped.decode("utf-8", errors="replace").splitlines()
        return [line.strip() for line in lines if line.strip().startswith(("http://", "https://"))], []
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException):
        return [], []
    locs = [(el.text or "").strip() for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "loc"]
    locs = [loc for loc in locs if loc]
    if root.tag.rsplit("}", 1)[-1] == "sitemapindex":
        return [], locs
    return locs, []

