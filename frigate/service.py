"""`edgehive frigate`: Frigate's events in, edgehive's second opinion out.

It listens to Frigate's MQTT API on the fleet's broker (`frigate/events` and the snapshot JPEGs
on `frigate/{camera}/{label}/snapshot`), sends each new event's snapshot to the fleet as a frame
of the edgehive camera `frigate.{camera}` (the coordinator runs it through that camera's model
and pipeline, EDGEHIVE_CAMERAS), and publishes the verdict on `results/frigate/{camera}`, as
Home Assistant entities, and optionally as the event's sub label in Frigate (frigate/judge.py
says which snapshot belongs to which event, and why each event is judged once).
"""

from __future__ import annotations

import logging
import os

from edgehive.bus import MqttBus, Outgoing
from edgehive.haretained import RetainedConfigs
from edgehive.schemas import Topics, encode
from edgehive.schemas.frigate import VERDICT_KIND, FrigateVerdict
from edgehive.schemas.kinds import DETECT_KIND
from edgehive.schemas.messages import Result
from edgehive.schemas.results import parse_result
from edgehive.schemas.vision import DetectionOutput
from edgehive.signals import Stop

from . import discovery
from .api import FrigateApi, Login
from .discovery import camera_configs
from .events import SnapshotParser, parse_event
from .judge import Judge, Limits
from .settings import FrigateSettings
from .sublabel import SubLabels
from .verdict import Rules

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 16 << 20  # a result with many detections and stages; far below any snapshot limit
MAX_SNAPSHOT_READ = 64 << 20  # the bus's own bound; EDGEHIVE_FRIGATE_MAX_SNAPSHOT_BYTES is checked with a clearer message


class FrigateBridge:
    """The bus, the judge, the Home Assistant configs and the sub-label calls of one bridge."""

    def __init__(self, settings: FrigateSettings, bus: MqttBus | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        will = Outgoing(self.topics.frigate_status, b"offline", qos=1, retain=True)
        self.bus = bus or MqttBus(settings.broker, self.topics, f"edgehive-frigate-{settings.prefix.replace('/', '-')}-{settings.node_id}",
                                  source=f"frigate:{settings.node_id}", will=will, max_payload_bytes=settings.max_payload_bytes)
        rules = Rules(settings.frigate_min_score, settings.confirm_label_map,
                      settings.frigate_sub_label_confirmed if settings.frigate_url else "",
                      settings.frigate_sub_label_unconfirmed if settings.frigate_url else "")
        limits = Limits(settings.frigate_snapshot_wait_s, settings.frigate_snapshot_max_age_s, settings.frigate_job_timeout_s,
                        settings.frigate_queue_max)
        self.judge = Judge(rules, self, limits, frigate_prefix=settings.frigate_topic_prefix, camera_prefix=settings.frigate_camera_prefix,
                           model=settings.frigate_model, cameras=frozenset(settings.camera_list), labels=frozenset(settings.label_list))
        self.sub_labels = SubLabels(frigate_api(settings), self.report) if settings.frigate_url else None
        self.ha_prefix = settings.ha_discovery_prefix.strip("/")
        self.announced: list[str] = []  # cameras whose Home Assistant configs went out
        frigate = settings.frigate_topic_prefix
        self.bus.subscribe(f"{frigate}/events", lambda _t, event: self.judge.on_event(event), parse_event)
        snapshots = SnapshotParser(settings.frigate_max_snapshot_bytes, self.judge.on_snapshot_refused)
        self.bus.subscribe(f"{frigate}/+/+/snapshot", self._snapshot, snapshots, max_bytes=MAX_SNAPSHOT_READ)
        if self.ha_prefix:
            self.bus.subscribe(f"{self.ha_prefix}/status", self._ha_status)
        # With EDGEHIVE_FRIGATE_CAMERAS, configs of cameras no longer in it are cleared at every
        # connect (read back from the broker first); without it no camera is known to be gone.
        ha, topics = self.ha_prefix, self.topics
        self._ha_configs = RetainedConfigs(
            self.bus, [f"{ha}/{component}/+/config" for component in discovery.COMPONENTS],
            lambda topic: discovery.ours(ha, topics, topic), f"{topics.frigate_status.rpartition('/')[0]}/ha-probe", self._clear_stale,
        ) if ha and settings.camera_list else None
        self.bus.on_connect(self._online)
        self.bus.on_disconnect(self._offline)
        self.bus.every(0.25, self._tick)
        for camera in settings.camera_list:  # named cameras appear in Home Assistant before their first event
            source = settings.frigate_camera_prefix + camera
            if camera not in self.judge.known_cameras:
                self.judge.known_cameras.add(camera)
                self.new_camera(camera, source)

    # -- Outlet (called by the judge, on the network thread) --------------------------------------

    def send_frame(self, source: str, payload: bytes) -> None:
        self.bus.publish(self.topics.frames(source), payload, qos=1)

    def verdict(self, verdict: FrigateVerdict) -> None:
        self.bus.publish(self.topics.result(VERDICT_KIND, verdict.camera), encode(verdict), qos=1)
        log.info("event %s (%s %s on %s): %s", verdict.event_id, verdict.label, verdict.frigate_score, verdict.camera,
                 ("confirmed" if verdict.confirmed else "not confirmed") + f" (score {verdict.score})" if verdict.ok else f"not judged: {verdict.error}")
        if self.sub_labels is not None and verdict.sub_label:
            self.sub_labels.set(verdict.event_id, verdict.sub_label, verdict.score if verdict.confirmed else None)

    def report(self, topic: str, reason: str) -> None:
        self.bus.report_error(topic, reason)

    def new_camera(self, camera: str, source: str) -> None:
        """A camera's first event: its results topic is watched, and Home Assistant hears of it."""
        self.bus.subscribe(self.topics.result(DETECT_KIND, source), self._result, self._parse_result, max_bytes=MAX_RESULT_BYTES)
        self.announced.append(camera)
        self._announce([camera])

    # -- handlers ----------------------------------------------------------------------------------

    def _snapshot(self, _topic: str, snapshot: object) -> None:
        if snapshot is not None:
            self.judge.on_snapshot(snapshot)  # type: ignore[arg-type]  # the parser returns a Snapshot or None

    @staticmethod
    def _parse_result(topic: str, payload: bytes) -> tuple[str, Result[DetectionOutput]]:
        return topic.rsplit("/", 1)[-1], parse_result(payload, DetectionOutput)

    def _result(self, _topic: str, item: tuple[str, Result[DetectionOutput]]) -> None:
        self.judge.on_result(*item)

    def _ha_status(self, _topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            self._announce(self.announced)

    def _online(self) -> None:
        self.bus.publish(self.topics.frigate_status, b"online", qos=1, retain=True)
        self._announce(self.announced)
        if self._ha_configs is not None:
            self._ha_configs.start()

    def _offline(self) -> None:
        if self._ha_configs is not None:
            self._ha_configs.stop()  # read again at the next connect

    def _tick(self) -> None:
        self.judge.tick()
        if self._ha_configs is not None:
            self._ha_configs.again()

    def _clear_stale(self, found: dict[str, bytes]) -> None:
        """Our retained configs as the broker held them: those of cameras no longer in
        EDGEHIVE_FRIGATE_CAMERAS (nor seen since the start) get an empty retained message."""
        gone = discovery.stale(self.ha_prefix, self.topics, found, set(self.settings.camera_list) | set(self.announced))
        if gone:
            log.info("Home Assistant: clearing %d retained configs of Frigate cameras not in EDGEHIVE_FRIGATE_CAMERAS", len(gone))
        for topic in gone:
            self.bus.publish(topic, b"", qos=1, retain=True)

    def _announce(self, cameras: list[str]) -> None:
        if not self.ha_prefix:
            return
        for camera in cameras:
            for topic, config in camera_configs(self.ha_prefix, self.topics, camera):
                self.bus.publish(topic, config, qos=1, retain=True)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> None:
        if self.sub_labels is not None:
            self.sub_labels.start()
        self.bus.start(timeout_s=timeout_s)

    def stop(self) -> None:
        self.bus.stop([Outgoing(self.topics.frigate_status, b"offline", qos=1, retain=True)])
        if self.sub_labels is not None:
            self.sub_labels.stop()


def frigate_api(settings: FrigateSettings) -> FrigateApi:
    """Frigate's HTTP API as the settings describe it: port 5000 as it is, port 8971 with a login."""
    login = Login(settings.frigate_user, settings.frigate_password, settings.frigate_cookie_name) if settings.frigate_user else None
    return FrigateApi(settings.frigate_url, settings.frigate_http_timeout_s, login, settings.frigate_ca_file, settings.frigate_tls_verify)


def run_frigate(settings: FrigateSettings) -> int:
    """The `edgehive frigate` process: until SIGTERM/SIGINT."""
    stop = Stop().install()
    bridge = FrigateBridge(settings)
    bridge.start(timeout_s=None)  # connects in the background, with backoff, for as long as it takes
    log.info("frigate bridge %s: %s/events on %s → results/frigate/+ (sub labels: %s%s)", os.getpid(), settings.frigate_topic_prefix,
             settings.broker.redacted(), settings.frigate_url or "off", f", as {settings.frigate_user!r}" if settings.frigate_user else "")
    try:
        stop.wait()
    finally:
        bridge.stop()
    return 0
