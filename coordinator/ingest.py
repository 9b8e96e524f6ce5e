"""The door: every message the coordinator subscribes to, parsed and checked into an event.

These run on the MQTT client's network thread, before anything is queued for the core: what
fails here is refused on `errors` with the reason (`Rejected`, a validation error) by the bus
and never reaches the core. The subscription filters fix each topic's shape, so only the id
levels need reading; an id the payload does not repeat (status) goes through the full topic
parser, and an id the payload does repeat must agree with the topic, which on a broker with
per-device accounts names the publisher.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import orjson
from pydantic import ValidationError

from edgehive.bus import Rejected, describe_validation_error
from edgehive.schemas import Capabilities, Heartbeat, JobRequest, Result, Topics, decode, envelope, parse_status
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.direct import CameraCounts, parse_offer
from edgehive.schemas.messages import FrameMeta
from edgehive.schemas.sensors import ImuReading, SensorReading, parse_readings

from .cameras import CameraPolicy
from .events import (
    CameraCountsIn,
    CameraOfferIn,
    CapabilitiesIn,
    Declined,
    FrameIn,
    HeartbeatIn,
    HomeAssistantStatus,
    NodeCleared,
    ReadingsIn,
    ResultIn,
    ResultsIn,
    SnapshotIn,
    StatusIn,
    Submitted,
)
from .frames import Frame

IDENT = re.compile(IDENT_PATTERN)


def _topic_node(topic: str) -> str:
    return topic.rsplit("/", 2)[-2]


def _check_ids(**ids: str) -> None:
    for what, value in ids.items():
        if not IDENT.fullmatch(value):
            raise Rejected(f"invalid {what} id {value[:80]!r} in the topic")


class Ingest:
    """Parsers for `MqttBus.subscribe`: (topic, payload) → event, or an exception that refuses it."""

    def __init__(self, topics: Topics, cameras: CameraPolicy, sensor_max_future_s: float, sensor_max_age_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.topics = topics
        self.cameras = cameras
        self.sensor_max_future_s = sensor_max_future_s
        self.sensor_max_age_s = sensor_max_age_s
        self.clock = clock  # stamps frames on arrival and judges readings' own stamps

    def submission(self, topic: str, payload: bytes) -> Submitted:
        return Submitted(topic, decode(JobRequest, payload))

    def capabilities(self, topic: str, payload: bytes) -> CapabilitiesIn | NodeCleared:
        if not payload:
            return NodeCleared(topic)
        caps = decode(Capabilities, payload)
        self._same_node(topic, caps.node, "message")
        return CapabilitiesIn(topic, caps)

    def heartbeat(self, topic: str, payload: bytes) -> HeartbeatIn:
        beat = decode(Heartbeat, payload)
        self._same_node(topic, beat.node, "message")
        return HeartbeatIn(topic, beat)

    def status(self, topic: str, payload: bytes) -> StatusIn | NodeCleared:
        if not payload:
            return NodeCleared(topic)
        status = parse_status(payload)
        node = self.topics.parse(topic).node
        assert node is not None  # the subscription is nodes/+/status
        return StatusIn(topic, node, status)

    @staticmethod
    def ha_status(topic: str, payload: bytes) -> HomeAssistantStatus:
        """Home Assistant's birth or will; anything but `online` asks nothing of us."""
        return HomeAssistantStatus(topic, payload.strip() == b"online")

    def declined(self, topic: str, payload: bytes) -> Declined:
        refusal = decode(Result, payload)
        self._same_node(topic, refusal.node, "message")
        return Declined(topic, refusal)

    def result(self, topic: str, payload: bytes) -> ResultIn | ResultsIn:
        """A result from `nodes/{node}/results`: the broker's ACL lets only that node's account write
        there, so the topic names the publisher, and the payload must agree with it. The raw payload
        is kept so that the relay to `results/{kind}/{source}` is byte for byte. A JSON array holds
        several results (agents send those that finish together in one message): see `results`."""
        first = payload[:1]
        if first in b" \t\r\n" and first:
            first = payload.lstrip()[:1]
        if first == b"[":
            return self.results(topic, payload)
        result = decode(Result, payload)
        topic_node = _topic_node(topic)
        if result.node != topic_node:
            raise Rejected(f"result of job {result.job_id} names node {result.node!r} but arrived on node {topic_node[:80]!r}'s topic")
        return ResultIn(topic, result, payload)

    @staticmethod
    def results(topic: str, payload: bytes) -> ResultsIn:
        """An array of results: each item is checked on its own, as a single result would be (valid,
        naming the node whose topic it came on), so a bad item is refused with its reason and the
        others still count. Each good item is relayed as its own message: its JSON, compact."""
        items = orjson.loads(payload)  # not JSON at all: a ValueError, the whole message is refused
        if not isinstance(items, list) or not items:
            raise Rejected("an array of results must hold at least one result")
        topic_node = _topic_node(topic)
        count = len(items)
        good: list[ResultIn] = []
        refused: list[tuple[str, bytes]] = []
        for index, item in enumerate(items, 1):
            try:
                raw = orjson.dumps(item)
            except TypeError as error:  # orjson.JSONEncodeError: a value orjson read but cannot write (a huge integer)
                refused.append((f"result {index} of {count}: {error}", b""))
                continue
            try:
                result = decode(Result, raw)
            except ValidationError as error:
                refused.append((f"result {index} of {count}: {describe_validation_error(error)}", raw))
                continue
            if result.node != topic_node:
                refused.append((f"result {index} of {count} (job {result.job_id}) names node {result.node!r} "
                                f"but arrived on node {topic_node[:80]!r}'s topic", raw))
                continue
            good.append(ResultIn(topic, result, raw))
        return ResultsIn(topic, good, refused)

    def snapshot(self, topic: str, payload: bytes) -> SnapshotIn:
        node, _, camera = topic.rsplit("/", 3)[-3:]
        _check_ids(node=node, camera=camera)
        return SnapshotIn(topic, node, camera, payload)

    def frame(self, topic: str, payload: bytes) -> FrameIn:
        camera = topic.rsplit("/", 1)[-1]  # the subscription fixes the shape; the id is checked here
        _check_ids(camera=camera)
        meta = FrameMeta()
        jpeg = payload
        if envelope.is_envelope(payload):
            header, jpeg = envelope.unpack(payload)
            meta = decode(FrameMeta, header)
        envelope.check_jpeg(jpeg)
        config = self.cameras.resolve(camera, meta.model)
        assert config.model is not None  # the policy's base always names the default model
        return FrameIn(topic, Frame(camera, jpeg, config.model, arrived=self.clock(), captured=meta.captured, config=config))

    @staticmethod
    def camera_offer(topic: str, payload: bytes) -> CameraOfferIn:
        """`cameras/{camera}/direct`: only the camera's own account may write it (broker ACL)."""
        camera = topic.rsplit("/", 2)[-2]
        _check_ids(camera=camera)
        return CameraOfferIn(topic, camera, parse_offer(topic, payload))

    @staticmethod
    def camera_counts(topic: str, payload: bytes) -> CameraCountsIn:
        camera = topic.rsplit("/", 2)[-2]
        _check_ids(camera=camera)
        return CameraCountsIn(topic, camera, decode(CameraCounts, payload))

    def readings(self, topic: str, payload: bytes) -> ReadingsIn:
        """Readings, checked at the door: finite, in their quantity's unit, physically possible (schemas/sensors.py, the sink's check too), stamped within the clock limits."""
        sensor, quantity = topic.rsplit("/", 2)[-2:]
        _check_ids(sensor=sensor, quantity=quantity)
        now = self.clock()
        stamped: list[tuple[SensorReading | ImuReading, float]] = []
        readings = parse_readings(quantity, payload)
        for index, reading in enumerate(readings):
            ts = reading.ts or now
            which = f"reading {index} of the batch" if payload.lstrip()[:1] == b"[" else "reading"  # as parse_readings names a bad element
            if ts > now + self.sensor_max_future_s:
                raise Rejected(f"{which} from {sensor} is stamped {ts - now:.1f} s in the future (limit {self.sensor_max_future_s:g} s; check the sensor's clock)")
            if ts < now - self.sensor_max_age_s:
                raise Rejected(f"{which} from {sensor} is {now - ts:.0f} s old (limit {self.sensor_max_age_s:g} s)")
            stamped.append((reading, ts))
        return ReadingsIn(topic, sensor, quantity, stamped)

    @staticmethod
    def _same_node(topic: str, node: str, what: str) -> None:
        topic_node = _topic_node(topic)
        if node != topic_node:
            raise Rejected(f"{what} names node {node!r} but arrived on node {topic_node[:80]!r}'s topic")
