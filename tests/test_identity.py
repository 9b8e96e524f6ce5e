"""Who may say what: identity enforced by the broker, not trusted from payloads.

On Debian's mosquitto with the production config, password file and ACL (broker/prepare.sh from
broker/acl), every account writes only its own topics: a forged heartbeat, birth certificate,
result, frame or reading from another account is dropped by the broker, and the honest flow
still works. The coordinator's own check (a result counts only from the node its job is placed
on, and only a checked result reaches `results/{kind}/{source}`) is tested on both brokers.

MQTT 3.1.1 has no way to tell a publisher that the ACL dropped its message (mosquitto_pub exits
0): a test proves a drop by publishing a marker after the forgery and seeing only the marker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from harness import AuthAmqtt, AuthMosquitto, Fleet, MosquittoSub, Recorder, call_failed, free_port, run_fleet, wait_nodes_online, wait_until
from vision_fixtures import models_dir  # noqa: F401  (fixture)

from edgehive.schemas import envelope

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "sensors" / "demo" / "01-astronaut.jpg"
USERS = ("coordinator:pw-coordinator sink:pw-sink pi-1:pw-pi-1:agent pi-2:pw-pi-2:agent door:pw-door:camera "
         "t1:pw-t1:sensor alice:pw-alice")
HEARTBEAT = {"v": 1, "seq": 1, "ts": 1.0, "cpu_pct": 1, "mem_pct": 1, "in_flight": 0, "queued": 0, "jobs_done": 0, "jobs_failed": 0}


@pytest.fixture
def secure(prefix: str) -> Iterator[AuthMosquitto]:
    """Mosquitto with the production config, password file and ACL."""
    broker = AuthMosquitto(USERS, prefix)
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(params=["mosquitto", "amqtt"])
def secure_any(request: pytest.FixtureRequest, prefix: str) -> Iterator[AuthMosquitto | AuthAmqtt]:
    """Either broker with the same accounts: the embedded one enforces the same roles."""
    broker = AuthMosquitto(USERS, prefix) if request.param == "mosquitto" else AuthAmqtt(USERS, prefix)
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def watcher(secure: AuthMosquitto, prefix: str) -> Iterator[Recorder]:
    """Everything under the prefix, read with the sink's read-only account."""
    rec = Recorder(secure.url_for("sink"), prefix)
    yield rec
    rec.close()


@pytest.fixture
def secure_fleet(secure: AuthMosquitto, prefix: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    yield from run_fleet(secure, prefix, tmp_path, lambda: call_failed(request))


def start_fleet(fleet: Fleet, secure: AuthMosquitto, watcher: Recorder, *nodes: str) -> None:
    fleet.coordinator(EDGEHIVE_MQTT_URL=secure.url_for("coordinator"))
    for node in nodes:
        fleet.agent(node, EDGEHIVE_MQTT_URL=secure.url_for(node))
    wait_nodes_online(watcher, len(nodes))


def publish(secure: AuthMosquitto, user: str, topic: str, payload: bytes | str, retain: bool = False) -> None:
    """mosquitto_pub as `user`, QoS 1: it returns after the broker's PUBACK, which a dropped
    publish gets too (MQTT 3.1.1 has no refusal), so the exit status says nothing."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    proc = secure.mqtt("mosquitto_pub", "-q", "1", *(["-r"] if retain else []), "-t", topic, "-m", text, user=user)
    assert proc.returncode == 0, proc.stderr


def after_marker(secure: AuthMosquitto, watcher: Recorder, user: str) -> None:
    """Publish a marker on `errors` (any account may) and wait for it: the broker handles one
    connection after the other, so anything it accepted before the marker has arrived by then."""
    marker = uuid.uuid4().hex
    publish(secure, user, f"{watcher.prefix}/errors", marker)
    wait_until(lambda: any(p == marker.encode() for _, p, _ in watcher.messages), 10, f"{user}'s marker")


def seen(watcher: Recorder, topic: str) -> list[bytes]:
    return [p for t, p, _ in watcher.messages if t == f"{watcher.prefix}/{topic}"]


def submit(secure: AuthMosquitto, user: str, prefix: str, job_id: str, seconds: float, node: str | None = None) -> None:
    request = {"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": seconds}}
    if node:
        request["requires"] = {"node": node}
    publish(secure, user, f"{prefix}/jobs/submit", orjson.dumps(request))


def test_another_node_cannot_forge_a_nodes_heartbeat_birth_or_status(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str) -> None:
    """pi-2 speaks for pi-1 with a new boot id (which would retire pi-1's real boot for good):
    the broker drops all three, and pi-1 keeps its boot and its work."""
    start_fleet(secure_fleet, secure, watcher, "pi-1", "pi-2")
    forged_boot = "f0f0f0f0f0f0"
    forged = {
        "nodes/pi-1/heartbeat": orjson.dumps({**HEARTBEAT, "node": "pi-1", "boot_id": forged_boot}),
        "nodes/pi-1/capabilities": orjson.dumps({"v": 1, "node": "pi-1", "boot_id": forged_boot, "ts": 1.0, "kinds": ["sleep"]}),
        "nodes/pi-1/status": orjson.dumps({"v": 1, "state": "offline", "boot_id": forged_boot, "ts": 1.0, "reason": "forged"}),
    }
    for suffix, payload in forged.items():
        publish(secure, "pi-2", f"{prefix}/{suffix}", payload, retain=suffix != "nodes/pi-1/heartbeat")
    after_marker(secure, watcher, "pi-2")
    assert not any(forged_boot.encode() in p for _, p, _ in watcher.messages), "a forged message got through"

    submit(secure, "alice", prefix, "pinned-1", 0.05, node="pi-1")
    done = watcher.wait_state("pinned-1", "DONE")
    assert done["node"] == "pi-1"
    log = secure_fleet.log("coordinator")
    assert "restarted" not in log and "is dead" not in log, log[-2000:]
    assert "did not echo" not in secure_fleet.log("pi-1") + secure_fleet.log("pi-2")


def test_forged_results_never_finish_a_job_nor_reach_results(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str) -> None:
    """A job placed on pi-1: pi-2's result on its own topic is refused by the coordinator (with
    the reason on `errors`), and every other path is closed by the broker; the job's one result
    on results/sleep/{source} is pi-1's."""
    start_fleet(secure_fleet, secure, watcher, "pi-1", "pi-2")
    submit(secure, "alice", prefix, "long-1", 3.0, node="pi-1")
    assert watcher.wait_state("long-1", "RUNNING")["node"] == "pi-1"

    def result(node: str) -> bytes:
        return orjson.dumps({"v": 1, "job_id": "long-1", "kind": "sleep", "node": node, "source": "long-1", "attempt": 1,
                             "ok": True, "output": {"forged": True}, "timings": {}})

    publish(secure, "pi-2", f"{prefix}/nodes/pi-2/results", result("pi-2"))  # its own topic: the coordinator's check
    publish(secure, "pi-2", f"{prefix}/nodes/pi-2/results", result("pi-1"))  # naming pi-1 on pi-2's topic
    publish(secure, "pi-2", f"{prefix}/nodes/pi-1/results", result("pi-1"))  # pi-1's topic: the broker's ACL
    publish(secure, "pi-2", f"{prefix}/results/sleep/long-1", result("pi-1"))  # the users' topic: only the coordinator
    publish(secure, "alice", f"{prefix}/results/sleep/long-1", result("pi-1"))
    publish(secure, "alice", f"{prefix}/nodes/pi-1/results", result("pi-1"))

    def refusals() -> list[str]:
        return [e["reason"] for e in watcher.json("errors") if "long-1" in e.get("reason", "")]

    wait_until(lambda: len(refusals()) >= 2, 10, "the coordinator's two refusals")
    assert any("from node pi-2, but the job is placed on node pi-1" in r for r in refusals()), refusals()
    assert any("names node 'pi-1' but arrived on node 'pi-2'" in r for r in refusals()), refusals()
    assert not any(s["state"] in ("DONE", "FAILED") for s in watcher.states("long-1")), "a forged result finished the job"

    done = watcher.wait_state("long-1", "DONE")
    assert done["node"] == "pi-1"
    after_marker(secure, watcher, "coordinator")
    relayed = [orjson.loads(p) for p in seen(watcher, "results/sleep/long-1")]
    assert len(relayed) == 1 and relayed[0]["node"] == "pi-1" and "forged" not in relayed[0]["output"], relayed
    assert seen(watcher, "nodes/pi-1/results") and all(b"forged" not in p for p in seen(watcher, "nodes/pi-1/results"))


def test_cameras_sensors_and_people_write_only_their_own_topics(secure_any: AuthMosquitto, prefix: str) -> None:
    secure = secure_any
    watcher = Recorder(secure.url_for("sink"), prefix)
    try:
        _only_own_topics(secure, watcher, prefix)
    finally:
        watcher.close()


def _only_own_topics(secure: AuthMosquitto, watcher: Recorder, prefix: str) -> None:
    denied = [
        ("door", "frames/yard"), ("door", "nodes/door/heartbeat"), ("door", "sensors/door/temperature"),
        ("t1", "sensors/t2/temperature"), ("t1", "frames/t1"), ("t1", "nodes/t1/status"),
        ("alice", "nodes/pi-1/heartbeat"), ("alice", "nodes/alice/capabilities"), ("alice", "nodes/pi-1/jobs"),
        ("alice", "results/sleep/x"), ("alice", "jobs/x/state"), ("alice", "coordinator/status"),
        ("pi-1", "nodes/pi-1/jobs"), ("pi-1", "results/sleep/x"), ("pi-1", "snapshots/door"), ("pi-1", "frames/door"),
        ("sink", "nodes/pi-1/heartbeat"), ("sink", "jobs/submit"),
        # Direct frames: a camera sends only its own frames and offers only itself; an agent asks
        # only as itself; only the coordinator says which nodes may ask.
        ("door", "nodes/pi-1/frames/yard"), ("door", "cameras/yard/direct"), ("door", "cameras/door/assigned"),
        ("pi-1", "cameras/door/want/pi-2"), ("pi-1", "cameras/door/assigned"), ("pi-1", "nodes/pi-2/frames/door"),
        ("alice", "cameras/door/want/alice"),
    ]
    allowed = [("door", "frames/door"), ("t1", "sensors/t1/temperature"), ("alice", "jobs/submit"),
               ("pi-1", "nodes/pi-1/heartbeat"), ("pi-1", "nodes/pi-1/snapshots/door"),
               ("door", "nodes/pi-1/frames/door"), ("door", "cameras/door/direct"), ("door", "cameras/door/counts"),
               ("pi-1", "cameras/door/want/pi-1")]
    for user, suffix in denied + allowed:
        publish(secure, user, f"{prefix}/{suffix}", f"from {user}")

    def got() -> set[tuple[str, str]]:
        return {(p.decode().removeprefix("from "), t.removeprefix(prefix + "/")) for t, p, _ in watcher.messages if p.startswith(b"from ")}

    wait_until(lambda: got() >= set(allowed), 10, "every allowed message")
    after_marker(secure, watcher, "alice")
    assert got() == set(allowed)


def test_the_honest_flow_works_through_the_acl_and_mosquitto_sub_watches_results(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str) -> None:
    """alice submits with mosquitto_pub, the job is done, and a person's mosquitto_sub (read-only
    sink account) sees the relayed result on results/#."""
    start_fleet(secure_fleet, secure, watcher, "pi-1")
    port = str(secure.port)
    with MosquittoSub(port, f"{prefix}/results/#", auth=("sink", secure.passwords["sink"]), probe=f"{prefix}/errors") as sub:
        submit(secure, "alice", prefix, "honest-1", 0.05)
        topic, payload = sub.next_message(timeout_s=20)
    assert topic == f"{prefix}/results/sleep/honest-1"
    assert orjson.loads(payload)["node"] == "pi-1" and orjson.loads(payload)["ok"] is True
    assert watcher.wait_state("honest-1", "DONE")["node"] == "pi-1"


def test_an_agent_whose_user_name_is_not_its_node_id_says_why_nothing_it_sends_arrives(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str) -> None:
    """MQTT 3.1.1 gives no PUBACK error: the agent notices that its own status never came back.
    An honest agent started first, checked over the same time, says nothing."""
    secure_fleet.agent("pi-1", EDGEHIVE_MQTT_URL=secure.url_for("pi-1"))
    wait_until(lambda: seen(watcher, "nodes/pi-1/capabilities"), 20, "the honest agent's birth")
    secure_fleet.agent("pi-3", EDGEHIVE_MQTT_URL=secure.url_for("pi-2"))
    wait_until(lambda: "did not echo our own status" in secure_fleet.log("pi-3"), 20, "the agent's error")
    line = next(ln for ln in secure_fleet.log("pi-3").splitlines() if "did not echo" in ln)
    assert "ERROR" in line and "'pi-2'" in line and f"{prefix}/nodes/pi-3/" in line and "EDGEHIVE_NODE_ID=pi-3" in line
    assert not seen(watcher, "nodes/pi-3/capabilities")
    assert "connected to" in secure_fleet.log("pi-1") and "did not echo" not in secure_fleet.log("pi-1")


def test_an_account_added_at_run_time_works_at_once_and_after_a_restart(secure: AuthMosquitto, watcher: Recorder, prefix: str) -> None:
    """broker/account.sh (the image's `edgehive-account`): the new agent account may write its own
    node topics right after the command (Mosquitto reloads on SIGHUP), and still after a restart."""
    assert secure.mqtt("mosquitto_pub", "-t", f"{prefix}/errors", "-m", "x", user="pi-7", password="pw-7").returncode != 0
    assert secure.proc is not None
    added = subprocess.run(["sh", str(ROOT / "broker" / "account.sh"), "-c", str(secure.config), "-t", str(secure.template),
                            "-d", str(secure.accounts), "-p", str(secure.proc.pid), "add", "pi-7", "agent", "pw-7"],
                           env=secure.env, capture_output=True, text=True, timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    assert "EDGEHIVE_MQTT_URL=mqtt://pi-7:pw-7@" in added.stdout and "EDGEHIVE_NODE_ID=pi-7" in added.stdout

    def writes(suffix: str) -> bool:
        marker = uuid.uuid4().hex
        wait_until(lambda: secure.mqtt("mosquitto_pub", "-q", "1", "-t", f"{prefix}/{suffix}", "-m", marker,
                                       user="pi-7", password="pw-7").returncode == 0, 10, "pi-7 to log in")
        after_marker(secure, watcher, "alice")
        return any(p == marker.encode() for _, p, _ in watcher.messages)

    assert writes("nodes/pi-7/heartbeat")
    assert not writes("nodes/pi-1/heartbeat")
    secure.stop()
    secure.prepare()  # what the entrypoint does at every start
    secure.start()
    wait_until(watcher.bus.connected.is_set, 20, "the watcher to reconnect")
    after_marker(secure, watcher, "alice")  # the watcher is subscribed again
    assert writes("nodes/pi-7/heartbeat")
    listed = subprocess.run(["sh", str(ROOT / "broker" / "account.sh"), "-d", str(secure.accounts), "list"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert listed.stdout.split() == ["pi-7", "agent"]


def test_the_coordinator_counts_a_result_only_from_the_node_the_job_is_placed_on(fleet: Fleet, recorder: Recorder) -> None:
    """The coordinator's own check, whatever the broker (no ACL here): a result for a job placed on
    pi-1 that comes from pi-2 is refused and never relayed; pi-1's is relayed once, and a replay of
    it is a duplicate, not a second result."""
    fleet.coordinator()
    fleet.agent("pi-1")
    fleet.agent("pi-2")
    wait_nodes_online(recorder, 2)
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": "placed-1", "params": {"seconds": 2.0},
                                                  "requires": {"node": "pi-1"}}))
    assert recorder.wait_state("placed-1", "RUNNING")["node"] == "pi-1"
    forged = orjson.dumps({"v": 1, "job_id": "placed-1", "kind": "sleep", "node": "pi-2", "source": "placed-1", "attempt": 1,
                           "ok": True, "output": {"forged": True}, "timings": {}})
    recorder.publish("nodes/pi-2/results", forged)
    reason = wait_until(lambda: next((e["reason"] for e in recorder.json("errors") if "placed-1" in e.get("reason", "")), None),
                        10, "the coordinator's refusal")
    assert reason == "result for job placed-1 from node pi-2, but the job is placed on node pi-1: refused"
    assert not any(s["state"] in ("DONE", "FAILED") for s in recorder.states("placed-1"))

    assert recorder.wait_state("placed-1", "DONE")["node"] == "pi-1"
    real = wait_until(lambda: seen(recorder, "nodes/pi-1/results"), 10, "pi-1's own result")[0]
    recorder.publish("nodes/pi-1/results", real)  # a replay: the job is finished
    wait_until(lambda: any(s.get("duplicates") == 1 for s in recorder.json("coordinator/stats")), 10, "the duplicate counted")
    relayed = seen(recorder, "results/sleep/placed-1")
    assert relayed == [real], "exactly pi-1's result, byte for byte, once"


def test_a_frame_result_counts_only_from_the_node_the_frame_was_sent_to(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    """The frame path's check: while the frame waits on pi-1 (held stopped, well inside its
    lease), a detection result from pi-2 is refused and not relayed; pi-1's is, once."""
    fleet.heartbeat_s = 2.0  # dead after 6 s: room to hold pi-1 stopped while its frame waits
    fleet.coordinator(EDGEHIVE_CAMERA_MODELS="door=face")
    fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="face", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    fleet.agent("pi-2")  # no model: never sent a frame
    wait_nodes_online(recorder, 2, timeout_s=60)
    fleet.procs["pi-1"].send_signal(signal.SIGSTOP)
    try:
        recorder.publish("frames/door", ASTRONAUT.read_bytes(), qos=1)
        sent = wait_until(lambda: seen(recorder, "nodes/pi-1/jobs"), 10, "the frame sent to pi-1")[0]
        job_id = orjson.loads(envelope.unpack(sent)[0])["id"]
        forged = orjson.dumps({"v": 1, "job_id": job_id, "kind": "detections", "node": "pi-2", "source": "door", "attempt": 1,
                               "ok": True, "output": {"forged": True}, "timings": {}})
        recorder.publish("nodes/pi-2/results", forged)
        wait_until(lambda: any(f"result for job {job_id} from node pi-2, but the job is placed on node pi-1" in e.get("reason", "")
                               for e in recorder.json("errors")), 5, "the coordinator's refusal")
    finally:
        fleet.procs["pi-1"].send_signal(signal.SIGCONT)
    real = wait_until(lambda: recorder.json("results/detections/door"), 30, "pi-1's detections")
    assert [r["node"] for r in real] == ["pi-1"] and real[0]["job_id"] == job_id and "forged" not in real[0]["output"]


def run_embedded_broker(listen: str, **env: str) -> tuple[str, subprocess.Popen[str]]:
    """`edgehive broker --listen LISTEN` as a process, once it says it listens: (that line, the process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    proc = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "broker", "--listen", listen], env={**clean, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it listens (or exits)
        assert "listening" in line, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        return line, proc
    except BaseException:
        proc.kill()
        raise


@pytest.mark.parametrize("users", ["", "coordinator:pw-c pi-1:pw-1:agent"])
def test_the_embedded_broker_warns_when_it_serves_other_machines_without_credentials(users: str) -> None:
    port = free_port()
    line, proc = run_embedded_broker(f"0.0.0.0:{port}", EDGEHIVE_BROKER_USERS=users)
    proc.terminate()
    _, stderr = proc.communicate(timeout=20)
    warned = "WARNING: the embedded broker listens on 0.0.0.0" in stderr and "without credentials" in stderr
    assert warned == (not users), stderr
    assert ("anonymous" in line) == (not users)


def test_the_embedded_broker_on_loopback_does_not_warn() -> None:
    _, proc = run_embedded_broker(f"127.0.0.1:{free_port()}")
    proc.terminate()
    _, stderr = proc.communicate(timeout=20)
    assert "WARNING" not in stderr


def test_the_embedded_broker_takes_its_accounts_and_refuses_others(prefix: str) -> None:
    port = free_port()
    _, proc = run_embedded_broker(f"127.0.0.1:{port}", EDGEHIVE_BROKER_USERS="coordinator:pw-c pi-1:pw-1:agent", EDGEHIVE_PREFIX=prefix)
    try:
        def pub(*auth: str, topic: str = f"{prefix}/errors") -> subprocess.CompletedProcess[str]:
            return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *auth, "-q", "1", "-t", topic, "-m", "x"],
                                  capture_output=True, text=True, timeout=30, check=False)

        assert pub("-u", "pi-1", "-P", "pw-1").returncode == 0
        wrong = pub("-u", "pi-1", "-P", "nope")
        assert wrong.returncode != 0 and "not authori" in wrong.stderr.lower()
        assert pub("-u", "nobody", "-P", "pw-1").returncode != 0
        assert pub().returncode != 0, "anonymous"
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


# --- TLS -----------------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    """A CA (`name`.crt/.key), and a server certificate for 127.0.0.1/localhost and a client
    certificate signed by it (`name`-server.*, `name`-client.*)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for leaf, cn in (("server", "127.0.0.1"), ("client", "pi-1")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}-{leaf}.key",
                "-out", f"{name}-{leaf}.csr", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}-{leaf}.csr", "-CA", f"{name}.crt", "-CAkey", f"{name}.key", "-CAcreateserial",
                "-days", "2", *(["-extfile", "san.cnf"] if leaf == "server" else []), "-out", f"{name}-{leaf}.crt", cwd=folder)
    for path in folder.iterdir():
        path.chmod(0o644)  # Mosquitto reads them as its own user


def tls_listener(port: int, tls: Path, require_certificate: bool) -> str:
    """broker/mosquitto.conf's documented TLS block, uncommented, on `port` with the test's files."""
    from edgehive.broker.mosquitto import CONFIG_PATH

    lines = CONFIG_PATH.read_text().splitlines()
    start = lines.index("#listener 8883")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if line.startswith("# ") or (line == "#require_certificate true" and not require_certificate):
            continue
        block.append(line[1:])
    text = "\n".join(block).replace("listener 8883", f"listener {port} 127.0.0.1").replace("/mosquitto/data/tls/", f"{tls}/")
    return text.replace("ca.crt", "good.crt").replace("server.crt", "good-server.crt").replace("server.key", "good-server.key") + "\n"


@pytest.fixture
def tls_broker(tmp_path: Path, prefix: str) -> Iterator[tuple[AuthMosquitto, Path, int, int]]:
    """The production config (anonymous here: auth is tested above) plus the documented TLS
    listener twice: one that takes any client, one that requires a client certificate."""
    secure = AuthMosquitto(USERS, prefix)
    tls = secure.dir / "tls"
    tls.mkdir()
    tls.chmod(0o755)
    make_ca(tls, "good")
    make_ca(tls, "evil")
    tls_port, cert_port = free_port(), free_port()
    secure.conf.write_text(secure.conf.read_text() + tls_listener(tls_port, tls, False) + tls_listener(cert_port, tls, True))
    secure.start()
    yield secure, tls, tls_port, cert_port
    secure.close()


def test_agents_connect_over_tls_with_a_private_ca_and_say_why_when_the_ca_is_wrong(
        tls_broker: tuple[AuthMosquitto, Path, int, int], prefix: str, tmp_path: Path) -> None:
    secure, tls, tls_port, cert_port = tls_broker
    fleet = Fleet(secure, prefix, tmp_path)

    def caps_over_tls(node: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(tls_port), "--cafile", str(tls / "good.crt"),
                               "-u", "sink", "-P", secure.passwords["sink"], "-t", f"{prefix}/nodes/{node}/capabilities",
                               "-C", "1", "-W", "20"], capture_output=True, text=True, timeout=60, check=False)

    try:
        pi1 = secure.url_for("pi-1").replace("mqtt://", "mqtts://").replace(f":{secure.port}", f":{tls_port}")
        fleet.agent("pi-1", EDGEHIVE_MQTT_URL=pi1, EDGEHIVE_MQTT_CA_FILE=str(tls / "good.crt"))
        got = caps_over_tls("pi-1")
        assert got.returncode == 0 and orjson.loads(got.stdout)["node"] == "pi-1", got.stderr

        # A client certificate for the listener that requires one.
        pi2 = secure.url_for("pi-2").replace("mqtt://", "mqtts://").replace(f":{secure.port}", f":{cert_port}")
        fleet.agent("pi-2", EDGEHIVE_MQTT_URL=pi2, EDGEHIVE_MQTT_CA_FILE=str(tls / "good.crt"),
                    EDGEHIVE_MQTT_CERT_FILE=str(tls / "good-client.crt"), EDGEHIVE_MQTT_KEY_FILE=str(tls / "good-client.key"))
        got = caps_over_tls("pi-2")
        assert got.returncode == 0 and orjson.loads(got.stdout)["node"] == "pi-2", got.stderr

        # The wrong CA: no connection, and the log says why and what to set.
        fleet.agent("pi-x", EDGEHIVE_MQTT_URL=pi1.replace("pi-1:", "pi-x:"), EDGEHIVE_MQTT_CA_FILE=str(tls / "evil.crt"))
        wait_until(lambda: "TLS handshake with 127.0.0.1" in fleet.log("pi-x"), 20, "the agent's TLS warning")
        line = next(ln for ln in fleet.log("pi-x").splitlines() if "TLS handshake" in ln)
        assert "WARNING" in line and "certificate verify failed" in line and "evil.crt did not sign it" in line, line
        # No CA setting at all (the system's CAs): the hint names the setting.
        fleet.agent("pi-y", EDGEHIVE_MQTT_URL=pi1.replace("pi-1:", "pi-y:"))
        wait_until(lambda: "TLS handshake with 127.0.0.1" in fleet.log("pi-y"), 20, "the agent's TLS warning")
        assert "set EDGEHIVE_MQTT_CA_FILE to your broker's CA" in fleet.log("pi-y")
        assert fleet.alive("pi-x") and fleet.alive("pi-y"), "it keeps retrying, as after any failed connection"
    finally:
        fleet.stop_all()


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if len(line.split()) > 5}


def test_a_coordinator_loads_ssl_over_mqtts_and_never_on_a_plain_listener(
        tls_broker: tuple[AuthMosquitto, Path, int, int], prefix: str, tmp_path: Path) -> None:
    """The coordinator defers `ssl` (edgehive/lazymodules.py), about 1.2 MB of its 40. On a plain
    listener it never loads it, though paho reads and writes its socket all along (paho's own
    reads name ssl's errors; edgehive's client does not on a plain socket). With mqtts:// it works
    over TLS as before, and its memory maps show ssl's C extension: the probe can see it."""
    import _ssl

    extension = getattr(_ssl, "__file__", None)
    if extension is None:
        pytest.skip("this Python has ssl built in: the maps cannot tell")
    secure, tls, tls_port, _ = tls_broker
    fleet = Fleet(secure, prefix, tmp_path)

    def stats(port: int, *tls_args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *tls_args, "-u", "sink", "-P", secure.passwords["sink"],
                               "-t", f"{prefix}/coordinator/stats", "-C", "3", "-W", "20"], capture_output=True, text=True, timeout=60, check=False)

    try:
        plain = fleet.coordinator("plain", EDGEHIVE_MQTT_URL=secure.url_for("coordinator"))
        got = stats(secure.port)  # not retained: three fresh ones, 0.2 s apart
        assert got.returncode == 0 and len(got.stdout.splitlines()) == 3, got.stderr
        assert extension not in mapped_files(plain.pid)
        fleet.kill("plain", signal.SIGTERM)

        url = secure.url_for("coordinator").replace("mqtt://", "mqtts://").replace(f":{secure.port}", f":{tls_port}")
        over_tls = fleet.coordinator("tls", EDGEHIVE_MQTT_URL=url, EDGEHIVE_MQTT_CA_FILE=str(tls / "good.crt"))
        got = stats(tls_port, "--cafile", str(tls / "good.crt"))
        assert got.returncode == 0 and len(got.stdout.splitlines()) == 3, got.stderr
        assert all("nodes_online" in orjson.loads(line) for line in got.stdout.splitlines())
        assert extension in mapped_files(over_tls.pid)
    finally:
        fleet.stop_all()


def test_a_tls_file_that_cannot_be_read_is_a_clear_error_at_start(tmp_path: Path) -> None:
    from edgehive.bus import BusError, MqttBus
    from edgehive.schemas import Topics
    from edgehive.settings import CommonSettings

    settings = CommonSettings(mqtt_url="mqtts://127.0.0.1:8883", mqtt_ca_file=str(tmp_path / "missing-ca.crt"))
    with pytest.raises(BusError, match=r"TLS settings for mqtts://127\.0\.0\.1:8883 cannot be used.*EDGEHIVE_MQTT_CA_FILE"):
        MqttBus(settings.broker, Topics(), "x", source="x")
    plain = CommonSettings(mqtt_url="mqtt://127.0.0.1:1883", mqtt_ca_file=str(tmp_path / "missing-ca.crt"))
    assert plain.broker.ca_file is None, "TLS files matter only with mqtts://"


def test_edgehive_up_warns_when_its_broker_serves_other_machines(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_STATE_DIR=str(tmp_path / "state"))
    up = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "up", "--listen", f"0.0.0.0:{port}", "--agents", "0", "--demo-camera", "",
                           "--no-sink", "--no-demo-sensors", "--status-every-s", "0"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        wait_until(lambda: "edgehive is up" in up.stdout.readline(), 30, "edgehive up's banner")  # after the warning
    finally:
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    assert f"WARNING: the embedded broker listens on 0.0.0.0:{port} without credentials" in err, err


def test_the_broker_healthcheck_logs_in_with_a_first_account_that_has_a_role(secure: AuthMosquitto) -> None:
    users = "pi-1:pw-pi-1:agent " + USERS
    healthy = subprocess.run(["sh", str(ROOT / "broker" / "healthcheck.sh"), str(secure.port)],
                             env={**secure.env, "EDGEHIVE_BROKER_USERS": users}, capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stderr


def test_home_assistant_with_a_client_account_reads_the_configs_and_its_birth_brings_them_again(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str) -> None:
    """broker/acl: every account reads homeassistant/#, a client account (Home Assistant's) may
    write homeassistant/status, and the coordinator reads it and answers with every config."""
    start_fleet(secure_fleet, secure, watcher, "pi-1")
    port, alice = str(secure.port), ("alice", secure.passwords["alice"])
    first = secure.mqtt("mosquitto_sub", "-t", "homeassistant/+/+/config", "-C", "1", "-W", "20", user="alice")
    assert first.returncode == 0 and orjson.loads(first.stdout)["origin"]["name"] == "edgehive"  # retained, readable by alice
    with MosquittoSub(port, "homeassistant/+/+/config", auth=alice, probe=f"{prefix}/errors", options=("-R",)) as live:
        publish(secure, "alice", "homeassistant/status", "online")
        topic, payload = live.next_message()  # not retained: published again, for this birth
    assert topic.startswith("homeassistant/") and orjson.loads(payload)["device"]["identifiers"]


def test_direct_frames_flow_through_the_acl_and_a_forged_result_is_refused(
        secure: AuthMosquitto, watcher: Recorder, secure_fleet: Fleet, prefix: str, models_dir: Path) -> None:
    """Camera `door` (camera account) sends its frames straight to agent pi-1, which may ask as
    itself only; a face comes back on results/detections/door. pi-2 (no face model, so not
    assigned to door) forging a direct frame's result for door is refused by the coordinator."""
    fleet = secure_fleet
    fleet.coordinator(EDGEHIVE_MQTT_URL=secure.url_for("coordinator"))
    fleet.agent("pi-1", EDGEHIVE_MQTT_URL=secure.url_for("pi-1"), EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="face")
    fleet.agent("pi-2", EDGEHIVE_MQTT_URL=secure.url_for("pi-2"))
    wait_nodes_online(watcher, 2, timeout_s=60)
    fleet.camera("door", EDGEHIVE_MQTT_URL=secure.url_for("door"), EDGEHIVE_SOURCE="demo", EDGEHIVE_FPS="5", EDGEHIVE_MODEL="face",
                 EDGEHIVE_DIRECT="true")
    wait_until(lambda: any(r.get("ok") and r["job_id"].startswith("d.") and r["node"] == "pi-1"
                           for r in watcher.json("results/detections/door")), 60, "a direct frame's detections")
    assert watcher.json("nodes/pi-1/frames/door") and watcher.json("cameras/door/want/pi-1")
    forged = {"v": 1, "job_id": "d.forged.1", "kind": "detections", "node": "pi-2", "source": "door", "ok": True,
              "output": {"detections": []}, "timings": {}}
    publish(secure, "pi-2", f"{prefix}/nodes/pi-2/results", orjson.dumps(forged))
    wait_until(lambda: any("not assigned to that camera: refused" in e.get("reason", "") for e in watcher.json("errors")), 20,
               "the forged result refused")
    assert not [r for r in watcher.json("results/detections/door") if r["job_id"] == "d.forged.1"]
