"""gunicorn settings for `nmcp operator` (the Metacontroller webhooks).

Worker model: gthread. A hook is a short CPU-bound pure function, so parallelism comes from
processes (one per CPU by default, at least two so one slow sync never stalls the others);
the few threads per worker are not for throughput but so that Metacontroller's keep-alive
connections and a slow client never pin a whole worker, which a `sync` worker (no keep-alive,
one connection at a time) would. gevent buys nothing for CPU-bound work.

Settings come from the operator's table (hooks/settings.py: `NMCP_OPERATOR_*` variables), and the
`nmcp operator` flags override them. Nothing from the app is imported here.
"""

from __future__ import annotations

import gc
import os

from hooks.settings import OperatorSettings

_settings = OperatorSettings.from_env()
bind = _settings.bind
worker_class = "gthread"
workers = _settings.workers or max(2, os.cpu_count() or 1)
threads = _settings.threads
# Metacontroller's Go client keeps idle connections for 90 s and retries a request that found
# its idle connection closed, so a long keep-alive only saves reconnects.
keepalive = 30
# A hook answers in milliseconds; a worker silent this long is stuck, and Metacontroller gave
# up after its own 10 s webhook timeout anyway.
timeout = 30
graceful_timeout = 20
accesslog = "-" if _settings.access_log else None
errorlog = "-"
loglevel = _settings.log_level
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
