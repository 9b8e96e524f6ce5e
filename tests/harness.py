"""Real brokers and real processes for integration tests.

Every server binds a free port found at run time and is polled until it answers;
nothing waits a fixed time. Every test gets its own topic prefix.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgehive.broker import EmbeddedBroker
from edgehive.broker.mosquitto import render_config
from edgehive.bus import MqttBus
from edgehive.schemas import Topics
from edgehive.settings import CommonSettings, MqttUrl

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
REPO_ROOT = Path(__file__).resolve().parents[1]


def bus_url(url: str) -> MqttUrl:
    """`url` as a service builds it from its settings: EDGEHIVE_MQTT_CLIENT picks the paho client
    of the test's own buses as it does the services' (tests/test_paho_client.py runs with plain)."""
    return CommonSettings(mqtt_url=url).broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """A running broker the tests can reach, stop and start again on the same port."""

    kind: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError


class MosquittoBroker(Broker):
    kind = "mosquitto"

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(render_config(self.port, self.data, host=host, log_file=workdir / "mosquitto.log"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_answers(self.port) or self.proc.poll() is not None, 10, "mosquitto to listen")  # type: ignore[union-attr]
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto failed to start: {(self.workdir / 'mosquitto.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class MosquittoProcess(Broker):
    """Debian's mosquitto run from a config file the subclass wrote (`conf`, logging to `log`)."""

    conf: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_answers(self.port) or self.proc.poll() is not None, 10, "mosquitto to listen")  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text() if self.log.exists() else "mosquitto exited"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class AuthMosquitto(MosquittoProcess):
    """Debian's mosquitto with the production config and auth, as the broker container runs it:
    broker/prepare.sh writes the password file and ACL from `users` (EDGEHIVE_BROKER_USERS's
    `user:password[:role[:id+id]]` entries) and `prefix`, render_config rewrites only the [site] lines."""

    kind = "mosquitto"

    def __init__(self, users: str, prefix: str, root: Path = REPO_ROOT) -> None:
        # Mosquitto started as root drops to its own user before it reads its files: a folder it can reach.
        self.dir = Path(tempfile.mkdtemp(prefix="edgehive-auth-broker-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.users = users
        self.passwords = {e.split(":")[0]: e.split(":")[1] for e in users.replace(",", " ").split()}
        self.template = root / "broker" / "acl"
        self.prepare_script = root / "broker" / "prepare.sh"
        self.config = self.dir / "config"
        self.accounts = self.dir / "accounts"
        self.env = {**os.environ, "EDGEHIVE_BROKER_USERS": users, "EDGEHIVE_PREFIX": prefix}
        self.prepare()
        self.data = self.dir / "data"
        self.data.mkdir()
        if os.geteuid() == 0 and user_exists("mosquitto"):
            shutil.chown(self.data, "mosquitto")
            shutil.chown(self.dir, "mosquitto")
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(render_config(self.port, self.data, password_file=self.config / "passwd",
                                           acl_file=self.config / "acl", log_file=self.log))
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        subprocess.run(["sh", str(self.prepare_script), str(self.config), str(self.template), str(self.accounts)], env=self.env,
                       check=True, capture_output=True, timeout=60)
        self.config.chmod(0o755)

    def url_for(self, user: str, password: str | None = None) -> str:
        return f"mqtt://{user}:{password or self.passwords[user]}@127.0.0.1:{self.port}"


    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def mqtt(self, tool: str, *args: str, user: str | None, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """mosquitto_pub or mosquitto_sub logged in as `user` (None: anonymous)."""
        auth = ["-u", user, "-P", password or self.passwords.get(user, "")] if user else []
        return subprocess.run([tool, "-h", "127.0.0.1", "-p", str(self.port), *auth, *args], capture_output=True, text=True,
                              timeout=30, check=False)


def user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class AuthAmqtt(Broker):
    """The embedded broker with the same accounts and roles as AuthMosquitto."""

    kind = "amqtt"

    def __init__(self, users: str, prefix: str) -> None:
        self.port = free_port()
        self.users = users
        self.prefix = prefix
        self.passwords = {e.split(":")[0]: e.split(":")[1] for e in users.replace(",", " ").split()}
        self._broker: EmbeddedBroker | None = None

    def start(self) -> None:
        self._broker = EmbeddedBroker("127.0.0.1", self.port, users=self.users, prefix=self.prefix).start()

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def close(self) -> None:
        self.stop()

    url_for = AuthMosquitto.url_for
    mqtt = AuthMosquitto.mqtt


class AmqttBroker(Broker):
    kind = "amqtt"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.host = host
        self._broker: EmbeddedBroker | None = None

    def start(self) -> None:
        self._broker = EmbeddedBroker(self.host, self.port).start()

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None


@dataclass
class Recorder:
    """Every message under the test's prefix, as (topic, payload, arrival monotonic)."""

    url: str
    prefix: str
    messages: list[tuple[str, bytes, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topics = Topics(self.prefix)
        self._lock = threading.Lock()
        self.bus = MqttBus(bus_url(self.url), self.topics, f"recorder-{os.getpid()}-{free_port()}", source="test",
                           max_payload_bytes=64 << 20)
        self.bus.subscribe(f"{self.prefix}/#", self._record, qos=1)
        self.bus.start(timeout_s=10)

    def _record(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload, time.monotonic()))

    def mark(self) -> int:
        """A point in the arrival order: `json(..., after=mark)` sees only what arrived later.
        Take it before the event a wait is about (a kill, a restart), so that a message
        published before the event (a coordinator/stats sent a moment earlier) never counts."""
        with self._lock:
            return len(self.messages)

    def json(self, suffix: str, after: int = 0) -> list[dict[str, Any]]:
        """Decoded JSON payloads on topics matching `prefix/suffix` (`+` and `#` allowed), in
        arrival order; with `after` (a `mark()`), only those that arrived after it."""
        from paho.mqtt.client import topic_matches_sub

        pattern = f"{self.prefix}/{suffix}"
        with self._lock:
            items = [(t, p) for t, p, _ in self.messages[after:] if topic_matches_sub(pattern, t)]
        out = []
        for _, payload in items:
            try:
                out.append(orjson.loads(payload))
            except orjson.JSONDecodeError:
                out.append({"raw": payload.decode(errors="replace")})
        return out

    def states(self, job_id: str) -> list[dict[str, Any]]:
        return self.json(f"jobs/{job_id}/state")

    def results(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.json("results/+/+") if job_id is None or r.get("job_id") == job_id]

    def wait_result(self, job_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        return wait_until(lambda: next(iter(self.results(job_id)), None), timeout_s, f"result of {job_id}")

    def wait_state(self, job_id: str, state: str, timeout_s: float = 20.0) -> dict[str, Any]:
        return wait_until(lambda: next((s for s in self.states(job_id) if s["state"] == state), None), timeout_s, f"{state} of {job_id}")

    def publish(self, suffix: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.bus.publish(f"{self.prefix}/{suffix}", payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.bus.stop()


@dataclass
class Fleet:
    """edgehive processes started with the real CLI, as they run on devices."""

    broker: Broker
    prefix: str
    workdir: Path
    heartbeat_s: float = 0.2
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
        env.update(
            EDGEHIVE_MQTT_URL=self.broker.url, EDGEHIVE_PREFIX=self.prefix, EDGEHIVE_HEARTBEAT_S=str(self.heartbeat_s),
            EDGEHIVE_STATE_DIR=str(self.workdir / "state"), EDGEHIVE_STATS_INTERVAL_S="0.2", EDGEHIVE_LOG_LEVEL="INFO",
            EDGEHIVE_HOST_ROOT=str(self.workdir / "no-host"), EDGEHIVE_MODELS_DIR=str(self.workdir / "no-models"),
        )
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str], netns: str | None = None) -> subprocess.Popen[bytes]:
        path = self.workdir / f"{name}-{len(self.logs)}.log"
        wrapper = ["ip", "netns", "exec", netns] if netns else []  # `ip netns exec` execs: the pid is the agent's
        with path.open("ab") as log:
            proc = subprocess.Popen([*wrapper, sys.executable, "-m", "edgehive.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        self.logs[name] = path
        return proc

    def coordinator(self, name: str = "coordinator", **env: str) -> subprocess.Popen[bytes]:
        """A coordinator; give each of several its own `name`, EDGEHIVE_COORDINATOR_ID and state dir."""
        return self._spawn(name, ["coordinator"], self.env(**env))

    def agent(self, node: str, netns: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """An agent; in network namespace `netns` when given (partition tests)."""
        return self._spawn(node, ["agent"], self.env(EDGEHIVE_NODE_ID=node, **env), netns)

    def camera(self, camera: str, **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(camera, ["camera"], self.env(EDGEHIVE_CAMERA=camera, **env))

    def sensor(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, ["sensor"], self.env(EDGEHIVE_SENSOR=name, **env))

    def sink(self, name: str = "sink", **env: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, ["sink"], self.env(EDGEHIVE_NODE_ID=name, **env))

    def frigate(self, **env: str) -> subprocess.Popen[bytes]:
        """`edgehive frigate`, the bridge that judges Frigate's events."""
        return self._spawn("frigate", ["frigate"], self.env(**env))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(30)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def log(self, name: str) -> str:
        """Everything the process now known as `name` wrote (a restarted one gets a fresh log)."""
        return self.logs[name].read_text(errors="replace")

    def rename(self, name: str, new_name: str) -> None:
        self.procs[new_name] = self.procs.pop(name)
        self.logs[new_name] = self.logs.pop(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(10)


def wait_nodes_online(recorder: Recorder, count: int, timeout_s: float = 20.0, after: int = 0) -> None:
    """Until the coordinator's own stats say `count` nodes are online. After an event (a kill,
    a freeze, a restart) pass `after=recorder.mark()` taken before it: a stats message sent
    before the event may show the very count the test waits for."""
    wait_until(lambda: any(s.get("nodes_online") == count for s in recorder.json("coordinator/stats", after=after)[-3:]),
               timeout_s, f"coordinator to see {count} nodes online")


class MosquittoSub:
    """The real `mosquitto_sub`, known to be subscribed before the test goes on.

    It also subscribes to a probe topic; the probe is re-published until mosquitto_sub
    prints it, which proves the subscription is in place (no fixed sleep).
    """

    def __init__(self, port: str, *filters: str, auth: tuple[str, str] | None = None, probe: str | None = None,
                 options: Sequence[str] = ()) -> None:
        """`auth`: (user, password); `probe`: a topic that account may write (default: a fresh one);
        `options`: more mosquitto_sub options (`-R`: only messages published from now on, no retained copies)."""
        self.port = port
        self.auth = ["-u", auth[0], "-P", auth[1]] if auth else []
        self.probe = probe or f"probe/{uuid.uuid4().hex[:8]}"
        self.token = uuid.uuid4().hex
        args = ["mosquitto_sub", "-p", port, *self.auth, *options, "-v", "-W", "60", "-t", self.probe]
        for f in filters:
            args += ["-t", f]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def __enter__(self) -> MosquittoSub:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", "-p", self.port, *self.auth, "-t", self.probe, "-m", self.token], check=True)
            try:
                if self.lines.get(timeout=0.2) == f"{self.probe} {self.token}":
                    return self
            except queue.Empty:
                continue
        raise AssertionError("mosquitto_sub never subscribed")

    def next_message(self, timeout_s: float = 20.0) -> tuple[str, str]:
        """The next (topic, payload) printed that is not a probe."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            topic, _, payload = line.partition(" ")
            if topic != self.probe:
                return topic, payload
        raise AssertionError(f"mosquitto_sub printed nothing within {timeout_s:g} s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


TRACEBACK = "Traceback (most recent call last)"


def run_fleet(broker: Broker, prefix: str, workdir: Path, failed: Callable[[], bool], tracebacks_ok: bool = False) -> Iterator[Fleet]:
    """A Fleet for a fixture: stopped afterwards, and its processes' logs printed when the test
    failed (`failed` is asked after the test body ran). A traceback in a process's log fails the
    test too (an exception caught so the process lived on is still a bug), unless `tracebacks_ok`."""
    instance = Fleet(broker, prefix, workdir)
    yield instance
    instance.stop_all()
    if failed():
        for name in instance.procs:
            print(f"----- {name}.log -----\n{instance.log(name)[-4000:]}")
        return
    swallowed = {} if tracebacks_ok else {name: log for name in instance.procs if TRACEBACK in (log := instance.log(name))}
    for name, log in swallowed.items():
        start = log.index(TRACEBACK)
        print(f"----- {name}.log (from its first traceback) -----\n{log[max(0, start - 300):start + 4000]}")
    if swallowed:
        pytest.fail(f"an exception was caught and logged inside {', '.join(sorted(swallowed))} (a bug the test body did not see; log above)")


def call_failed(request: Any) -> bool:
    """Whether the test body failed (conftest's report hook records it on the item)."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed
