"""Per-camera settings: what a camera inherits from `*`, what the shorthands and the envelope change,
and the labels and scores a node keeps from a real detection."""

from __future__ import annotations

import orjson
import pytest

from edgehive.agents.detection.filters import keep_wanted
from edgehive.coordinator.cameras import CameraConfigError, CameraPolicy, detect_params, parse_cameras
from edgehive.schemas.vision import Detection, DetectionOutput, DetectParams


def policy(text: str, camera_models: dict[str, str] | None = None, default: str = "objects") -> CameraPolicy:
    return CameraPolicy(parse_cameras(text), camera_models or {}, default)


def test_a_camera_named_nowhere_runs_the_default_model_and_keeps_everything() -> None:
    config = policy("").resolve("yard")
    assert (config.model, config.labels, config.min_score) == ("objects", None, {})
    assert detect_params(config, "yard", 12.5) == {"model": "objects", "camera": "yard", "captured": 12.5}


def test_the_params_the_coordinator_writes_are_the_agents_detect_params() -> None:
    """The coordinator builds each frame's params as a dict (per frame, no model built); sent as
    JSON they must parse as the contract the agent runs them with (schemas/vision.py)."""
    cameras = policy('{"*": {"labels": ["Person", "car"], "min_score": {"*": 0.6, "car": 0.4}}}')
    for captured in (None, 12.5):
        sent = detect_params(cameras.resolve("yard"), "yard", captured)
        parsed = DetectParams.model_validate_json(orjson.dumps(sent))
        assert parsed == DetectParams(model="objects", camera="yard", captured=captured, labels=["person", "car"], min_score={"*": 0.6, "car": 0.4})
        assert parsed.model_dump(exclude_defaults=True) == {k: v for k, v in sent.items() if v is not None}


def test_a_camera_inherits_what_it_leaves_out_from_every_camera() -> None:
    cameras = policy('{"*": {"labels": ["Person", "car"], "min_score": {"*": 0.6}}, "door": {"model": "face-far", "labels": ["face"]}}')
    door, yard = cameras.resolve("door"), cameras.resolve("yard")
    assert (door.model, door.labels, door.min_score) == ("face-far", ["face"], {"*": 0.6})
    assert (yard.model, yard.labels) == ("objects", ["person", "car"])  # labels compare in lower case


def test_the_shorthand_names_a_model_and_the_frame_envelope_wins_over_all() -> None:
    cameras = policy('{"door": {"labels": ["face"]}}', camera_models={"door": "face", "yard": "person"})
    assert cameras.resolve("door").model == "face" and cameras.resolve("door").labels == ["face"]
    assert cameras.resolve("yard").model == "person"
    assert cameras.resolve("door", envelope_model="face-far").model == "face-far"
    # The full setting is more specific than the shorthand.
    assert policy('{"yard": {"model": "objects"}}', camera_models={"yard": "person"}).resolve("yard").model == "objects"


@pytest.mark.parametrize(("text", "says"), [
    ('{"door": {"labels": "person"}}', "door.labels"),
    ('{"door": {"min_score": {"person": 1.5}}}', "door.min_score.person"),
    ('{"door": {"colour": "red"}}', "door.colour"),
    ('{"a/b": {}}', "cannot be a camera id"),
    ('{"door": {"model": "no spaces allowed"}}', "door.model"),
    ('{"door": 3}', "door"),
])
def test_a_bad_cameras_setting_says_where(text: str, says: str) -> None:
    with pytest.raises(CameraConfigError, match=says.replace(".", r"\.")):
        parse_cameras(text)


def test_the_setting_may_be_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cameras.json"
    path.write_text('{"*": {"model": "person"}}')
    assert policy(str(path)).resolve("any").model == "person"
    with pytest.raises(CameraConfigError, match="cannot read"):
        parse_cameras(str(tmp_path / "missing.json"))


def detection(label: str, score: float) -> Detection:
    return Detection(label=label, score=score, box=[0.0, 0.0, 10.0, 10.0], box_norm=[0.0, 0.0, 0.1, 0.1])


def test_a_node_keeps_only_the_labels_and_scores_a_camera_asked_for() -> None:
    output = DetectionOutput(model="objects", width=100, height=100, inference_ms=1.0,
                             detections=[detection("person", 0.9), detection("car", 0.55), detection("Dog", 0.7), detection("person", 0.4)])
    assert keep_wanted(output, None, {}) is output
    assert [(d.label, d.score) for d in keep_wanted(output, ["person", "dog"], {}).detections] == [("person", 0.9), ("Dog", 0.7), ("person", 0.4)]
    kept = keep_wanted(output, None, {"person": 0.5, "*": 0.6})
    assert [(d.label, d.score) for d in kept.detections] == [("person", 0.9), ("Dog", 0.7)]
    assert keep_wanted(output, [], {}).detections == []
