"""Crawler throughput of ``collector=web`` against local servers that answer in 50 ms.

Eight servers on the loopback aliases 127.0.0.2 ... 127.0.0.9 (one host each, since the
crawler keeps one request in flight per host) each serve a site of small linked pages
after a 50 ms server-side delay. With ``concurrency=8`` and ``delay=0`` only that latency
limits the crawl, so the ideal is 8 / 0.05 s = 160 pages/s; the script prints pages/s
and its ratio to that bound.

    python tests/benchmarks/bench_crawl.py --pages 60 --latency 0.05
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOSTS = [f"127.0.0.{i}" for i in range(2, 10)]
TEXT = " ".join(f"Paragraph words about crawling number {i} and polite fetching." for i in range(20))


def serve(host: str, pages: int, latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to each response

        def do_GET(self):  # noqa: N802
            if self.path == "/robots.txt":
                body, kind = b"User-agent: *\nAllow: /\n", "text/plain"
            else:
                time.sleep(latency)
                i = int(self.path.strip("/") or 0)
                links = "".join(f'<a href="/{j}">{j}</a> ' for j in range(i + 1, min(i + 4, pages)))
                body = f"<html><head><title>Page {i}</title></head><body><p>{host} page {i}. {TEXT}</p>{links}</body></html>".encode()
                kind = "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=60, help="pages per host")
    parser.add_argument("--latency", type=float, default=0.05, help="server-side delay per page, seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from lmforge.plugins.collectors.web import Web, WebConfig

    servers = [serve(h, args.pages, args.latency) for h in HOSTS[: args.concurrency]]
    seeds = [f"http://{s.server_address[0]}:{s.server_address[1]}/" for s in servers]
    cfg = WebConfig(seeds=seeds, allow_networks=["127.0.0.0/8"], delay=0.0, concurrency=args.concurrency,
                    max_depth=None, max_pages=None)
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        docs = sum(1 for _ in Web(cfg).documents(Path(workdir), stats))
        seconds = time.perf_counter() - start
    for s in servers:
        s.shutdown()
    ideal = args.concurrency / args.latency
    rate = docs / seconds
    print(f"pages:            {docs} from {len(servers)} hosts in {seconds:.2f} s (skipped: {dict(stats) or 'none'})")
    print(f"crawl rate:       {rate:.1f} pages/s")
    print(f"ideal bound:      {ideal:.1f} pages/s ({args.concurrency} in flight / {args.latency * 1000:.0f} ms)")
    print(f"ratio to ideal:   {rate / ideal:.2f}")


if __name__ == "__main__":
    main()
