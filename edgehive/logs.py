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


class _AmqttTracebacks(logging.Filter):
    """Two amqtt ERRORs whose tracebacks read like a crash of ours and say nothing new:

    - a QoS 1/2 delivery that a client never acknowledged (a frozen or vanished client: `kill
      -STOP` on an agent) is logged as a WARNING ("Timeout waiting for PUBACK for packet ID 13")
      and then, once per message, as an ERROR with the traceback of that same timeout;
    - a broker that cannot start (its port taken) logs the traceback of the bind before
      `EmbeddedBroker.start` raises the same reason, which the command prints in one line.
    Both ERRORs are dropped; the warning and the command's line remain."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = str(record.msg)
        if isinstance(error, TimeoutError) and message.startswith("Task failed"):
            return False
        return not (error is not None and message.startswith("Broker startup failed"))


_AMQTT_TRACEBACKS = _AmqttTracebacks()


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
    logging.getLogger("amqtt.broker").addFilter(_AMQTT_TRACEBACKS)
    logging.getLogger("transitions").setLevel(logging.WARNING)
