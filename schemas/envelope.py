"""The binary frame envelope: a small JSON header and the JPEG bytes after it, untouched.

Frames are the heavy traffic, so the image is never base64'd or wrapped in JSON. Layout:

    b"EHF1" | header length (uint16, big-endian) | header (JSON, ≤ 4 KiB) | JPEG bytes

A camera may send the envelope to add its capture time and the model it wants; a bare
JPEG (what `mosquitto_pub -f sensors/demo/01-astronaut.jpg` sends) is a frame too. The coordinator always
sends agents the envelope, with the job in the header.
"""

from __future__ import annotations

import struct

from ..errors import EdgehiveError

MAGIC = b"EHF1"
MAX_HEADER = 4096
JPEG_SOI = b"\xff\xd8\xff"
_LENGTH = struct.Struct("!H")


class EnvelopeError(EdgehiveError, ValueError):
    """A frame payload that is neither a JPEG nor a well-formed envelope."""


def pack(header: bytes, jpeg: bytes) -> bytes:
    if len(header) > MAX_HEADER:
        raise EnvelopeError(f"frame header of {len(header)} bytes exceeds {MAX_HEADER}")
    return MAGIC + _LENGTH.pack(len(header)) + header + jpeg


def is_envelope(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def unpack(payload: bytes) -> tuple[bytes, bytes]:
    """(header JSON bytes, JPEG bytes); raises EnvelopeError on a malformed envelope."""
    if not is_envelope(payload) or len(payload) < 6:
        raise EnvelopeError("not a frame envelope")
    (length,) = _LENGTH.unpack_from(payload, 4)
    if length > MAX_HEADER or 6 + length > len(payload):
        raise EnvelopeError(f"frame envelope header length {length} is out of bounds")
    return payload[6:6 + length], payload[6 + length:]


def check_jpeg(jpeg: bytes) -> None:
    """Cheap checks only (start marker, non-empty); decoding is the agent's job."""
    if not jpeg:
        raise EnvelopeError("empty frame")
    if jpeg[:3] != JPEG_SOI:
        raise EnvelopeError(f"frame is not a JPEG (starts with {jpeg[:4].hex() or 'nothing'})")
