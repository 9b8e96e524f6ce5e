"""Setting an event's sub label through Frigate's HTTP API: `POST {url}/api/events/{id}/sub_label`
with `{"subLabel": text, "subLabelScore": score}` (Frigate's EventsSubLabelBody).

The calls run on a thread of their own with a timeout each: a slow or absent Frigate must never
hold the MQTT network thread, where the verdicts are made. A failed call is logged and reported
on `errors`; the verdict itself was already published. The standard library's urllib is enough
for one small POST; no HTTP client package is pulled in.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import quote

import orjson

log = logging.getLogger(__name__)

QUEUE_MAX = 256


class SubLabels:
    """A queue of sub labels to set, and the thread that sets them."""

    def __init__(self, url: str, timeout_s: float, report: Callable[[str, str], None]) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.report = report  # (where, reason): the bus's error report
        self._queue: queue.Queue[tuple[str, str, float | None] | None] = queue.Queue(QUEUE_MAX)
        self._thread = threading.Thread(target=self._run, name="frigate-sub-labels", daemon=True)

    def start(self) -> SubLabels:
        self._thread.start()
        return self

    def stop(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(self.timeout_s + 1)

    def set(self, event_id: str, text: str, score: float | None) -> None:
        """Queue one call (from any thread); a full queue drops it, reported."""
        try:
            self._queue.put_nowait((event_id, text, score))
        except queue.Full:
            self.report(self.endpoint(event_id), f"sub label {text!r} not set: {QUEUE_MAX} calls to Frigate are waiting already")

    def endpoint(self, event_id: str) -> str:
        return f"{self.url}/api/events/{quote(event_id, safe='')}/sub_label"

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self.post(*item)

    def post(self, event_id: str, text: str, score: float | None) -> bool:
        """One call; True when Frigate said yes. Every failure is reported, never raised."""
        body: dict[str, object] = {"subLabel": text}
        if score is not None and 0.0 < score <= 1.0:  # Frigate refuses a score outside (0, 1]
            body["subLabelScore"] = round(score, 4)
        where = self.endpoint(event_id)
        request = urllib.request.Request(where, data=orjson.dumps(body), method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(4096)
            log.info("event %s: sub label %r set in Frigate", event_id, text)
            return True
        except urllib.error.HTTPError as error:
            detail = error.read(300).decode(errors="replace").strip()
            reason = f"Frigate answered {error.code} {error.reason}" + (f": {detail}" if detail else "")
        except (urllib.error.URLError, OSError, ValueError) as error:
            cause = getattr(error, "reason", None) or error
            reason = f"Frigate's API did not answer: {cause} (EDGEHIVE_FRIGATE_URL={self.url})"
        self.report(where, f"sub label {text!r} for event {event_id} not set: {reason}")
        return False
