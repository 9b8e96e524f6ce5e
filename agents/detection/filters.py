"""A camera's wishes applied to what a model found: only the labels it keeps, above its scores.

Applied on the node, before the result and the snapshot are made, so that a label nobody
asked for is neither published nor drawn.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from edgehive.schemas.vision import DetectionOutput

EVERY_LABEL = "*"


def keep_wanted(output: DetectionOutput, labels: Collection[str] | None, min_score: Mapping[str, float]) -> DetectionOutput:
    """`output` with the detections the camera asked for; the same object when nothing is filtered.

    Labels compare in lower case. A per-label score lower than the model's own threshold
    changes nothing: the model never reported those boxes.
    """
    if labels is None and not min_score:
        return output
    wanted = {label.lower() for label in labels} if labels is not None else None
    floor = min_score.get(EVERY_LABEL, 0.0)
    kept = []
    for detection in output.detections:
        label = detection.label.lower()
        if wanted is not None and label not in wanted:
            continue
        if detection.score < min_score.get(label, floor):
            continue
        kept.append(detection)
    return output.model_copy(update={"detections": kept})
