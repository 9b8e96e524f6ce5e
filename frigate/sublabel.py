"""Setting an event's sub label through Frigate's HTTP API: `POST {url}/api/events/{id}/sub_label`
with `{"subLabel": text, "subLabelScore": score}` (Frigate's EventsSubLabelBody).

The calls run on a thread of their own with a timeout each: a slow or absent Frigate must never
hold the MQTT network thread, where the verdicts are made. A failed call is logged and reported
on `errors`; the verdict itself was already published. The calls, and the login Frigate's
authenticated port asks for, are frigate/api.py's (the standard library's urllib: enough for one
small POST, so no HTTP client package is pulled in).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from urllib.parse import quote

from .api import ApiError, FrigateApi

log = logging.getLogger(__name__)

QUEUE_MAX = 256


class SubLabels:
    """A queue of sub labels to set, and the thread that sets them."""

    def __init__(self, api: FrigateApi, report: Callable[[str, str], None]) -> None:
        self.api = api
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
        self._thread.join(self.api.timeout_s * 3 + 1)  # a call may log in, and log in again

    def set(self, event_id: str, text: str, score: float | None) -> None:
        """Queue one call (from any thread); a full queue drops it, reported."""
        try:
            self._queue.put_nowait((event_id, text, score))
        except queue.Full:
            self.report(self.endpoint(event_id), f"sub label {text!r} not set: {QUEUE_MAX} calls to Frigate are waiting already")

    def endpoint(self, event_id: str) -> str:
        return f"{self.api.url}{self.path(event_id)}"

    @staticmethod
    def path(event_id: str) -> str:
        return f"/api/events/{quote(event_id, safe='')}/sub_label"

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self.post(*item)

    def post(self, event_id: str, text: str, score: float | None) -> bool:
        """One call; True when Frigate said yes. Every failure is reported, never raised."""
        body: dict[str, object] = {"subLabel": text}
        if score is not None and 0.0 < score <= 1.0:  # Frigate refuses a score outside (0, 1]
            body["subLabelScore"] = round(score, 4)
        where = self.endpoint(event_id)
        try:
            self.api.post(self.path(event_id), body)
        except ApiError as error:
            self.report(where, f"sub label {text!r} for event {event_id} not set: {error}")
            return False
        log.info("event %s: sub label %r set in Frigate", event_id, text)
        return True
