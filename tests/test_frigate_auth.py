"""`edgehive frigate` on Frigate's authenticated port (8971): the bridge logs in with
`POST /api/login`, sends the JWT from the cookie as a Bearer token, and logs in again after a
401. A local HTTPS server plays Frigate's API (its login checks the JSON credentials and sets
the cookie; its sub-label endpoint answers 401 without the right Bearer), with certificates made
here by the openssl CLI: one signed by a test CA, and one like Frigate's self-made default
(`O=FRIGATE DEFAULT CERT, CN=*`, which names no host)."""

from __future__ import annotations

import base64
import http.server
import secrets
import signal
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import Fleet, MosquittoBroker, Recorder, call_failed, run_fleet, wait_nodes_online, wait_until
from test_config import run_cli
from test_frigate import PIPELINES, bridge_online, event, frigate_pub, jpeg, verdict_of
from vision_fixtures import models_dir  # noqa: F401  (fixture)

from edgehive.frigate.api import FrigateApi, Login
from edgehive.frigate.sublabel import SubLabels

USER, PASSWORD = "edgehive", "pw-frigate-7f3a"


def openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the test CA; it signed `server`
    server: tuple[Path, Path]  # (certificate, key) naming 127.0.0.1 and localhost
    frigate_default: tuple[Path, Path]  # self-signed, subject O=FRIGATE DEFAULT CERT, CN=*: as Frigate makes its own


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edgehive test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=frigate", "-keyout", "server.key", "-out", "server.csr")
    openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", "server.crt")
    openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/O=FRIGATE DEFAULT CERT/CN=*",
            "-keyout", "default.key", "-out", "default.crt")
    return Certificates(folder / "ca.crt", (folder / "server.crt", folder / "server.key"), (folder / "default.crt", folder / "default.key"))


def jwt_like(user: str) -> str:
    """header.payload.signature, base64url, as Frigate's token looks (nobody checks the signature here)."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': user, 'role': 'admin', 'exp': 4102444800})}.{secrets.token_urlsafe(32)}"


@dataclass
class FakeFrigate:
    """What the handler shares: the account, the tokens it issued and still honours, what it saw."""

    url: str = ""
    cookie_name: str = "frigate_token"
    logins: list[dict[str, Any]] = field(default_factory=list)  # every login's JSON body
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # (path, body, token) of accepted sub-label calls
    refused: int = 0  # sub-label calls answered 401
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working, as when it expires: the next call gets 401."""
        with self.lock:
            self.valid.clear()


class FrigateHandler(http.server.BaseHTTPRequestHandler):
    """Frigate's `POST /api/login` and `POST /api/events/{id}/sub_label` behind its authentication."""

    frigate: FakeFrigate

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        frigate = self.frigate
        if self.path == "/api/login":
            with frigate.lock:
                frigate.logins.append(body)
                if body == {"user": USER, "password": PASSWORD}:
                    token = jwt_like(USER)
                    frigate.issued.append(token)
                    frigate.valid.add(token)
                    return self.reply(200, {}, cookie=f"{frigate.cookie_name}={token}; Path=/; HttpOnly; Secure; SameSite=lax")
            return self.reply(401, {"message": "Login failed"})
        authorization = self.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ")
        with frigate.lock:
            allowed = authorization.startswith("Bearer ") and token in frigate.valid
            if not allowed:
                frigate.refused += 1
            else:
                frigate.calls.append((self.path, body, token))
        if not allowed:
            return self.reply(401, {"message": "Unauthorized"})
        return self.reply(200, {"success": True, "message": f"Event {self.path.split('/')[3]} sub label set to {body['subLabel']}"})

    def reply(self, status: int, body: dict[str, Any], cookie: str = "") -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def serve(certificate: tuple[Path, Path] | None, cookie_name: str = "frigate_token") -> Iterator[FakeFrigate]:
    frigate = FakeFrigate(cookie_name=cookie_name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (FrigateHandler,), {"frigate": frigate}))
    scheme = "http"
    if certificate is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    frigate.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield frigate
    server.shutdown()
    server.server_close()


@pytest.fixture
def frigate_https(certificates: Certificates) -> Iterator[FakeFrigate]:
    """Frigate's port 8971 with a certificate of your own, signed by a CA you trust."""
    yield from serve(certificates.server)


@pytest.fixture
def frigate_default_cert(certificates: Certificates) -> Iterator[FakeFrigate]:
    """Frigate's port 8971 with the self-signed certificate Frigate makes when given none."""
    yield from serve(certificates.frigate_default)


# -- the bridge as a service -------------------------------------------------------------------------


@pytest.fixture
def one_fleet(mosquitto: MosquittoBroker, prefix: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Fleet, Recorder]]:
    """A fleet on Mosquitto alone: the broker is not what these tests are about."""
    recorder = Recorder(mosquitto.url, prefix)
    fleets = run_fleet(mosquitto, prefix, tmp_path, lambda: call_failed(request))
    try:
        yield next(fleets), recorder
    finally:
        recorder.close()
        next(fleets, None)


@pytest.mark.integration
def test_the_bridge_logs_in_on_port_8971_sends_the_token_and_logs_in_again_when_it_expires(
    one_fleet: tuple[Fleet, Recorder], frigate_https: FakeFrigate, certificates: Certificates, models_dir: Path, tmp_path: Path
) -> None:
    fleet, recorder = one_fleet
    fleet.coordinator(EDGEHIVE_CAMERAS=orjson.dumps(PIPELINES).decode())
    fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="objects", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 1, timeout_s=60)
    fleet.frigate(EDGEHIVE_FRIGATE_URL=frigate_https.url, EDGEHIVE_FRIGATE_USER=USER, EDGEHIVE_FRIGATE_PASSWORD=PASSWORD,
                  EDGEHIVE_FRIGATE_CA_FILE=str(certificates.ca))
    bridge_online(recorder)

    def judge(event_id: str) -> dict[str, Any]:
        frigate_pub(fleet, "frigate/yard/person/snapshot", jpeg("astronaut"), retain=True, tmp=tmp_path)
        frigate_pub(fleet, "frigate/events", event("new", event_id, "yard"))
        return verdict_of(recorder, "yard", event_id)

    first = judge("1607200000.000001-first")
    assert first["confirmed"] is True and first["sub_label"] == "confirmed", first
    wait_until(lambda: len(frigate_https.calls) == 1, 30, "the first sub label set")
    assert frigate_https.logins == [{"user": USER, "password": PASSWORD}]  # logged in once, before the first call
    path, body, token = frigate_https.calls[0]
    assert path == "/api/events/1607200000.000001-first/sub_label" and body == {"subLabel": "confirmed", "subLabelScore": round(first["score"], 4)}
    assert token == frigate_https.issued[0] and frigate_https.refused == 0

    # The token expires: the next call gets 401, and the bridge logs in again and repeats it once.
    frigate_https.expire_tokens()
    second = judge("1607200000.000002-second")
    assert second["sub_label"] == "confirmed"
    wait_until(lambda: len(frigate_https.calls) == 2, 30, "the second sub label set after a fresh login")
    assert len(frigate_https.logins) == 2 and frigate_https.refused == 1
    assert frigate_https.calls[1][0] == "/api/events/1607200000.000002-second/sub_label" and frigate_https.calls[1][2] == frigate_https.issued[1]
    assert not [e for e in recorder.json("errors") if "sub label" in e.get("reason", "")]

    log = fleet.log("frigate")
    assert "logged in to Frigate" in log and PASSWORD not in log and not any(token in log for token in frigate_https.issued)

    # The same bridge with a wrong password: each sub label fails with a clear reason on `errors`,
    # and the bridge lives on, its verdicts still coming.
    fleet.kill("frigate", signal.SIGTERM)
    fleet.frigate(EDGEHIVE_FRIGATE_URL=frigate_https.url, EDGEHIVE_FRIGATE_USER=USER, EDGEHIVE_FRIGATE_PASSWORD="not-the-password",
                  EDGEHIVE_FRIGATE_CA_FILE=str(certificates.ca))
    wait_until(lambda: fleet.log("frigate").count("connected to") >= 1, 30, "the new bridge connected")
    for event_id in ("1607200000.000003-wrong", "1607200000.000004-still"):
        assert judge(event_id)["confirmed"] is True

    def login_failures() -> list[dict[str, Any]]:
        return [e for e in recorder.json("errors") if "login to Frigate as 'edgehive' failed" in e.get("reason", "")]

    failures = wait_until(lambda: f if len(f := login_failures()) >= 2 else None, 30, "both failed logins reported")
    reason = failures[0]["reason"]
    assert "sub label 'confirmed' for event 1607200000.000003-wrong not set" in reason and "401" in reason, reason
    assert "EDGEHIVE_FRIGATE_PASSWORD" in reason and "not-the-password" not in reason
    assert len(frigate_https.calls) == 2  # nothing set without a login
    assert fleet.alive("frigate") and "not-the-password" not in fleet.log("frigate")


# -- the API client against the local server ---------------------------------------------------------


def test_a_ca_file_makes_frigates_certificate_trusted_and_without_one_the_check_fails_clearly(
    frigate_https: FakeFrigate, certificates: Certificates
) -> None:
    reports: list[tuple[str, str]] = []
    trusted = SubLabels(FrigateApi(frigate_https.url, 5.0, Login(USER, PASSWORD), ca_file=str(certificates.ca)), lambda *r: reports.append(r))
    assert trusted.post("1607300000.1-ca", "confirmed", 0.9) is True
    assert [c[0] for c in frigate_https.calls] == ["/api/events/1607300000.1-ca/sub_label"] and reports == []

    # Neither a CA file nor the opt-out: the system's CAs do not know the test CA.
    untrusted = SubLabels(FrigateApi(frigate_https.url, 5.0, Login(USER, PASSWORD)), lambda *r: reports.append(r))
    assert untrusted.post("1607300000.2-none", "confirmed", 0.9) is False
    where, reason = reports[0]
    assert where == f"{frigate_https.url}/api/events/1607300000.2-none/sub_label"
    assert "did not pass the TLS check" in reason, reason
    assert "EDGEHIVE_FRIGATE_CA_FILE" in reason and "EDGEHIVE_FRIGATE_TLS_VERIFY=false" in reason, reason
    assert len(frigate_https.logins) == 1  # the failed one never reached the login

    # A CA file that is not one.
    bad = certificates.ca.with_name("not-a-ca.pem")
    bad.write_text("not a certificate\n")
    broken = SubLabels(FrigateApi(frigate_https.url, 5.0, Login(USER, PASSWORD), ca_file=str(bad)), lambda *r: reports.append(r))
    assert broken.post("1607300000.3-bad", "confirmed", 0.9) is False
    assert f"EDGEHIVE_FRIGATE_CA_FILE={bad} cannot be used" in reports[1][1] and "PEM" in reports[1][1], reports[1]


def test_frigates_own_default_certificate_needs_the_opt_out(frigate_default_cert: FakeFrigate, certificates: Certificates) -> None:
    """Trusted, Frigate's self-made certificate still names no host: the check says so; the
    explicit opt-out accepts it."""
    reports: list[tuple[str, str]] = []
    report = lambda *r: reports.append(r)  # noqa: E731
    trusting = SubLabels(FrigateApi(frigate_default_cert.url, 5.0, Login(USER, PASSWORD), ca_file=str(certificates.frigate_default[0])), report)
    assert trusting.post("1607300000.4-default", "confirmed", 0.9) is False
    assert "does not name 127.0.0.1" in reports[0][1] and "EDGEHIVE_FRIGATE_TLS_VERIFY=false" in reports[0][1], reports[0]
    unchecked = SubLabels(FrigateApi(frigate_default_cert.url, 5.0, Login(USER, PASSWORD), verify=False), report)
    assert unchecked.post("1607300000.5-unchecked", "unconfirmed", None) is True
    assert frigate_default_cert.calls == [("/api/events/1607300000.5-unchecked/sub_label", {"subLabel": "unconfirmed"}, frigate_default_cert.issued[0])]
    assert len(reports) == 1


def test_without_a_login_the_401_says_what_to_set_and_a_second_401_is_not_a_loop(frigate_https: FakeFrigate, certificates: Certificates) -> None:
    reports: list[tuple[str, str]] = []
    anonymous = SubLabels(FrigateApi(frigate_https.url, 5.0, ca_file=str(certificates.ca)), lambda *r: reports.append(r))
    assert anonymous.post("1607300000.6-anon", "confirmed", 0.9) is False
    assert "401" in reports[0][1] and "EDGEHIVE_FRIGATE_USER and EDGEHIVE_FRIGATE_PASSWORD" in reports[0][1], reports[0]
    assert frigate_https.logins == []

    # A Frigate that refuses every token it just issued: one login again per call, then the error.
    api = FrigateApi(frigate_https.url, 5.0, Login(USER, PASSWORD), ca_file=str(certificates.ca))
    labels = SubLabels(api, lambda *r: reports.append(r))
    frigate_https.valid = _Forgetful()
    assert labels.post("1607300000.7-revoked", "confirmed", 0.9) is False
    assert len(frigate_https.logins) == 2 and frigate_https.refused == 3  # the anonymous call, then two with fresh tokens
    assert "401 Unauthorized right after a successful login as 'edgehive'" in reports[1][1], reports[1]
    assert not any(token in reports[1][1] for token in frigate_https.issued) and PASSWORD not in reports[1][1]


class _Forgetful(set[str]):
    """A token set that keeps nothing: every token is refused."""

    def add(self, item: str) -> None:
        pass


def test_the_cookie_name_is_frigates_auth_cookie_name(certificates: Certificates) -> None:
    served = serve(certificates.server, cookie_name="nvr_jwt")
    frigate = next(served)
    try:
        reports: list[tuple[str, str]] = []
        default = SubLabels(FrigateApi(frigate.url, 5.0, Login(USER, PASSWORD), ca_file=str(certificates.ca)), lambda *r: reports.append(r))
        assert default.post("1607300000.8-cookie", "confirmed", 0.9) is False
        assert "set no 'frigate_token' cookie" in reports[0][1] and "EDGEHIVE_FRIGATE_COOKIE_NAME" in reports[0][1], reports[0]
        named = SubLabels(FrigateApi(frigate.url, 5.0, Login(USER, PASSWORD, "nvr_jwt"), ca_file=str(certificates.ca)), lambda *r: reports.append(r))
        assert named.post("1607300000.9-cookie", "confirmed", 0.9) is True
        assert [c[2] for c in frigate.calls] == [frigate.issued[1]]
    finally:
        next(served, None)


# -- settings ------------------------------------------------------------------------------------------


def test_a_user_without_a_password_or_the_reverse_is_a_settings_error(tmp_path: Path) -> None:
    for env, given, missing in ((dict(EDGEHIVE_FRIGATE_USER=USER), "EDGEHIVE_FRIGATE_USER", "EDGEHIVE_FRIGATE_PASSWORD"),
                                (dict(EDGEHIVE_FRIGATE_PASSWORD=PASSWORD), "EDGEHIVE_FRIGATE_PASSWORD", "EDGEHIVE_FRIGATE_USER")):
        done = run_cli("frigate", cwd=tmp_path, EDGEHIVE_FRIGATE_URL="https://frigate:8971", **env)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"{given} is set but {missing} is empty" in done.stderr and PASSWORD not in done.stderr, done.stderr
    both = run_cli("frigate", cwd=tmp_path, EDGEHIVE_FRIGATE_URL="https://frigate:8971", EDGEHIVE_FRIGATE_CA_FILE="/etc/frigate-ca.pem",
                   EDGEHIVE_FRIGATE_TLS_VERIFY="false")
    assert both.returncode == 2 and "EDGEHIVE_FRIGATE_CA_FILE is set but EDGEHIVE_FRIGATE_TLS_VERIFY is false" in both.stderr, both.stderr


def test_config_show_masks_the_frigate_password_and_the_file_takes_the_login(tmp_path: Path) -> None:
    config = tmp_path / "edgehive.yml"
    config.write_text(f"frigate:\n  url: https://frigate:8971\n  user: {USER}\n  password: {PASSWORD}\n  cookie_name: nvr_jwt\n"
                      "  tls_verify: false\n")
    shown = run_cli("config", "show", "frigate", "--config", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert PASSWORD not in shown.stdout and "***" in rows["frigate_password"], shown.stdout
    assert USER in rows["frigate_user"] and "nvr_jwt" in rows["frigate_cookie_name"] and "false" in rows["frigate_tls_verify"]
    checked = run_cli("config", "check", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
