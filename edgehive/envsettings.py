"""A settings model on plain pydantic: values from options, `EDGEHIVE_*` variables, the config file.

Every service builds its settings once, at start. pydantic-settings did that until 2026-12, but
importing it imports asyncio (with `concurrent.futures`, `subprocess`) and python-dotenv,
none of which a service uses otherwise: about 3.4 MB of RSS in each process, a tenth of what
the coordinator, the sink or a sensor holds (bench/footprint.py). edgehive used only four of
its sources, which fit in a page: this module is that page.

What a model built here reads, highest first (the same order and rules as before):

1. keyword arguments: the command-line options (`load_settings`), or values a caller passes;
2. the environment: `EDGEHIVE_` + the field's name, matched without regard to case; its text
   goes to validation as it is, so `EDGEHIVE_SLOTS=lots` fails as the option `--slots lots` does;
3. the config file, `edgehive.yml` (edgehive/configfile.py), asked only for what 1 and 2 left unset;
4. the field's default, which is validated too.

Every field is a scalar (a string, number, boolean or a choice among strings), which is what a
variable can hold: settings that carry structure (cameras, fusion groups) take it as JSON text
and parse it in a validator. A model that declares another kind of field is refused when the
class is made, since no source here would know how to read it.
"""

from __future__ import annotations

import os
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict

from .configfile import file_source

ENV_PREFIX = "EDGEHIVE_"

_SCALARS = (str, int, float, bool)


def _is_scalar(annotation: Any) -> bool:
    if annotation in _SCALARS:
        return True
    return typing.get_origin(annotation) is typing.Literal and all(isinstance(v, str) for v in typing.get_args(annotation))


def env_values(fields: typing.Iterable[str]) -> dict[str, str]:
    """The variables set for `fields`: `EDGEHIVE_QUEUE_MAX` (or `edgehive_queue_max`) for queue_max.
    When two variables differ only in case, the later one in the environment wins."""
    environ = {name.lower(): value for name, value in os.environ.items()}
    found = {}
    for name in fields:
        value = environ.get((ENV_PREFIX + name).lower())
        if value is not None:
            found[name] = value
    return found


class EnvSettings(BaseModel):
    """A pydantic model whose instances fill unset fields from the environment and the config file."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=(), validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**gather(type(self), values))

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        odd = [name for name, info in cls.model_fields.items() if not _is_scalar(info.annotation)]
        if odd:
            raise TypeError(f"{cls.__name__}: settings fields must be str, int, float, bool or a Literal of strings, "
                            f"which an EDGEHIVE_* variable can hold: {', '.join(odd)}")


def gather(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The values to validate: `given` over the environment over the config file (defaults are the model's)."""
    state = {**env_values(model.model_fields), **given}
    return {**file_source(model, state), **state}
