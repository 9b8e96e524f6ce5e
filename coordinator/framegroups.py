"""Frames run as several parts: the tiles of a big frame and the stages of a camera's pipeline.

A frame that is cut into tiles, or whose camera chains models (`objects`, then `face-far` on
each person), becomes a group. Each part of the group (the whole frame, a tile, a crop of a
person) is a lease of its own with the `PART` policy, placed by capability and load like any
frame, so one frame can be worked on by several nodes at once and each stage can go to the node
that runs its model best. A stage ends when all its parts are in; its detections are merged
across tile seams (coordinator/tiles.py) and, when a later stage follows, the boxes it names
are cropped for it. The group ends in exactly one result message on `results/detections/{camera}`.

Accounting stays per frame (frames in = done + dropped + lost + waiting + on nodes): a group is
one frame. A part that is lost (its node died, its lease lapsed, the node handed it back) loses
its frame once; results still coming for the group's other parts are let go. A group whose next
part found no node for a whole lease is lost too, so a stage whose model left the fleet cannot
hold its camera forever. Pure bookkeeping: no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edgehive.schemas import Timings
from edgehive.schemas.vision import DetectionOutput, PartRun, StageConfig

from .frames import Frame
from .tiles import Rect, merge_detections

CROP_MARGIN = 0.15  # of a box's side, added on each side of a crop: a face at the edge of a person box stays whole
MIN_CROP = 8  # pixels; a smaller box is not worth a job


@dataclass(eq=False, slots=True)
class Stage:
    """One model run over some parts of the frame; the first stage may be tiled."""

    model: str
    params: dict[str, Any]  # the detection params every part of this stage shares
    rects: list[Rect | None]  # per part; None is the whole frame
    of: list[int | None]  # per part: the previous stage's detection it crops
    on: list[str] = field(default_factory=list)
    runs: list[PartRun | None] = field(default_factory=list)
    outputs: list[DetectionOutput | None] = field(default_factory=list)
    placed: int = 0
    done: int = 0
    sent_at: float = 0.0  # wall: its first part sent
    ended_at: float = 0.0  # wall: its last result in

    def __post_init__(self) -> None:
        self.runs = [None] * len(self.rects)
        self.outputs = [None] * len(self.rects)

    @property
    def complete(self) -> bool:
        return self.done == len(self.rects)

    def merged(self) -> list[dict[str, Any]]:
        return merge_detections([d.model_dump() for d in out.detections] for out in self.outputs if out is not None)


@dataclass(eq=False)
class FrameGroup:
    """One frame's parts, from its first part placed to its one result."""

    id: str  # the frame's job id in its result; part leases are `{id}.{stage}.{part}`
    frame: Frame
    size: tuple[int, int]  # (width, height) from the JPEG header; (0, 0) when unknown (never tiled then)
    stages: list[Stage]
    later: list[StageConfig]  # the pipeline's stages still to come
    first_node: str = ""  # the node of the first part: the result's `node`
    received: float | None = None  # earliest part received by its node (wall, from the nodes' timings)
    started: float | None = None  # earliest part started
    inferred: float | None = None  # latest part's inference done
    finished: float | None = None  # latest part finished
    last_progress: float = 0.0  # monotonic: a part placed or a result in
    failed: str | None = None
    ended: bool = False  # lost or published: results still coming are let go

    @property
    def stage(self) -> Stage:
        return self.stages[-1]

    def has_unplaced(self) -> bool:
        stage = self.stage
        return not self.ended and stage.placed < len(stage.rects)

    def take_part(self) -> tuple[str, dict[str, Any]]:
        """The next part to place: its lease id and its params (the stage's, with its rectangle)."""
        stage = self.stage
        index = stage.placed
        stage.placed += 1
        rect = stage.rects[index]
        params = stage.params if rect is None else {**stage.params, "tile": list(rect)}
        return f"{self.id}.{len(self.stages) - 1}.{index}", params

    def record(self, stage_index: int, part: int, node: str, output: Any, timings: Timings, error: str | None) -> None:
        """A part's result, checked: a failed part or an output that is not a detection fails the frame.
        The frame's timings span its parts: the first received and started, the last inferred and finished."""
        stage = self.stages[stage_index]
        stage.done += 1
        self.received = _earliest(self.received, timings.received)
        self.started = _earliest(self.started, timings.started)
        self.inferred = _latest(self.inferred, timings.inferred)
        self.finished = _latest(self.finished, timings.finished)
        where = f"part {part} of stage {stage_index} ({stage.model}) on node {node}"
        if error is not None:
            self.failed = self.failed or f"{where}: {error}"
            return
        try:
            parsed = DetectionOutput.model_validate(output)
        except ValidationError:
            self.failed = self.failed or f"{where}: its output is not a detection output"
            return
        stage.outputs[part] = parsed
        rect = stage.rects[part]
        stage.runs[part] = PartRun(node=node, rect=list(rect) if rect is not None else None,
                                   of=stage.of[part], found=len(parsed.detections), inference_ms=parsed.inference_ms)

    def next_stage(self, params_for: Any) -> bool:
        """Start the pipeline's next stage on crops of the current one's detections; False when none is left.

        `params_for(config)` gives the detection params of a stage (model, camera, filters)."""
        if not self.later:
            return False
        config = self.later.pop(0)
        previous = self.stage.merged()
        if self.size == (0, 0):  # a frame whose header we could not read: the size its first node read
            first = next((out for out in self.stages[0].outputs if out is not None), None)
            self.size = (first.width, first.height) if first is not None else (0, 0)
        wanted = set(config.on)
        rects: list[Rect | None] = []
        of: list[int | None] = []
        for index, detection in enumerate(previous):
            rect = crop_rect(detection["box"], self.size)
            if detection["label"] in wanted and rect is not None:
                rects.append(rect)
                of.append(index)
        self.stages.append(Stage(config.model, params_for(config), rects, of, on=list(config.on)))
        return True

    def output(self, now_wall: float) -> dict[str, Any]:
        """The frame's one `DetectionOutput`: the first stage merged, each later stage after it."""
        first, *later = self.stages
        width, height = self.size
        out: dict[str, Any] = {
            "model": first.model, "width": width, "height": height, "detections": first.merged(),
            "inference_ms": round(sum(o.inference_ms for o in first.outputs if o is not None), 3),
        }
        if len(first.rects) > 1:
            out["parts"] = [run.model_dump() for run in first.runs if run is not None]
        if len(first.rects) > 1 or later:
            out["elapsed_ms"] = round(max(0.0, first.ended_at - first.sent_at) * 1000, 3)
        if later:
            out["stages"] = [{
                "model": s.model, "on": s.on, "detections": s.merged(),
                "inference_ms": round(sum(o.inference_ms for o in s.outputs if o is not None), 3),
                "elapsed_ms": round(max(0.0, s.ended_at - s.sent_at) * 1000, 3),
                "parts": [run.model_dump() for run in s.runs if run is not None],
            } for s in later]
        if not first.outputs or first.outputs[0] is None:
            return out
        if width == 0:  # size unknown to us (never tiled): the node's own reading of the frame
            out["width"], out["height"] = first.outputs[0].width, first.outputs[0].height
        return out


def _earliest(kept: float | None, new: float | None) -> float | None:
    return new if kept is None else kept if new is None else min(kept, new)


def _latest(kept: float | None, new: float | None) -> float | None:
    return new if kept is None else kept if new is None else max(kept, new)


def crop_rect(box: list[float], size: tuple[int, int]) -> Rect | None:
    """A box grown by `CROP_MARGIN` on each side, in whole pixels inside the frame; None when too small."""
    width, height = size
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
    rect = (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(width, int(x1 + mx + 1)), min(height, int(y1 + my + 1)))
    if rect[2] - rect[0] < MIN_CROP or rect[3] - rect[1] < MIN_CROP:
        return None
    return rect


class FrameGroups:
    """Open groups in the order they began, and which group and part each part lease is."""

    def __init__(self) -> None:
        self.open: dict[str, FrameGroup] = {}
        self._parts: dict[str, tuple[FrameGroup, int, int]] = {}

    def __len__(self) -> int:
        return len(self.open)

    def add(self, group: FrameGroup) -> None:
        self.open[group.id] = group

    def placed(self, lease_id: str, group: FrameGroup) -> None:
        _, stage, part = lease_id.rsplit(".", 2)
        self._parts[lease_id] = (group, int(stage), int(part))

    def pop_part(self, lease_id: str) -> tuple[FrameGroup, int, int] | None:
        """The group, stage and part of a part lease, forgotten (each part ends once)."""
        return self._parts.pop(lease_id, None)

    def waiting(self) -> Iterator[FrameGroup]:
        """Groups with a part still to place, oldest first: a frame begun is finished before a newer one starts."""
        for group in list(self.open.values()):
            if group.has_unplaced():
                yield group

    def end(self, group: FrameGroup) -> None:
        group.ended = True
        self.open.pop(group.id, None)
