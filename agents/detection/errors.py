"""The one exception the detection layer raises."""

from __future__ import annotations

from ...errors import EdgehiveError


class DetectionError(EdgehiveError):
    """A bad image, a model that does not fit its manifest entry, or a model file that fails its checksum."""
