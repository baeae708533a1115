"""A tiny stdlib HTTP server for the reranker's metrics, for apps without a server.

``GET /metrics``         Prometheus text format (scrape target).
``GET /metrics/memory``  the seed's JSON (:func:`pymem.rerank.get_rerank_metrics`).

It binds 127.0.0.1 by default: metrics reveal load and model details, so exposing them
beyond the host is an explicit choice (``host="0.0.0.0"``). Requests are not logged.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from . import rerank

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464  # the port range Prometheus exporters conventionally use


class _Handler(BaseHTTPRequestHandler):
    reranker: rerank.Reranker | None = None  # None: the process-wide reranker

    def _target(self) -> rerank.Reranker:
        return self.reranker or rerank.get_reranker()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self._target().metrics.prometheus_text())
        elif path == "/metrics/memory":
            self._send(200, "application/json", json.dumps(self._target().metrics_json()).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /metrics/memory\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 (signature of the base class)
        pass


def make_metrics_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                        reranker: rerank.Reranker | None = None) -> ThreadingHTTPServer:
    """Create (not start) the server.

    Args:
        host: interface to bind; loopback by default.
        port: TCP port; 0 picks a free one (read it from ``server.server_address``).
        reranker: whose metrics to serve; default the process-wide one.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    handler = type("MetricsHandler", (_Handler,), {"reranker": reranker})
    return ThreadingHTTPServer((host, port), handler)


def start_metrics_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                         reranker: rerank.Reranker | None = None) -> ThreadingHTTPServer:
    """Serve in a daemon thread (in-process, next to the app); ``server.shutdown()`` stops it."""
    server = make_metrics_server(host, port, reranker)
    threading.Thread(target=server.serve_forever, name="pymem-metrics", daemon=True).start()
    return server


def serve_metrics(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, load_model: bool = True) -> None:
    """Serve in the foreground until interrupted (``pymem serve-metrics``).

    Args:
        load_model: load the reranker first so ``device`` and load time are reported;
            a missing model is reported in the metrics, not raised.
    """
    if load_model and rerank.get_reranker().settings.rerank_enabled:
        try:
            rerank.get_cross_encoder()
        except rerank.RerankError:
            pass  # reranker_status() / the log say why; the server still runs
    server = make_metrics_server(host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
