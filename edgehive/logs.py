"""Logging setup; only `main()` calls it, library code just uses `logging.getLogger(__name__)`."""

from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (balena dashboard, Loki, journald)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _UnacknowledgedDelivery(logging.Filter):
    """The embedded broker (amqtt) logs a QoS 1/2 delivery that a client never acknowledged (a
    frozen or vanished client: `kill -STOP` on an agent) twice: a WARNING that says it ("Timeout
    waiting for PUBACK for packet ID 13") and then an ERROR with the traceback of that same
    timeout, once per message. The warning is the news; the traceback is noise that reads like a
    crash, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, TimeoutError) and str(record.msg).startswith("Task failed"))


_UNACKNOWLEDGED = _UnacknowledgedDelivery()


def configure(level: str = "WARNING", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # amqtt logs every connection at INFO; keep it one level quieter than ours.
    logging.getLogger("amqtt").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("amqtt.broker").addFilter(_UNACKNOWLEDGED)
    logging.getLogger("transitions").setLevel(logging.WARNING)
