"""gunicorn settings for the gateway (`gunicorn -c gateway/gunicorn.conf.py`, app `nmcp.serve:create_app()`).

One gevent worker (gateway/worker.py: gunicorn's, with a deadline on every request head): client
sessions and upstream connections live in that process's memory. Nothing from the app is
imported here; gevent patches the worker before the app loads. The settings come from
gateway.config, which is plain Python (no gevent, no sockets), so a bad NMCP_* value stops the
start with a message naming it.
"""

import os
import sys

from gateway.config import Config

_config = Config.from_env()
wsgi_app = "nmcp.serve:create_app()"  # the gateway app wired to its runtime
bind = _config.bind
worker_class = "gateway.worker.GatewayWorker"
workers = 1  # sessions live in process memory: never more than one
# Idle SSE streams hold a connection each: sized for thousands of clients (NMCP_WORKER_CONNECTIONS).
worker_connections = _config.worker_connections
preload_app = False
# SSE streams are long-lived: the worker's heartbeat is what `timeout` watches, not requests.
timeout = 60
graceful_timeout = int(_config.graceful_timeout)  # gunicorn takes whole seconds; below a pod's default 30s grace
# How long a kept-alive connection may stay silent (above common load balancers' 60 s). Must not
# be 0: gunicorn then reads request heads without any deadline, NMCP_HEADER_TIMEOUT included.
keepalive = 75
# One line per request only when NMCP_ACCESS_LOG asks (gateway/access_log.py: what it costs).
accesslog = "-" if _config.access_log else None
logger_class = "gateway.access_log.GatewayLogger"
loglevel = _config.log_level
control_socket_disable = True
# Everything to stdout: gunicorn's own log, the access log (when on), and the app's (sessions, servers' stderr).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"},
                   "access": {"format": "%(message)s"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"},
                 "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "access"}},
    "root": {"level": loglevel.upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}


def post_worker_init(worker):
    """On SIGTERM, end the client streams at once: the graceful stop need not wait them out."""
    import gevent  # noqa: PLC0415 - only once the worker has patched; the app is never imported here

    def close_when_stopping():
        while worker.alive:
            gevent.sleep(0.5)
        app_module = sys.modules.get("gateway.app")
        if app_module is not None:
            app_module.close_all()

    gevent.spawn(close_when_stopping)


def worker_exit(server, worker):
    """Stop every server process the worker started, then reap whatever child is left."""
    app_module = sys.modules.get("gateway.app")
    if app_module is not None:
        try:
            app_module.close_all()
        except Exception:
            worker.log.exception("closing the runtime failed")
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
