"""edgehive loads no pydantic plugins (edgehive/pydanticplugins.py), and pydantic works as before.

A real plugin is installed for these tests: a distribution on the path that registers under
pydantic's entry point group, whose `new_schema_validator` says when pydantic calls it. Each
test runs a fresh interpreter, since the test process built its models long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
class _Plugin:
    def new_schema_validator(self, *args, **kwargs):
        print("plugin called")
        return None, None, None

plugin = _Plugin()
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    (tmp_path / "fakeplugin.py").write_text(PLUGIN)
    info = tmp_path / "fakeplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nfake = fakeplugin:plugin\n")
    return tmp_path


def run(code: str, path: Path) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=env)
    return done.stdout.splitlines()


MODEL = """
from pydantic import BaseModel, ValidationError
class M(BaseModel):
    x: int
print(M(x="1").x)
try:
    M(x="one")
except ValidationError as error:
    print(error.error_count())
print("importlib.metadata" in sys.modules)
"""


def test_pydantic_calls_an_installed_plugin_without_edgehive(plugin_path: Path) -> None:
    """The plugin is real: pydantic finds it and calls it, through importlib.metadata."""
    assert run("import sys\n" + MODEL, plugin_path) == ["plugin called", "1", "1", "True"]


def test_the_command_line_skips_the_search_and_validates_as_before(plugin_path: Path) -> None:
    assert run("import sys\nimport edgehive.cli\n" + MODEL, plugin_path) == ["1", "1", "False"]


def test_a_name_pydantic_asks_beyond_get_plugins_hands_back_its_own_module(plugin_path: Path) -> None:
    """A pydantic that wanted more of its loader module gets it, and from then on its own search."""
    lines = run("""
import sys
import edgehive.cli
from pydantic.plugin import _loader
print(_loader.PYDANTIC_ENTRY_POINT_GROUP, type(sys.modules["pydantic.plugin._loader"]).__name__)
from pydantic import BaseModel
class M(BaseModel):
    x: int
""", plugin_path)
    assert lines == ["pydantic module", "plugin called"]


def test_nothing_is_done_when_pydantic_has_already_searched(plugin_path: Path) -> None:
    lines = run("""
import sys
from pydantic import BaseModel
class M(BaseModel):
    x: int
from edgehive import pydanticplugins
print(pydanticplugins.skip_discovery())
class N(BaseModel):
    y: int
""", plugin_path)
    assert lines == ["plugin called", "False", "plugin called"]
