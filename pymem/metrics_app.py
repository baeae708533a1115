"""The reranker's metrics over HTTP, served by prometheus-client.

* :func:`metrics_app`: an ASGI app for apps to mount (``app.mount("/", metrics_app())``
  in Starlette or FastAPI): ``/metrics/memory`` answers the JSON of get_rerank_metrics()
  (:func:`pymem.rerank.get_rerank_metrics`), every other path the Prometheus text
  (prometheus-client's ``make_asgi_app``).
* :func:`start_metrics_server` / :func:`serve_metrics` (``pymem serve-metrics``):
  prometheus-client's ``start_http_server`` on the reranker's registry.

Bind 127.0.0.1 unless exposing metrics beyond the host is a choice you made: they
reveal load and model details.
"""

from __future__ import annotations

import json
import threading

from . import rerank
from .extras import require

require("prometheus_client", "rerank", "the metrics endpoints")
from prometheus_client import make_asgi_app, start_http_server  # noqa: E402 (after the check above)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464  # the port range Prometheus exporters conventionally use
MEMORY_PATH = "/metrics/memory"


def metrics_app(reranker: rerank.Reranker | None = None):
    """An ASGI app serving ``/metrics/memory`` (JSON) and Prometheus text elsewhere.

    Args:
        reranker: whose metrics to serve; default the process-wide one, looked up
            per request (so it may be created after the app).
    """
    async def app(scope, receive, send) -> None:
        target = reranker or rerank.get_reranker()
        if scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith(MEMORY_PATH):
            body = json.dumps(target.metrics_json()).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await make_asgi_app(target.metrics.registry)(scope, receive, send)

    return app


def start_metrics_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                         reranker: rerank.Reranker | None = None):
    """Serve the Prometheus text in a daemon thread; return ``(server, thread)``.

    Args:
        port: TCP port; 0 picks a free one (``server.server_address[1]``).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    return start_http_server(port, addr=host, registry=(reranker or rerank.get_reranker()).metrics.registry)


def serve_metrics(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, load_model: bool = True) -> None:
    """Serve in the foreground until interrupted (``pymem serve-metrics``).

    Args:
        load_model: load the reranker first so ``device`` and load time are reported;
            a missing model is reported in the metrics, not raised.
    """
    if load_model and rerank.get_reranker().enabled:
        try:
            rerank.get_cross_encoder()
        except rerank.RerankError:
            pass  # reranker_status() / the log say why; the server still runs
    server, _ = start_metrics_server(host, port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
