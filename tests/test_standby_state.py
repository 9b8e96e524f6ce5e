"""What a standby coordinator keeps (coordinator/standby.py), driven directly: no broker, no clock."""

from __future__ import annotations

import orjson
import pytest

from edgehive.bus import Rejected
from edgehive.coordinator.events import JournalAccepted, JournalEnded, JournalReplace, ReadingsIn, Submitted
from edgehive.coordinator.fusion_log import FusionWrite
from edgehive.coordinator.standby import Standby, encode_stream, parse_stream, submission_key
from edgehive.schemas import JobRequest
from edgehive.schemas.sensors import SensorReading

TOPIC = "p/coordinator/journal"


def submitted(job_id: str | None, seconds: float = 0.1) -> Submitted:
    return Submitted("p/jobs/submit", JobRequest(kind="sleep", id=job_id, params={"seconds": seconds}))


def stream(*records: object, handled: tuple[str, ...] = (), fusion: FusionWrite | None = None) -> bytes:
    return encode_stream("head-a", 1, list(records), fusion, list(handled))  # type: ignore[arg-type]


def held_ids(standby: Standby) -> list[str | None]:
    return [e.request.id for e in standby.takeover() if isinstance(e, Submitted)]


def test_a_submission_is_held_until_the_stream_says_it_was_handled_in_either_order() -> None:
    standby = Standby(60, 1000)
    standby.reconnected()
    standby.offer(submitted("a"), 0)
    standby.apply(parse_stream(TOPIC, stream(handled=(submission_key(submitted("a").request),))), 1)
    standby.apply(parse_stream(TOPIC, stream(handled=("id:b",))), 2)  # the stream was faster than the submission
    standby.offer(submitted("b"), 3)
    standby.offer(submitted("c"), 4)  # the active one died before handling it
    assert held_ids(standby) == ["c"]


def test_submissions_without_an_id_are_matched_by_their_content_one_for_one() -> None:
    standby = Standby(60, 1000)
    standby.reconnected()
    for _ in range(2):
        standby.offer(submitted(None), 0)
    standby.offer(submitted(None, seconds=0.2), 0)
    standby.apply(parse_stream(TOPIC, stream(handled=(submission_key(submitted(None).request),))), 1)
    assert [e.request.params for e in standby.takeover() if isinstance(e, Submitted)] == [{"seconds": 0.1}, {"seconds": 0.2}]


def test_a_final_state_seen_on_the_broker_releases_a_held_submission() -> None:
    standby = Standby(60, 1000)
    standby.reconnected()
    standby.offer(submitted("a"), 0)
    standby.ended("a")
    assert held_ids(standby) == []


def test_a_full_copy_after_a_reconnect_settles_what_was_held_before_it() -> None:
    """While we were away (amqtt keeps nothing for us) the stream's word on them was lost; the
    active one had them before we asked for the copy, so it handled them."""
    standby = Standby(60, 1000)
    standby.reconnected()
    standby.offer(submitted("before-gap"), 0)
    standby.reconnected()
    assert not standby.synced
    standby.offer(submitted("after-gap"), 1)
    copy = JournalReplace([(JobRequest(kind="sleep", id="open-1"), 5.0, 1)])
    records = standby.apply(parse_stream(TOPIC, stream(copy)), 2)
    assert standby.synced and records == [copy]
    assert held_ids(standby) == ["after-gap"]


def test_takeover_hands_over_the_fleet_the_held_submissions_and_the_kept_readings_replayed() -> None:
    standby = Standby(readings_keep_s=10, readings_max=2)
    standby.reconnected()
    reading = ReadingsIn("p/sensors/t1/temperature", "t1", "temperature", [(SensorReading(value=20.0), 1.0)])
    for now in (0, 1, 2):
        standby.offer(reading, now)  # at most two kept
    standby.offer(submitted("a"), 3)
    events = standby.takeover()
    assert [type(e).__name__ for e in events] == ["Submitted", "ReadingsIn", "ReadingsIn"]
    assert all(e.replayed for e in events if isinstance(e, ReadingsIn))
    assert standby.takeover() == []  # handed over once


def test_the_stream_round_trips_and_a_bad_message_is_refused_with_a_reason() -> None:
    request = JobRequest(kind="sleep", id="j1", params={"seconds": 1})
    fusion = FusionWrite([orjson.dumps({"group": "room", "windows": 3, "done": 2, "prior": None, "until": 12.5})], rewrite=False)
    parsed = parse_stream(TOPIC, stream(JournalAccepted(request, 10.0, 0), JournalEnded("j0"), handled=("id:j1",), fusion=fusion))
    assert parsed.sender == "head-a" and parsed.epoch == 1 and parsed.handled == ["id:j1"]
    assert parsed.records == [JournalAccepted(request, 10.0, 0), JournalEnded("j0")]
    assert parsed.fusion == fusion
    for bad in (b"", b"[]", b'{"records": [{"job": {"kind": "sleep"}, "ts": 1}], "from": "a", "epoch": 1, "handled": []}'):
        with pytest.raises(Rejected, match="not a journal stream message"):
            parse_stream(TOPIC, bad)
