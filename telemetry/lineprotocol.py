"""InfluxDB line protocol, serialized directly.

influxdb-client's `Point` builds the same text (tests check both agree, byte for byte), but at
two to three times the cost per point (BENCHMARKS.md); the sink writes tens of thousands of
points a second, so it formats the line itself. The rules are Point's: tags and fields sorted
by key, `None` and empty tag values left out, non-finite floats left out, integers suffixed
`i`, whole floats without the trailing `.0`, and a line with no field is no line at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | bool | str | None

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


_keys: dict[str, str] = {}  # escaped measurement, tag and field names: a handful, reused on every line


def _key(name: str) -> str:
    escaped = _keys.get(name)
    if escaped is None:
        escaped = _keys[name] = name.translate(_KEY)
    return escaped


def _tag_value(value: str) -> str:
    escaped = value.translate(_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped


def _value(value: float | bool | str) -> str | None:
    kind = type(value)  # exact types first: this runs for every field of every point
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]  # a float: `kind is float` (faster than isinstance) does not narrow
            return None
        text = repr(value)
        return text.removesuffix(".0")
    if kind is int:
        return f"{value}i"
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        return '"' + value.translate(_STRING) + '"'  # type: ignore[union-attr]  # a str, as above
    if isinstance(value, bool):  # subclasses (numpy scalars, IntEnum, …) take the slow path
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return _value(float(value))
    return '"' + str(value).translate(_STRING) + '"'


def line(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue], ts_ns: int) -> str | None:
    """One point as a line of line protocol (no newline), or None when no field has a value."""
    values = []
    for name, value in sorted(fields.items()):
        if value is not None and (text := _value(value)) is not None:
            values.append(f"{_key(name)}={text}")
    if not values:
        return None
    head = measurement.translate(_MEASUREMENT)
    for name, value in sorted(tags.items()):
        if value:
            head += f",{_key(name)}={_tag_value(value)}"
    return f"{head} {','.join(values)} {ts_ns}"
