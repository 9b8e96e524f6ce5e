"""Sites bridged to a hub with Mosquitto's own bridge: a site's broker, coordinator and agent
keep working when the link to the hub is cut, and what crossed neither way is lost or doubled
when it heals.

Real parts: two Debian Mosquitto brokers on loopback (the hub with the production config, auth
and ACL from broker/prepare.sh; the site with the bridge broker/bridge.sh renders), a TCP link
between them that the test cuts and heals, and the real `edgehive coordinator` and `agent` at
the site. Bridging is Mosquitto's: the embedded amqtt broker cannot be a site or a hub.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import (
    REPO_ROOT,
    AuthMosquitto,
    Fleet,
    MosquittoProcess,
    Recorder,
    call_failed,
    free_port,
    run_fleet,
    user_exists,
    wait_nodes_online,
    wait_until,
)

from edgehive.broker.mosquitto import render_config

pytestmark = pytest.mark.integration

BRIDGE_SCRIPT = REPO_ROOT / "broker" / "bridge.sh"
HUB_USERS = "barn:pw-barn:site farm:pw-farm:site shop:pw-shop:site ops:pw-ops:client router:pw-router:coordinator"


class Link:
    """A TCP link from the site to the hub that the test can cut (every connection closed, new
    ones refused) and heal, as a failing WAN would."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.heal()

    def heal(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()
        if self._thread is not None:
            self._thread.join(5)

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([server], [], [], 0.1)
                if not ready:
                    continue
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SiteBroker(MosquittoProcess):
    """The site's Mosquitto: the production config, anonymous inside the site, with the bridge
    broker/bridge.sh renders from the site's settings in its include folder."""

    kind = "mosquitto"

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edgehive-site-broker-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.data = self.dir / "data"
        self.data.mkdir()
        include = self.dir / "conf.d"
        include.mkdir()
        bridge = subprocess.run(["sh", str(BRIDGE_SCRIPT)], env={**os.environ, **env}, check=True, capture_output=True, text=True)
        (include / "bridge.conf").write_text(bridge.stdout)
        if os.geteuid() == 0 and user_exists("mosquitto"):
            for path in (self.data, self.dir, include, include / "bridge.conf"):
                shutil.chown(path, "mosquitto")
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(render_config(self.port, self.data, log_file=self.log, include_dir=include))
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def bridge_env(prefix: str, link: Link, site: str = "barn", password: str = "pw-barn") -> dict[str, str]:
    return {"EDGEHIVE_HUB_ADDRESS": f"127.0.0.1:{link.port}", "EDGEHIVE_SITE": site, "EDGEHIVE_HUB_PASSWORD": password,
            "EDGEHIVE_PREFIX": prefix}


class Sites:
    """A hub, a link, the barn site's broker with its coordinator and agent, and a recorder on each side."""

    def __init__(self, prefix: str, fleet: Fleet, hub: AuthMosquitto, link: Link, site: SiteBroker) -> None:
        self.prefix, self.fleet, self.hub, self.link, self.site = prefix, fleet, hub, link, site
        self.at_hub = Recorder(hub.url_for("ops"), prefix)
        self.at_site = Recorder(site.url, prefix)

    def bridge_state(self) -> str | None:
        states = [p for t, p, _ in self.at_hub.messages if t == f"{self.prefix}/sites/barn/bridge"]
        return states[-1].decode() if states else None

    def submit_at_hub(self, job_id: str) -> None:
        self.at_hub.publish("sites/barn/jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": 0.01}}))

    def submit_at_site(self, job_id: str) -> None:
        self.at_site.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": 0.01}}))

    def results_at_hub(self) -> Counter[str]:
        return Counter(r["job_id"] for r in self.at_hub.json("sites/barn/results/sleep/+"))

    def close(self) -> None:
        self.at_hub.bus.stop()
        self.at_site.bus.stop()


@pytest.fixture
def sites(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sites]:
    prefix = f"test-{uuid.uuid4().hex[:8]}/v1"
    hub = AuthMosquitto(HUB_USERS, prefix)
    hub.start()
    link = Link(hub.port)
    site = SiteBroker(bridge_env(prefix, link))
    site.start()
    fleets = run_fleet(site, prefix, tmp_path, lambda: call_failed(request))
    fleet = next(fleets)
    world = Sites(prefix, fleet, hub, link, site)
    try:
        wait_until(lambda: world.bridge_state() == "1", 20, "the bridge up at the hub")
        fleet.coordinator()
        fleet.agent("barn-pi", EDGEHIVE_SLOTS="4", EDGEHIVE_WORKERS="2")
        wait_nodes_online(world.at_site, 1, timeout_s=60)
        yield world
    finally:
        world.close()
        next(fleets, None)
        link.cut()
        site.close()
        hub.close()


def test_the_bridge_renders_from_the_site_settings_and_refuses_bad_ones() -> None:
    out = subprocess.run(["sh", str(BRIDGE_SCRIPT)], env={**os.environ, "EDGEHIVE_HUB_ADDRESS": "hub.example:8883", "EDGEHIVE_SITE": "barn",
                                                           "EDGEHIVE_HUB_CAFILE": "/ca.crt", "EDGEHIVE_PREFIX": "farm/v1"},
                         check=True, capture_output=True, text=True).stdout
    assert "address hub.example:8883" in out and "remote_username barn" in out and "bridge_cafile /ca.crt" in out
    assert "cleansession false" in out and "notification_topic farm/v1/sites/barn/bridge" in out
    assert "topic results/# out 1 farm/v1/ farm/v1/sites/barn/" in out
    assert "topic jobs/submit in 1 farm/v1/ farm/v1/sites/barn/" in out
    assert subprocess.run(["sh", str(BRIDGE_SCRIPT)], env={**os.environ, "EDGEHIVE_HUB_ADDRESS": ""}, capture_output=True).stdout == b""
    for env in ({"EDGEHIVE_SITE": "barn/2"}, {"EDGEHIVE_SITE": ""}, {"EDGEHIVE_SITE": "barn", "EDGEHIVE_HUB_ADDRESS": "hub:port"}):
        bad = subprocess.run(["sh", str(BRIDGE_SCRIPT)], env={**os.environ, "EDGEHIVE_HUB_ADDRESS": "hub", **env}, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.startswith("broker: EDGEHIVE_"), bad.stderr


def test_a_job_submitted_at_the_hub_runs_at_the_site_and_its_result_comes_up(sites: Sites) -> None:
    sites.submit_at_hub("hub-1")
    done = wait_until(lambda: next((s for s in sites.at_hub.json("sites/barn/jobs/hub-1/state") if s["state"] == "DONE"), None),
                      30, "DONE of hub-1 at the hub")
    assert done["node"] == "barn-pi"
    [result] = wait_until(lambda: [r for r in sites.at_hub.json("sites/barn/results/sleep/+") if r["job_id"] == "hub-1"], 10, "the result at the hub")
    assert result["ok"] and result["node"] == "barn-pi"
    assert sites.at_site.wait_result("hub-1")["ok"]  # the site has it too, under its own topics
    online = [s for s in sites.at_hub.json("sites/barn/nodes/+/status") if s.get("state") == "online"]
    assert online, "the site's node status did not come up to the hub"
    assert any(t.endswith("/sites/barn/coordinator/status") for t, _, _ in sites.at_hub.messages)


def test_a_site_keeps_working_with_its_link_cut_and_nothing_is_lost_or_doubled_when_it_heals(sites: Sites) -> None:
    sites.submit_at_hub("before")
    wait_until(lambda: sites.results_at_hub()["before"] == 1, 30, "a job through the bridge before the cut")
    sites.link.cut()
    wait_until(lambda: sites.bridge_state() == "0", 30, "the hub seeing the site's bridge down")
    hub_jobs = [f"hub-{i}" for i in range(5)]
    site_jobs = [f"site-{i}" for i in range(5)]
    for job in hub_jobs:
        sites.submit_at_hub(job)  # waits at the hub for the site's persistent bridge session
    for job in site_jobs:
        sites.submit_at_site(job)  # the site works on alone
    for job in site_jobs:
        assert sites.at_site.wait_result(job, 30)["ok"]
    assert not any(job in sites.results_at_hub() for job in hub_jobs + site_jobs)  # nothing crossed: the link is cut
    sites.link.heal()
    wait_until(lambda: sites.bridge_state() == "1", 60, "the bridge up again")
    wanted = set(hub_jobs + site_jobs + ["before"])
    def all_in() -> Counter[str] | None:
        counts = sites.results_at_hub()
        return counts if wanted <= set(counts) else None

    counts = wait_until(all_in, 60, "every result at the hub")
    assert all(counts[job] == 1 for job in wanted), counts  # each result once, none doubled
    for job in hub_jobs:
        assert sites.at_site.wait_result(job, 30)["ok"]  # the hub's jobs came down and ran at the site
        assert [s["state"] for s in sites.at_site.states(job)].count("DONE") == 1


def test_a_site_account_at_the_hub_speaks_only_for_its_own_site(sites: Sites) -> None:
    from harness import bus_url

    from edgehive.bus import MqttBus
    from edgehive.schemas import Topics

    impostor = MqttBus(bus_url(sites.hub.url_for("barn")), Topics(sites.prefix), f"impostor-{uuid.uuid4().hex[:6]}", source="test")
    impostor.start(timeout_s=10)
    try:
        mark = sites.at_hub.mark()
        fake: dict[str, Any] = {"v": 1, "job_id": "fake", "kind": "sleep", "node": "farm-pi", "source": "fake", "ok": True, "timings": {}}
        impostor.publish(f"{sites.prefix}/sites/farm/results/sleep/fake", orjson.dumps(fake), qos=1)
        impostor.publish(f"{sites.prefix}/sites/barn/probe", b"own", qos=1)  # the same account, its own site: let through
        wait_until(lambda: any(t.endswith("/sites/barn/probe") for t, _, _ in sites.at_hub.messages[mark:]), 10, "the probe")
        assert not any("/sites/farm/" in t for t, _, _ in sites.at_hub.messages[mark:])
    finally:
        impostor.stop()


# -- a hub that answers like one coordinator (edgehive hub) --------------------------------------


class TwoSites:
    """A hub with its router, and two sites: the barn's agent runs milking jobs, the shop's the till."""

    def __init__(self, prefix: str, hub: AuthMosquitto, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.prefix, self.hub = prefix, hub
        self.links: dict[str, Link] = {}
        self.brokers: dict[str, SiteBroker] = {}
        self._fleets: list[Iterator[Fleet]] = []
        self.at_hub = Recorder(hub.url_for("ops"), prefix)
        self.at_barn: Recorder | None = None
        for site, tag in (("barn", "milking"), ("shop", "till")):
            link = self.links[site] = Link(hub.port)
            broker = self.brokers[site] = SiteBroker(bridge_env(prefix, link, site, f"pw-{site}"))
            broker.start()
            (tmp_path / site).mkdir()
            fleets = run_fleet(broker, prefix, tmp_path / site, lambda: call_failed(request))
            fleet = next(fleets)
            self._fleets.append(fleets)
            fleet.coordinator(**({"EDGEHIVE_HAND_UP": "true"} if site == "barn" else {}))  # the barn hands up what it cannot run
            fleet.agent(f"{site}-pi", EDGEHIVE_TAGS=tag)
            if site == "barn":
                self.router_fleet = fleet
                self.at_barn = Recorder(broker.url, prefix)
        self.router_fleet._spawn("router", ["hub"], self.router_fleet.env(EDGEHIVE_MQTT_URL=hub.url_for("router"), EDGEHIVE_LOG_LEVEL="INFO"))
        for site in self.links:
            wait_until(lambda site=site: any(s.get("state") == "online" for s in self.at_hub.json(f"sites/{site}/nodes/+/status")),
                       60, f"{site}'s node online at the hub")
        wait_until(lambda: self.at_hub.json("hub/status") == [{"raw": "online"}], 30, "the hub router online")
        for site in self.links:  # the way down works: the bridge's subscription at the hub is in place
            self._probe(site)

    def _probe(self, site: str) -> None:
        probe = orjson.dumps({"v": 1, "kind": "noop", "id": f"probe-{site}"})

        def answered() -> bool:
            self.at_hub.publish(f"sites/{site}/jobs/submit", probe)  # a resubmission is answered with its state
            return wait_until(lambda: bool(self.at_hub.json(f"sites/{site}/jobs/probe-{site}/state")), 1.0, "probe") is not None

        wait_until(lambda: _quietly(answered), 30, f"a job to {site} through its bridge")

    def submit(self, job_id: str, tags: list[str]) -> None:
        self.at_hub.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": 0.01},
                                                         "requires": {"tags": tags}}))

    def close(self) -> None:
        self.at_hub.bus.stop()
        if self.at_barn is not None:
            self.at_barn.bus.stop()
        for fleets in self._fleets:
            next(fleets, None)
        for site in self.links:
            self.links[site].cut()
            self.brokers[site].close()


def _quietly(check: Any) -> bool:
    try:
        return bool(check())
    except AssertionError:
        return False


@pytest.fixture
def two_sites(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TwoSites]:
    prefix = f"test-{uuid.uuid4().hex[:8]}/v1"
    hub = AuthMosquitto(HUB_USERS, prefix)
    hub.start()
    world = None
    try:
        world = TwoSites(prefix, hub, tmp_path, request)
        yield world
    finally:
        if world is not None:
            world.close()
        hub.close()


def test_the_hub_routes_each_job_to_a_site_that_can_run_it_and_answers_like_one_coordinator(two_sites: TwoSites) -> None:
    two_sites.submit("milk-1", ["milking"])
    two_sites.submit("till-1", ["till"])
    for job, node in (("milk-1", "barn-pi"), ("till-1", "shop-pi")):
        done = two_sites.at_hub.wait_state(job, "DONE", 30)  # on the hub's own jobs/{id}/state
        assert done["node"] == node
        result = two_sites.at_hub.wait_result(job, 10)  # and on the hub's own results/sleep/{id}
        assert result["ok"] and result["node"] == node
    assert not two_sites.at_hub.json("sites/shop/jobs/milk-1/state")  # each went to one site only
    assert not two_sites.at_hub.json("sites/barn/jobs/till-1/state")
    mark = two_sites.at_hub.mark()
    two_sites.submit("milk-1", ["milking"])  # submitted again (a lost ack): answered by the same site, not run twice
    again = wait_until(lambda: two_sites.at_hub.json("jobs/milk-1/state", after=mark), 30, "the resubmission answered")
    assert again[-1]["state"] == "DONE" and again[-1]["node"] == "barn-pi"
    assert [s["state"] for s in two_sites.at_hub.json("sites/barn/jobs/milk-1/state")].count("RUNNING") == 1


def test_a_job_no_site_can_run_fails_at_the_hub_with_the_reason(two_sites: TwoSites) -> None:
    two_sites.submit("weld-1", ["welding"])
    failed = two_sites.at_hub.wait_state("weld-1", "FAILED", 30)
    assert "no site has a live node that can run it" in failed["reason"] and "barn" in failed["reason"]
    assert any("weld-1" in e["reason"] for e in two_sites.at_hub.json("errors"))


def test_edgehive_submit_against_the_hub_waits_for_the_site_s_result(two_sites: TwoSites) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgehive.cli", "submit", "sleep", "--params", '{"seconds": 0.01}', "--requires", '{"tags": ["till"]}',
         "--timeout", "30"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")},
             "EDGEHIVE_MQTT_URL": two_sites.hub.url_for("ops"), "EDGEHIVE_PREFIX": two_sites.prefix},
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "shop-pi" in out.stdout


def test_a_site_hands_up_a_job_none_of_its_nodes_can_run_and_gets_its_result_back(two_sites: TwoSites) -> None:
    barn = two_sites.at_barn
    assert barn is not None
    barn.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": "till-at-barn", "params": {"seconds": 0.01},
                                              "requires": {"tags": ["till"]}}))
    handed = barn.wait_state("till-at-barn", "REQUESTED", 30)
    wait_until(lambda: any("handed up to the hub" in (s.get("reason") or "") for s in barn.states("till-at-barn")), 10, "handed up")
    done = barn.wait_state("till-at-barn", "DONE", 30)  # at the barn, on its own topic: the shop ran it
    assert done["node"] == "shop-pi" and handed["job_id"] == "till-at-barn"
    assert barn.wait_result("till-at-barn", 10)["node"] == "shop-pi"
    assert two_sites.at_hub.wait_state("till-at-barn", "DONE", 10)["node"] == "shop-pi"
    barn.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": "weld-at-barn", "requires": {"tags": ["welding"]}}))
    failed = barn.wait_state("weld-at-barn", "FAILED", 30)  # no site can: FAILED at the barn, with the hub's reason
    assert "no site for it" in failed["reason"]
