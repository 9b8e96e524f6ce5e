"""The README documents every setting the code reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from edgehive.cli import command_settings
from edgehive.schemas import Topics
from edgehive.schemas.topics import TopicError
from edgehive.settings import env_name

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table_and_every_row_is_a_setting() -> None:
    in_code = {env_name(f) for model in command_settings().values() for f in model.model_fields}
    in_table = set(re.findall(r"^\| `(EDGEHIVE_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))
    assert in_code - in_table == set(), "settings missing from README's table"
    assert in_table - in_code == set(), "README documents settings the code does not read"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./edgehive.sh test" in README.read_text()
    assert "./edgehive.sh test" in ci


GUIDES = [README.parent / "CONTRIBUTING.md", README.parent / "docs" / "DESIGN.md"]
_TOP = {p.name for p in README.parent.iterdir()} - {".git", ".venv"}


def _is_topic(token: str) -> bool:
    """`coordinator/stats` is a topic, not the folder `coordinator/`'s file."""
    try:
        Topics("p").parse(f"p/{token}")
    except TopicError:
        return False
    return True


def _named_paths(doc: Path) -> set[Path]:
    """Repository paths a guide names: in backticks (`agents/kinds.py`) or as link targets."""
    text = doc.read_text()
    named = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?", token) and token.split("/")[0] in _TOP and not _is_topic(token):
            named.add(README.parent / token)  # topics with ids (`nodes/{node}/jobs`) and globs never match
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            named.add((doc.parent / target).resolve())
    return named


def test_paths_and_modules_named_in_the_guides_exist() -> None:
    import importlib.util

    for doc in GUIDES:
        paths = _named_paths(doc)
        assert len(paths) > 10, f"{doc.name}: the path pattern found almost nothing"
        assert [str(p) for p in sorted(paths) if not p.exists()] == [], f"{doc.name} names paths that do not exist"
        for module in re.findall(r"python -m ([a-z_.]+)", doc.read_text()):
            if module != "pytest":
                assert importlib.util.find_spec(module) is not None, f"{doc.name}: no module {module}"
    assert "docs/DESIGN.md" in README.read_text() and "docs/DESIGN.md" in GUIDES[0].read_text()


def test_every_file_a_mosquitto_pub_line_sends_exists() -> None:
    """`mosquitto_pub -f FILE` lines are copied as they are: FILE must be in the checkout."""
    root = README.parent
    sent = []
    for doc in [README, root / "sensors" / "README.md", *sorted((root / "docs").glob("*.md"))]:
        sent += [(doc.name, name) for name in re.findall(r"mosquitto_pub [^\n]*?-f (\S+)", doc.read_text())]
    assert sent, "no mosquitto_pub -f line found"
    assert [(doc, name) for doc, name in sent if not (root / name).is_file()] == []


def test_the_readme_states_the_tested_numpy_and_opencv_versions() -> None:
    from packaging.requirements import Requirement

    pins: dict[str, set[str]] = {}
    for line in (README.parent / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins.setdefault(req.name, set()).add(str(req.specifier).removeprefix("=="))
    tested = README.read_text().partition("**Tested versions.**")[2].partition("\n\n")[0]
    for project, label in (("numpy", "numpy"), ("opencv-python-headless", "OpenCV")):
        assert pins.get(project), f"constraints.txt pins no {project}"
        assert label in tested and all(version in tested for version in pins[project]), (project, pins[project], tested)
