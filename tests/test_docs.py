"""The README documents every setting the code reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from edgehive.cli import command_settings
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
