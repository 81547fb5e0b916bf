"""A small web site on 127.0.0.1 for the crawler's tests, recording every request.

The pages linked from ``/`` make the normal site (``PAGES`` are the documents a full
crawl stores). Everything under ``/trap/`` is a hazard that tests seed directly:
redirects out of scope, to a private address, to ``file:``, in a loop, in a long chain;
error statuses, a slow page, oversized pages, a page of dense markup and a gzip bomb.
The site serves ``/sitemap.xml`` although its robots.txt names no sitemap.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

WORDS = (
    "the a model learns tokens from text crawled across many pages while robots rules keep the "
    "crawler polite and every host gets its own delay so that servers stay calm under load data "
    "flows through shards into training windows where attention heads read context and predict "
    "what comes next in the sequence of bytes words and sentences written by people about code "
    "science music history gardens rivers mountains weather cooking travel and the quiet art of "
    "careful engineering"
).split()

ROBOTS = b"""User-agent: slowbot
Crawl-delay: 0.2
Disallow: /private/

User-agent: *
Disallow: /private/
"""

# the documents a full crawl from / stores (one of the two identical copies is kept)
PAGES = [
    "/", *[f"/docs/{i}" for i in range(1, 9)], "/deep/1", "/deep/2", "/deep/3",
    "/dup?a=1&b=2", "/notes.txt", "/latin1", "/cp1252", "/bom",
]
COPIES = ["/copy-a", "/copy-b"]
BINARIES = ["/image.png", "/file.bin"]


def prose(seed: int, paragraphs: int = 6) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(4, 7)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
            sentences.append(" ".join(words).capitalize() + ".")
        out.append(" ".join(sentences))
    return out


def html(title: str, paragraphs: list[str], links: list[str] = (), head: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head><body>"
        f"<nav><ul>{nav}</ul></nav><article><h1>{title}</h1>{body}</article></body></html>"
    )


class Site:
    """The server and its routes; ``requests`` holds (path with query, arrival time)."""

    def __init__(self, bomb_bytes: int = 50 << 20, robots: bytes = ROBOTS) -> None:
        self.robots = robots
        self.requests: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.served_429: set[str] = set()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to each response

            def do_GET(self):  # noqa: N802 (http.server's naming)
                with site.lock:
                    site.requests.append((self.path, time.monotonic()))
                site.respond(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.bomb = self._bomb(bomb_bytes)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "Site":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        """Requests for ``path``; a path without a query counts its requests with any query."""
        with self.lock:
            return sum(p == path or ("?" not in path and urlsplit(p).path == path) for p, _ in self.requests)

    def times(self, path: str) -> list[float]:
        with self.lock:
            return [t for p, t in self.requests if p == path]

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _ in self.requests]

    @staticmethod
    def _bomb(size: int) -> bytes:
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        chunk = b"\0" * (1 << 20)
        return b"".join(z.compress(chunk) for _ in range(size >> 20)) + z.flush()

    # -- routes ------------------------------------------------------------------------

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path == "/robots.txt":
            return self.send(h, 200, self.robots, "text/plain")
        if path == "/":
            links = [*PAGES[1:9], "/private/secret", "/dup?a=1&b=2", "/dup?b=2&a=1#top", *COPIES, "/notes.txt",
                     *BINARIES, "/latin1", "/cp1252", "/bom", self.url("/offsite", "localhost"), "mailto:a@b.c",
                     "javascript:void(0)"]
            return self.page(h, "Home", prose(0), links)
        if path.startswith("/docs/"):
            i = int(path.rsplit("/", 1)[1])
            links = [f"/docs/{i % 8 + 1}"] + (["/deep/1"] if i == 3 else [])
            return self.page(h, f"Document {i}", prose(i), links)
        if path.startswith("/deep/"):
            i = int(path.rsplit("/", 1)[1])
            return self.page(h, f"Deep {i}", prose(100 + i), [f"/deep/{i + 1}"] if i < 3 else [])
        if path in ("/dup", "/orphan", "/redirected-target", "/private/secret", "/outside", "/offsite"):
            return self.page(h, path.strip("/"), prose(sum(path.encode())))
        if path in COPIES:
            return self.page(h, "Copy", prose(42))
        if path == "/notes.txt":
            return self.send(h, 200, "\n\n".join(prose(7)).encode(), "text/plain; charset=utf-8")
        if path == "/image.png":
            return self.send(h, 200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "image/png")
        if path == "/file.bin":
            return self.send(h, 200, bytes(range(256)) * 8, "application/octet-stream")
        if path == "/latin1":  # no charset anywhere: detected
            text = html("Latin", ["Un café pour le naïve garçon, s'il vous plaît, à la française. " * 4] + prose(8, 2))
            return self.send(h, 200, text.encode("latin-1"), "text/html")
        if path == "/cp1252":  # the header lies: says UTF-8
            text = html("Quotes", ["He said “quotes” – and then… a café. " * 4] + prose(9, 2))
            return self.send(h, 200, text.encode("cp1252"), "text/html; charset=utf-8")
        if path == "/bom":  # the header lies, the BOM tells the truth
            text = html("Bom", ["A naïve café with a façade. " * 4] + prose(10, 2))
            return self.send(h, 200, b"\xef\xbb\xbf" + text.encode("utf-8"), "text/html; charset=iso-8859-1")
        if path == "/sitemap.xml":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{self.url('/sitemap-pages.xml.gz')}</loc></sitemap></sitemapindex>"
            )
            return self.send(h, 200, body.encode(), "application/xml")
        if path == "/sitemap-pages.xml.gz":
            locs = "".join(f"<url><loc>{self.url(p)}</loc></url>" for p in ("/orphan", "/docs/1"))
            body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
            return self.send(h, 200, gzip.compress(body.encode()), "application/gzip")
        return self.trap(h, path)

    def trap(self, h, path: str) -> None:
        redirects = {
            "/trap/redirect-in": "/redirected-target",
            "/trap/redirect-out": self.url("/outside", "localhost"),
            "/trap/redirect-private": "http://10.0.0.1/",
            "/trap/redirect-file": "file:///etc/passwd",
            "/trap/loop-a": "/trap/loop-b",
            "/trap/loop-b": "/trap/loop-a",
        }
        if path in redirects:
            return self.send(h, 302, b"", "text/html", Location=redirects[path])
        if path.startswith("/trap/chain/"):
            i = int(path.rsplit("/", 1)[1])
            if i > 0:
                return self.send(h, 302, b"", "text/html", Location=f"/trap/chain/{i - 1}")
            return self.page(h, "End of the chain", prose(77))
        if path == "/trap/500":
            return self.send(h, 500, b"oops", "text/plain")
        if path == "/trap/429":
            if path not in self.served_429:
                self.served_429.add(path)
                return self.send(h, 429, b"slow down", "text/plain", **{"Retry-After": "1"})
            return self.page(h, "Patience", prose(55))
        if path == "/trap/slow":
            time.sleep(1.0)
            return self.page(h, "Slow", prose(56))
        if path == "/trap/big":
            return self.send(h, 200, b"<html><body><p>" + b"x" * (3 << 20) + b"</p></body></html>", "text/html")
        if path == "/trap/big-chunked":  # no Content-Length: the body ends when the connection closes
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            try:
                for _ in range(300):
                    h.wfile.write(b"y" * 10_000)
            except OSError:
                pass
            return
        if path == "/trap/dense":  # 300 KB of tiny paragraphs: slow for trafilatura (seconds per MB)
            body = "".join(f"<p>Line {i} of a dense page.</p>" for i in range(10_000))
            return self.send(h, 200, f"<html><body>{body}</body></html>".encode(), "text/html; charset=utf-8")
        if path == "/trap/bomb":
            return self.send(h, 200, self.bomb, "text/html", **{"Content-Encoding": "gzip"})
        return self.send(h, 404, b"not found", "text/plain")

    def page(self, h, title: str, paragraphs: list[str], links: list[str] = ()) -> None:
        self.send(h, 200, html(title, paragraphs, links).encode(), "text/html; charset=utf-8")

    @staticmethod
    def send(h, status: int, body: bytes, content_type: str, **headers: str) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the crawler hung up, as it should on a page it will not read
            h.close_connection = True
