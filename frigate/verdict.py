"""From the fleet's detection result to the verdict on a Frigate event, and the sub label it earns.

Confirmed means: the first model of the camera's pipeline found Frigate's label, or a label
that stands for it (`EDGEHIVE_FRIGATE_CONFIRM_LABELS`: the `objects` model says `vehicle`
where Frigate says `truck`), at or above `EDGEHIVE_FRIGATE_MIN_SCORE`. Later stages (faces on
the people) are reported beside it and do not change it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgehive.schemas.frigate import FrigateVerdict, StageVerdict
from edgehive.schemas.messages import Result
from edgehive.schemas.vision import DetectionOutput

from .events import FrigateObject


@dataclass(frozen=True)
class Rules:
    """What confirms a label, and which sub labels a verdict earns ('' = none)."""

    min_score: float
    confirm_labels: Mapping[str, list[str]]
    sub_label_confirmed: str = ""
    sub_label_unconfirmed: str = ""

    def confirming(self, label: str) -> set[str]:
        return set(self.confirm_labels.get(label, [label]))

    def sub_label(self, verdict: FrigateVerdict) -> tuple[str, float | None] | None:
        """(text, score) to set on the event; None when the verdict earns none (failed, or '' set)."""
        if not verdict.ok:
            return None
        if verdict.confirmed:
            return (self.sub_label_confirmed, verdict.score) if self.sub_label_confirmed else None
        return (self.sub_label_unconfirmed, None) if self.sub_label_unconfirmed else None


def judged(rules: Rules, obj: FrigateObject, source: str, result: Result[DetectionOutput], started: float, sent: float,
           now: float | None = None) -> FrigateVerdict:
    """The verdict of a result that came back (`started`: the event or its snapshot, whichever
    came last; `sent`: the snapshot sent; both monotonic, as `now`)."""
    now = time.monotonic() if now is None else now
    common = _common(rules, obj, source, started, now) | {"job_id": result.job_id, "node": result.node, "job_s": max(0.0, now - sent)}
    output = result.output
    if not result.ok or output is None:
        return _finish(rules, FrigateVerdict(ok=False, confirmed=False, error=f"the edgehive job failed: {result.error or 'no output'}", **common))
    wanted = rules.confirming(obj.label)
    scores = [d.score for d in output.detections if d.label.lower() in wanted]
    best = max(scores) if scores else None
    stages = [StageVerdict(model=s.model, detections=s.detections) for s in output.stages or ()]
    verdict = FrigateVerdict(
        ok=True, confirmed=best is not None and best >= rules.min_score, score=best, detections=output.detections, stages=stages,
        models=[output.model, *(s.model for s in stages)], **common,
    )
    return _finish(rules, verdict)


def failed(rules: Rules, obj: FrigateObject, source: str, reason: str, started: float, sent: float | None = None,
           now: float | None = None) -> FrigateVerdict:
    """The verdict of an event that could not be judged, with the reason."""
    now = time.monotonic() if now is None else now
    common = _common(rules, obj, source, started, now)
    if sent is not None:
        common["job_s"] = max(0.0, now - sent)
    return FrigateVerdict(ok=False, confirmed=False, error=reason[:2000], **common)


def _common(rules: Rules, obj: FrigateObject, source: str, started: float, now: float) -> dict[str, Any]:
    return {"ts": time.time(), "event_id": obj.id, "camera": obj.camera, "label": obj.label, "frigate_score": obj.best_score,
            "min_score": rules.min_score, "source": source, "elapsed_s": max(0.0, now - started)}


def _finish(rules: Rules, verdict: FrigateVerdict) -> FrigateVerdict:
    sub = rules.sub_label(verdict)
    return verdict.model_copy(update={"sub_label": sub[0]}) if sub else verdict
