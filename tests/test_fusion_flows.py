"""Sensor fusion end to end: readings over MQTT, windows in the coordinator, fusion on agents.

Runs on real Mosquitto and real amqtt. The strongest check replays the same readings through
the same filter in this process: every window's estimate must match, which proves the
coordinator handed each window the right prior, also across an agent killed mid-window.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from typing import ClassVar

import numpy as np
import orjson
import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online, wait_until

from edgehive.agents.fusion import FilterState, KalmanConfig, Reading, fuse_window

pytestmark = pytest.mark.integration


def groups(**spec: object) -> str:
    return orjson.dumps({"room": {"quantity": "temperature", **spec}}).decode()


def reading(value: float, ts: float, **extra: object) -> bytes:
    return orjson.dumps({"v": 1, "value": value, "unit": "°C", "ts": ts, **extra})


def fusion_results(recorder: Recorder, group: str = "room") -> dict[int, dict]:
    """Fusion results by window number (a window fused twice after a false death appears once)."""
    return {r["output"]["window"]: r for r in recorder.json(f"results/fusion/{group}") if r.get("ok")}


def test_mosquitto_pub_readings_json_and_bare_give_a_fused_result_on_mosquitto_sub(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=groups(window_count=3))
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    port = str(fleet.broker.port)
    with MosquittoSub(port, f"{prefix}/results/fusion/#") as sub:
        now = time.time()
        for sensor, payload in (("t1", reading(21.0, now - 0.2).decode()), ("t2", "21.4"), ("t3", '{"v":1,"value":21.2,"unit":"C"}')):
            subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/sensors/{sensor}/temperature", "-m", payload], check=True)
        topic, payload = sub.next_message(timeout_s=20)
    assert topic == f"{prefix}/results/fusion/room"
    result = orjson.loads(payload)
    out = result["output"]
    assert result["ok"] is True and result["kind"] == "fusion" and result["node"] == "pi-1"
    assert out["method"] == "kalman" and out["group"] == "room" and out["quantity"] == "temperature" and out["unit"] == "°C"
    assert out["window"] == 1 and out["readings"] == 3 and out["used"] == ["t1", "t2", "t3"] and out["rejected"] == []
    assert 21.0 <= out["estimate"] <= 21.4 and out["variance"] > 0
    assert out["window_start"] <= out["window_end"] and out["state"]["estimate"] == out["estimate"]
    assert {"queued", "dispatched", "started", "finished"} <= set(result["timings"])


BAD_READINGS = [
    ("t1", b"not a number", "not a reading"),
    ("t1", b"nan", "finite"),
    ("t1", b"-inf", "finite"),
    ("t1", b'{"v":1,"value":NaN}', ""),
    ("t1", b'{"v":1,"value":1e999}', ""),
    ("t1", b'{"v":1,"value":70.1,"unit":"F"}', "unit"),
    ("t1", b'{"v":1,"value":500,"unit":"hPa"}', "unit"),
    ("t2", b'{"v":1,"value":21}', ""),  # placeholder ts replaced below: far future
    ("t2", b'{"v":1,"value":21,"ts":1000}', "old"),
    ("t2", b'{"v":1,"value":21,"colour":"red"}', "colour"),
    ("t2", b'{"v":1,"value":"warm"}', "value"),
    ("t2", b"[1, 2]", ""),
    ("t2", b"", ""),
]


def test_bad_readings_are_refused_on_errors_never_fused_and_nothing_crashes(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=groups(window_count=3))
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    future = orjson.dumps({"v": 1, "value": 21, "ts": time.time() + 3600})
    bad = [(s, future if p == b'{"v":1,"value":21}' else p, why) for s, p, why in BAD_READINGS]
    for sensor, payload, _ in bad:
        recorder.publish(f"sensors/{sensor}/temperature", payload)
    wait_until(lambda: len([e for e in recorder.json("errors") if "/sensors/" in e["topic"]]) >= len(bad), 20, "an error per bad reading")
    reasons = [e["reason"] for e in recorder.json("errors") if "/sensors/" in e["topic"]]
    for _, _, why in bad:
        assert any(why in r for r in reasons), (why, reasons)
    assert any("future" in r for r in reasons)
    # A batch is refused whole for one stale element, and the report names which one.
    recorder.publish("sensors/t2/temperature", orjson.dumps([{"v": 1, "value": 21, "ts": time.time()}, {"v": 1, "value": 21, "ts": 1000}]))
    wait_until(lambda: [e for e in recorder.json("errors") if "reading 1 of the batch from t2 is" in e["reason"] and "old" in e["reason"]],
               20, "the stale batch element named")

    now = time.time()
    for i, (sensor, value) in enumerate((("t1", 20.0), ("t2", 20.2), ("t3", 20.4))):
        recorder.publish(f"sensors/{sensor}/temperature", reading(value, now + i * 0.01))
    out = wait_until(lambda: fusion_results(recorder).get(1), 20, "the fused window")["output"]
    assert out["readings"] == 3 and 20.0 <= out["estimate"] <= 20.4  # none of the bad values got in
    assert fleet.alive("coordinator") and fleet.alive("pi-1")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1")


class Stream:
    """Readings from three sensors of different noise, sent in order on one connection and kept,
    so that the test can fuse the same readings itself."""

    NOISE: ClassVar[dict[str, float]] = {"t1": 0.1, "t2": 0.3, "t3": 0.6}

    def __init__(self, recorder: Recorder, seed: int) -> None:
        self.recorder, self.rng, self.t0 = recorder, np.random.default_rng(seed), time.time()
        self.sent: list[Reading] = []

    def send(self, count: int) -> None:
        for i in range(len(self.sent), len(self.sent) + count):
            sensor = ("t1", "t2", "t3")[i % 3]
            ts = self.t0 + i * 0.01
            value = 21.0 + 0.5 * math.sin(i / 40) + self.rng.normal(0, self.NOISE[sensor])
            self.sent.append(Reading(sensor=sensor, value=value, timestamp=ts))
            self.recorder.publish(f"sensors/{sensor}/temperature", reading(value, ts))


def start_fused_fleet(fleet: Fleet, recorder: Recorder, per_window: int, **env: str) -> str:
    """A coordinator fusing group `room` in count windows, and agent pi-1; returns the group spec."""
    spec = groups(window_count=per_window)
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=spec, **env)
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    return spec


def replay(sent: list[Reading], per_window: int) -> list[float]:
    """The estimates the same filter gives in one process, window after window."""
    prior: FilterState | None = None
    estimates = []
    for k in range(0, len(sent) - per_window + 1, per_window):
        out = fuse_window(prior, sent[k:k + per_window], KalmanConfig())
        prior = out.state
        estimates.append(out.estimate)
    return estimates


def test_agent_killed_mid_window_the_window_is_fused_elsewhere_from_the_right_prior(fleet: Fleet, recorder: Recorder) -> None:
    per_window = 6
    start_fused_fleet(fleet, recorder, per_window)
    stream = Stream(recorder, seed=7)
    stream.send(5 * per_window)
    wait_until(lambda: len(fusion_results(recorder)) >= 5, 20, "five windows fused on pi-1")

    fleet.procs["pi-1"].send_signal(signal.SIGSTOP)  # frozen: the next window is dispatched to it and stays there
    stream.send(per_window)
    wait_until(lambda: any(s["state"] == "SCHEDULED" and s.get("node") == "pi-1" for s in recorder.states("fusion-room-6")), 20, "window 6 on pi-1")
    fleet.kill("pi-1", signal.SIGKILL)
    fleet.agent("pi-2")
    stream.send(4 * per_window)

    wait_until(lambda: len(fusion_results(recorder)) >= 10, 30, "ten windows fused")
    results = fusion_results(recorder)
    assert results[6]["node"] == "pi-2" and results[6]["attempt"] == 2
    assert all(results[w]["node"] == "pi-1" for w in range(1, 6))
    expected = replay(stream.sent, per_window)
    got = [results[w]["output"]["estimate"] for w in range(1, 11)]
    assert got == pytest.approx(expected, abs=1e-9)  # a reset at window 6 would start over from a median
    variances = [results[w]["output"]["variance"] for w in range(1, 11)]
    assert variances[5] < 2 * max(variances[2:5])
    assert all(s["state"] != "FAILED" for w in range(1, 11) for s in recorder.states(f"fusion-room-{w}"))


def test_coordinator_killed_between_windows_continues_the_filter_after_restart(fleet: Fleet, recorder: Recorder) -> None:
    per_window = 6
    spec = start_fused_fleet(fleet, recorder, per_window)
    stream = Stream(recorder, seed=3)
    stream.send(4 * per_window)
    wait_until(lambda: len(fusion_results(recorder)) >= 4, 20, "four windows fused")
    births = len([s for s in recorder.json("coordinator/status") if s.get("raw") == "online"])
    fleet.kill("coordinator")
    fleet.rename("coordinator", "coordinator-1")
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=spec)
    # Its birth comes after its subscriptions: from then on no reading is missed, on amqtt too.
    wait_until(lambda: len([s for s in recorder.json("coordinator/status") if s.get("raw") == "online"]) > births, 20, "the restarted coordinator")
    stream.send(4 * per_window)
    wait_until(lambda: len(fusion_results(recorder)) >= 8, 20, "eight windows fused")
    results = fusion_results(recorder)
    assert sorted(results) == list(range(1, 9))  # numbering continues: no window 1 again
    assert [results[w]["output"]["estimate"] for w in range(1, 9)] == pytest.approx(replay(stream.sent, per_window), abs=1e-9)


def test_coordinator_killed_with_windows_queued_loses_none_of_them(fleet: Fleet, recorder: Recorder) -> None:
    per_window = 3
    spec = start_fused_fleet(fleet, recorder, per_window, EDGEHIVE_DEAD_AFTER_S="1")
    stream = Stream(recorder, seed=5)
    stream.send(per_window)
    wait_until(lambda: 1 in fusion_results(recorder), 20, "window 1 fused")
    fleet.procs["pi-1"].send_signal(signal.SIGSTOP)  # window 2 is dispatched to a frozen node, 3 and 4 wait behind it
    stream.send(3 * per_window)
    wait_until(lambda: any(s["state"] == "SCHEDULED" for s in recorder.states("fusion-room-2")), 20, "window 2 on the frozen node")
    wait_until(lambda: any(s.get("fusion_windows", {}).get("room") == 4 for s in recorder.json("coordinator/stats")[-3:]), 20, "windows 3 and 4 closed")
    births = len([s for s in recorder.json("coordinator/status") if s.get("raw") == "online"])
    fleet.kill("coordinator")
    fleet.kill("pi-1")
    fleet.rename("coordinator", "coordinator-1")
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=spec, EDGEHIVE_DEAD_AFTER_S="1")
    wait_until(lambda: len([s for s in recorder.json("coordinator/status") if s.get("raw") == "online"]) > births, 20, "the restarted coordinator")
    fleet.agent("pi-2")
    wait_until(lambda: set(fusion_results(recorder)) >= {1, 2, 3, 4}, 30, "every window fused after the restart")
    results = fusion_results(recorder)
    assert [results[w]["output"]["estimate"] for w in range(1, 5)] == pytest.approx(replay(stream.sent, per_window), abs=1e-9)
    assert all(results[w]["node"] == "pi-2" for w in (2, 3, 4))


def test_fusion_queue_overflow_is_reported_and_counted_and_accepted_windows_are_all_fused(fleet: Fleet, recorder: Recorder) -> None:
    start_fused_fleet(fleet, recorder, 2, EDGEHIVE_FUSION_QUEUE_MAX="2", EDGEHIVE_DEAD_AFTER_S="60")
    fleet.procs["pi-1"].send_signal(signal.SIGSTOP)  # window 1 goes to the frozen node; later windows wait in the queue
    stream = Stream(recorder, seed=1)
    stream.send(2)
    wait_until(lambda: any(s["state"] == "SCHEDULED" for s in recorder.states("fusion-room-1")), 20, "window 1 on the frozen node")
    stream.send(10)  # five more windows: two wait, three are refused
    wait_until(lambda: len([e for e in recorder.json("errors") if "refused" in e["reason"]]) >= 3, 20, "three refused windows")
    refused_at = recorder.mark()  # a stats message from before the third refusal would count two
    stats = wait_until(lambda: next((s for s in recorder.json("coordinator/stats", after=refused_at) if s.get("fusion_overflow")), None), 10, "overflow in stats")
    assert stats["fusion_overflow"] == {"room": 3} and stats["fusion_windows"] == {"room": 6} and stats["fusion_readings"] == {"room": 12}
    refused = {int(e["reason"].split()[2]) for e in recorder.json("errors") if "refused" in e["reason"]}
    assert refused == {4, 5, 6}

    fleet.procs["pi-1"].send_signal(signal.SIGCONT)
    wait_until(lambda: any(s.get("fusion_fused") == {"room": 3} for s in recorder.json("coordinator/stats")[-3:]), 20, "every accepted window fused")
    assert set(fusion_results(recorder)) == {1, 2, 3}  # the coordinator fused three: no refused window came back


def test_a_batch_of_readings_in_one_message_is_fused_and_a_bad_element_refuses_it(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    start_fused_fleet(fleet, recorder, 4)
    port = str(fleet.broker.port)
    now = time.time()
    bad = orjson.dumps([{"v": 1, "value": 20.0, "ts": now}, {"v": 1, "value": 20.1, "unit": "K", "ts": now}]).decode()
    good = orjson.dumps([{"v": 1, "value": 20.0 + i / 10, "ts": now + i / 100, "seq": i} for i in range(4)]).decode()
    for payload in (bad, good):
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/sensors/t1/temperature", "-m", payload], check=True)
    out = wait_until(lambda: fusion_results(recorder).get(1), 20, "the batch fused")["output"]
    assert out["readings"] == 4 and out["used"] == ["t1"] and 20.0 <= out["estimate"] <= 20.3
    reasons = [e["reason"] for e in recorder.json("errors") if e["topic"].endswith("/sensors/t1/temperature")]
    assert any("reading 1 of the batch" in r and "'K'" in r for r in reasons), reasons



IMPOSSIBLE = [  # (sensor, quantity, payload as typed, the reason on `errors`)
    ("t1", "temperature", "-300", "value -300 °C is impossible for temperature (absolute zero is -273.15 °C)"),
    ("h1", "humidity", "150", "value 150 % is impossible for humidity (relative humidity is 0 to 100 %)"),
    ("h1", "humidity", '{"v":1,"value":-5,"unit":"%RH"}', "value -5 % is impossible for humidity (relative humidity is 0 to 100 %)"),
    ("p1", "pressure", '{"v":1,"value":-1013.2,"unit":"hPa"}', "value -1013.2 hPa is impossible for pressure (a pressure is above 0 hPa)"),
    ("t2", "temperature", '[{"v":1,"value":20.5},{"v":1,"value":-300,"unit":"C"}]',
     "reading 1 of the batch: value -300 °C is impossible for temperature (absolute zero is -273.15 °C)"),
    ("t2", "temperature", '{"v":1,"value":0,"unit":"K"}', "unit 'K' is not a unit of temperature (expected °C)"),
]


def test_physically_impossible_readings_are_refused_on_errors_and_boundaries_are_fused(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    spec = {"room": {"quantity": "temperature", "window_count": 2}, "air": {"quantity": "humidity", "window_count": 2},
            "baro": {"quantity": "pressure", "window_count": 1}}
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=orjson.dumps(spec).decode())
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    port = str(fleet.broker.port)

    def pub(sensor: str, quantity: str, payload: str) -> None:
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/sensors/{sensor}/{quantity}", "-m", payload], check=True)

    for sensor, quantity, payload, _ in IMPOSSIBLE:
        pub(sensor, quantity, payload)

    def refused() -> list[tuple[str, str]]:
        return [(e["topic"], e["reason"]) for e in recorder.json("errors") if "/sensors/" in e["topic"]]

    wait_until(lambda: len(refused()) >= len(IMPOSSIBLE), 20, "an error per impossible reading")
    for sensor, quantity, _, why in IMPOSSIBLE:
        assert any(topic == f"{prefix}/sensors/{sensor}/{quantity}" and why in reason for topic, reason in refused()), (why, refused())

    # The edges of what physics allows are readings like any other, and fused.
    for sensor, quantity, payload in (("h1", "humidity", "0"), ("h2", "humidity", '{"v":1,"value":100,"unit":"%RH"}'),
                                      ("t1", "temperature", "-273.15"), ("t3", "temperature", '{"v":1,"value":-273.15,"unit":"degC"}'),
                                      ("p1", "pressure", "0.01")):
        pub(sensor, quantity, payload)
    air = wait_until(lambda: fusion_results(recorder, "air").get(1), 20, "the humidity window fused")["output"]
    assert air["readings"] == 2 and -1e-9 <= air["estimate"] <= 100.0 + 1e-9  # 0 and 100 fused: within rounding of the bounds
    room = wait_until(lambda: fusion_results(recorder, "room").get(1), 20, "the temperature window fused")["output"]
    assert room["readings"] == 2 and room["estimate"] == pytest.approx(-273.15)  # no refused value got in
    baro = wait_until(lambda: fusion_results(recorder, "baro").get(1), 20, "the pressure window fused")["output"]
    assert baro["readings"] == 1 and baro["estimate"] == pytest.approx(0.01)
    assert len(refused()) == len(IMPOSSIBLE)
    assert fleet.alive("coordinator") and fleet.alive("pi-1")
