"""Log lines of `nmcp up`: readable text by default, one JSON object per line on request.

Every line the loop writes about a server carries structured fields (`event`, `server`, `from`,
`to`, `reason`, ...) passed as logging `extra`; the text format shows the message, the JSON
format the message plus those fields, so a log shipper can filter on `event == "phase"`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Send every log record of the process to stderr in `fmt` (text or json).

    With json, gunicorn's own loggers in this (worker) process are taken over too, so the access
    log and the worker's lines are JSON as well; only the master's few start/stop lines stay text.
    """
    if fmt not in FORMATS:
        raise ValueError(f"NMCP_LOG_FORMAT: expected text or json, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == "json":
        for name in ("gunicorn.error", "gunicorn.access"):
            logger = logging.getLogger(name)
            if logger.handlers:  # only where gunicorn set up logging: its choices stay otherwise
                logger.handlers = [handler]
