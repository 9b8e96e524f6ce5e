"""`edgehive hub`: the hub's router, so that a hub of bridged sites answers like one coordinator.

A job submitted on the hub's own `jobs/submit` goes to a site that can run it (coordinator/
sites.py), as `sites/{site}/jobs/submit`, which that site's bridge carries down to its
coordinator. The site's job states and result come back up its bridge, and the router relays
them to the hub's own `jobs/{id}/state` and `results/{kind}/{source}`: `edgehive submit`,
`mosquitto_sub` and the sink work against a hub as against one site. A job no site can run is
FAILED at once with the reason. Only what comes from the site the job was sent to is relayed
(the hub's ACL lets a site's bridge write only under its own `sites/{site}/`). Jobs may also be
submitted to one site by name, on `sites/{site}/jobs/submit`; those are the site's alone.

One thread (paho's network thread) owns the router's state; messages are small and few (jobs
submitted at the hub, not frames or readings), so it handles each as it comes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict

from edgehive import gctune
from edgehive.bus import MqttBus, Outgoing, Rejected
from edgehive.schemas import Capabilities, CoordinatorStats, JobRequest, JobState, JobStateName, Result, Topics, decode, encode, parse_status
from edgehive.schemas.messages import job_state_json
from edgehive.settings import CommonSettings
from edgehive.signals import Stop

from .ingest import IDENT
from .sites import SiteBook

log = logging.getLogger(__name__)

ROUTED_KEPT = 100_000  # jobs whose site is remembered, to relay their states and result


class HubSettings(CommonSettings):
    """Settings of `edgehive hub` (the common ones: the hub broker's URL, its account, the prefix)."""


class HubRouter:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.book = SiteBook()
        self.routed: OrderedDict[str, str] = OrderedDict()  # job id → the site it was sent to
        self.handed: OrderedDict[str, str] = OrderedDict()  # job id → the site that handed it up (routed elsewhere)
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-hub-{settings.prefix.replace('/', '-')}", source="hub",
            will=Outgoing(f"{settings.prefix}/hub/status", b"offline", qos=1, retain=True),
            clean_session=False,  # on Mosquitto, jobs submitted at the hub while it restarts wait for it
            max_payload_bytes=settings.max_payload_bytes,
        )

    # -- what the sites' bridges carry up (parsed and checked at the door, then handled) --------

    @staticmethod
    def _site_of(topic: str, depth: int) -> str:
        """The `{site}` level of `{prefix}/sites/{site}/...`, `depth` levels from the end."""
        site = topic.split("/")[-depth]
        if not IDENT.fullmatch(site):
            raise Rejected(f"invalid site id {site[:80]!r} in the topic")
        return site

    def _parse_capabilities(self, topic: str, payload: bytes) -> tuple[str, Capabilities | str]:
        """A node's capabilities, or its id when the retained copy was cleared (it left its site's fleet)."""
        if not payload:
            return self._site_of(topic, 4), topic.split("/")[-2]
        caps = decode(Capabilities, payload)
        if caps.node != topic.split("/")[-2]:
            raise Rejected(f"capabilities of node {caps.node} on another node's topic")
        return self._site_of(topic, 4), caps

    def _parse_status(self, topic: str, payload: bytes) -> tuple[str, str, bool]:
        return self._site_of(topic, 4), topic.split("/")[-2], bool(payload) and parse_status(payload).state == "online"

    def _parse_link(self, topic: str, payload: bytes) -> tuple[str, bool]:
        return self._site_of(topic, 2), payload.strip() == b"1"

    def _parse_stats(self, topic: str, payload: bytes) -> tuple[str, CoordinatorStats]:
        return self._site_of(topic, 3), decode(CoordinatorStats, payload)

    def _parse_state(self, topic: str, payload: bytes) -> tuple[str, str, bytes]:
        state = decode(JobState, payload)
        if topic.split("/")[-2] != state.job_id:
            raise Rejected(f"state of job {state.job_id} on another job's topic")
        return self._site_of(topic, 4), state.job_id, payload

    def _parse_result(self, topic: str, payload: bytes) -> tuple[str, Result, bytes]:
        return self._site_of(topic, 4), decode(Result, payload), payload

    def _on_capabilities(self, topic: str, value: tuple[str, Capabilities | str]) -> None:
        self.book.on_capabilities(*value)

    def _on_status(self, topic: str, value: tuple[str, str, bool]) -> None:
        self.book.on_status(*value)

    def _on_link(self, topic: str, value: tuple[str, bool]) -> None:
        self.book.on_link(*value)

    def _on_stats(self, topic: str, value: tuple[str, CoordinatorStats]) -> None:
        self.book.on_stats(*value)

    def _on_state(self, topic: str, value: tuple[str, str, bytes]) -> None:
        """`sites/{site}/jobs/{id}/state`: relayed as the hub's `jobs/{id}/state` for jobs routed there."""
        site, job_id, payload = value
        if self.routed.get(job_id) == site:
            self.bus.publish(self.topics.job_state(job_id), payload, qos=1)
            origin = self.handed.get(job_id)
            if origin is not None:
                self.bus.publish(f"{self._handed(origin)}/jobs/{job_id}/state", payload, qos=1)

    def _on_result(self, topic: str, value: tuple[str, Result, bytes]) -> None:
        """`sites/{site}/results/{kind}/{source}`: relayed as the hub's `results/{kind}/{source}`."""
        site, result, payload = value
        if self.routed.get(result.job_id) == site:
            self.bus.publish(self.topics.result(result.kind, result.source), payload, qos=1)
            origin = self.handed.get(result.job_id)  # kept (bounded): its final state may come after the result
            if origin is not None:
                self.bus.publish(f"{self._handed(origin)}/results/{result.kind}/{result.source}", payload, qos=1)

    def _handed(self, origin: str) -> str:
        """Where the states and result of a job `origin` handed up go: its bridge carries them down."""
        return f"{self.settings.prefix}/sites/{origin}/handed"

    # -- jobs submitted at the hub ------------------------------------------------------------

    @staticmethod
    def _parse_submission(topic: str, payload: bytes) -> JobRequest:
        request = decode(JobRequest, payload)
        return request if request.id is not None else request.model_copy(update={"id": uuid.uuid4().hex[:20]})

    def _parse_handed_up(self, topic: str, payload: bytes) -> tuple[str, JobRequest]:
        return self._site_of(topic, 3), self._parse_submission(topic, payload)

    def _on_handed_up(self, topic: str, value: tuple[str, JobRequest]) -> None:
        """`sites/{site}/hub/submit`: a job no node of that site can run, for another site."""
        origin, request = value
        assert request.id is not None
        self.handed[request.id] = origin
        if len(self.handed) > ROUTED_KEPT:
            self.handed.popitem(last=False)
        self._on_submit(topic, request, exclude=origin)

    def _on_submit(self, topic: str, request: JobRequest, exclude: str | None = None) -> None:
        job_id = request.id
        assert job_id is not None
        site: str | None = self.routed.get(job_id)  # a resubmission (a submitter that lost its ack) goes to the same
        why = "submitted again"  # site, which answers with the job's state: never run twice
        if site is None:
            site, why = self.book.choose(request.kind, request.requires, exclude)
        if site is None:
            reason = f"no site for it: {why}"
            self.bus.report_error(topic, f"job {job_id} ({request.kind}) refused: {reason}")
            state = job_state_json(job_id, JobStateName.FAILED, time.time(), request.kind, 0, None, reason)
            self.bus.publish(self.topics.job_state(job_id), state, qos=1)
            origin = self.handed.pop(job_id, None)
            if origin is not None:
                self.bus.publish(f"{self._handed(origin)}/jobs/{job_id}/state", state, qos=1)
            return
        self.routed[job_id] = site
        if len(self.routed) > ROUTED_KEPT:
            self.routed.popitem(last=False)
        log.info("job %s (%s) → site %s: %s", job_id, request.kind, site, why)
        self.bus.publish(f"{self.settings.prefix}/sites/{site}/jobs/submit", encode(request), qos=1)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, connect_timeout_s: float | None = None) -> None:
        sites = f"{self.settings.prefix}/sites/+"
        limit = self.settings.max_payload_bytes
        self.bus.subscribe(f"{sites}/nodes/+/capabilities", self._on_capabilities, self._parse_capabilities, max_bytes=limit)
        self.bus.subscribe(f"{sites}/nodes/+/status", self._on_status, self._parse_status, max_bytes=limit)
        self.bus.subscribe(f"{sites}/bridge", self._on_link, self._parse_link, max_bytes=16)
        self.bus.subscribe(f"{sites}/coordinator/stats", self._on_stats, self._parse_stats, qos=0, max_bytes=4 * limit)
        self.bus.subscribe(f"{sites}/jobs/+/state", self._on_state, self._parse_state, max_bytes=limit)
        self.bus.subscribe(f"{sites}/results/+/+", self._on_result, self._parse_result, max_bytes=16 * limit)
        self.bus.subscribe(f"{sites}/hub/submit", self._on_handed_up, self._parse_handed_up, max_bytes=limit)
        self.bus.subscribe(self.topics.submit, self._on_submit, self._parse_submission, max_bytes=limit, refuse_retained=(
            "retained submissions are refused (a retained job would run again at every restart); publish without -r"))
        self.bus.on_connect(self._announce)
        self.bus.start(timeout_s=connect_timeout_s)
        log.info("hub router started on %s under %s", self.settings.broker.redacted(), self.settings.prefix)

    def _announce(self) -> None:
        self.bus.publish(f"{self.settings.prefix}/hub/status", b"online", qos=1, retain=True)

    def stop(self) -> None:
        self.bus.stop([Outgoing(f"{self.settings.prefix}/hub/status", b"offline", qos=1, retain=True)])

    def run_forever(self) -> None:
        stop = Stop().install()
        gctune.tune()
        self.start()
        stop.wait()
        log.info("hub: %s, stopping", stop.signal_name)
        self.stop()

