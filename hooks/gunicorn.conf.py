"""gunicorn settings for `nmcp operator` (the Metacontroller webhooks).

Worker model: gthread. A hook is a short CPU-bound pure function, so parallelism comes from
processes (one per CPU by default, at least two so one slow sync never stalls the others);
the few threads per worker are not for throughput but so that Metacontroller's keep-alive
connections and a slow client never pin a whole worker, which a `sync` worker (no keep-alive,
one connection at a time) would. gevent buys nothing for CPU-bound work.

Defaults live here; `NMCP_OPERATOR_*` environment variables override them at start-up, and the
`nmcp operator` flags override both. Nothing from the app is imported here.
"""

from __future__ import annotations

import gc
import os

bind = os.environ.get("NMCP_OPERATOR_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("NMCP_OPERATOR_WORKERS", "0")) or max(2, os.cpu_count() or 1)
threads = int(os.environ.get("NMCP_OPERATOR_THREADS", "4"))
# Metacontroller's Go client keeps idle connections for 90 s and retries a request that found
# its idle connection closed, so a long keep-alive only saves reconnects.
keepalive = 30
# A hook answers in milliseconds; a worker silent this long is stuck, and Metacontroller gave
# up after its own 10 s webhook timeout anyway.
timeout = 30
graceful_timeout = 20
accesslog = "-" if os.environ.get("NMCP_OPERATOR_ACCESS_LOG", "1") not in ("0", "false", "") else None
errorlog = "-"
loglevel = os.environ.get("NMCP_OPERATOR_LOG_LEVEL", "info")
# Several replicas (and test instances) may share a home directory; nothing uses the socket.
control_socket_disable = True
preload_app = False


def post_worker_init(worker: object) -> None:
    """Collect garbage less often in each worker.

    A pool sync parses a body of up to megabytes into some 10^5 short-lived objects; with the
    default gen-0 threshold (700) the cycle collector runs hundreds of times per request and
    keeps rescanning the live request. Reference counting frees those objects anyway (JSON has
    no cycles), so a higher threshold costs little memory and removes most of the p99 tail
    (measured with bench/hooks_bench.py). `freeze` moves the loaded app out of every scan.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
