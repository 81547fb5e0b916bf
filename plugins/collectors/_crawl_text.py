"""From response bytes to text for ``collector=web``: charset, main text, links, sitemaps."""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin

HTML_TYPES = {"text/html", "application/xhtml+xml"}
TEXT_TYPES = {"text/plain"}
SITEMAP_TYPES = {"application/xml", "text/xml", "application/gzip", "application/x-gzip", "text/plain", ""}

BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
# Browsers read these labels as windows-1252 (WHATWG Encoding), and so do real pages.
AS_CP1252 = {"latin_1", "ascii", "cp1252"}
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([-\w.:]+)""", re.I)
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def _codec(label: str | None) -> str | None:
    try:
        return codecs.lookup(label.strip()).name if label else None
    except LookupError:
        return None


def _decode_as(body: bytes, name: str) -> str | None:
    if name in AS_CP1252:
        non_ascii = any(b > 0x7F for b in body)
        if non_ascii:
            try:  # a page labelled Latin-1 that is valid UTF-8 is UTF-8: the reverse is vanishingly rare
                return body.decode("utf-8")
            except UnicodeDecodeError:
                pass
        try:
            return body.decode("cp1252")
        except UnicodeDecodeError:
            return body.decode("latin-1")
    try:
        return body.decode(name)
    except (UnicodeDecodeError, LookupError):
        return None


def decode(body: bytes, header_charset: str | None, html: bool) -> str:
    """Bytes to text: a BOM wins, then the header's charset, then the meta tag, then detection.

    A declared charset the bytes do not decode under is ignored rather than trusted.
    """
    for bom, name in BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace")
    declared = [_codec(header_charset)]
    if html:
        found = META_CHARSET.search(body[:4096])
        meta = _codec(found.group(1).decode("ascii", "replace")) if found else None
        # a meta tag read in ASCII cannot truthfully say UTF-16 (WHATWG: read it as UTF-8)
        declared.append("utf-8" if meta and meta.startswith("utf_16") else meta)
    for name in filter(None, declared):
        text = _decode_as(body, name)
        if text is not None:
            return text
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return _detect(body)


def _detect(body: bytes) -> str:
    from charset_normalizer import from_bytes

    results = from_bytes(body)
    best = results.best()
    if best is None:
        return body.decode("cp1252", errors="replace")
    # Single-byte Latin encodings often tie on this evidence; windows-1252 is by far the
    # most common of them on the web, so it wins a tie.
    tied = [r.encoding for r in results if (r.chaos, r.coherence) == (best.chaos, best.coherence)]
    if "cp1252" in tied:
        return body.decode("cp1252", errors="replace")
    return str(best)


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


def read_html(html: str, url: str, agent: str) -> Page:
    """Main text, title and date through trafilatura; links and meta robots through lxml."""
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
        found = trafilatura.bare_extraction(html, url=url, with_metadata=True, fast=True, include_comments=False)
        if found is not None:
            page.text = found.text or ""
            page.title = found.title or ""
            page.date = found.date or ""
    return page


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

