"""Frigate's HTTP API as the bridge calls it: a JSON POST, over http:// or https://, logged in
when the API asks for it.

Frigate (0.14 and later) serves its API twice: on port 5000 without authentication (meant for
services inside its own network) and on port 8971 over HTTPS, for logged-in users only. On
8971 a client logs in with `POST /api/login` and JSON `{"user": ..., "password": ...}`; the
answer sets a cookie (Frigate's `auth.cookie_name`, `frigate_token` by default) holding a JWT,
which later calls send as `Authorization: Bearer <token>`. The token expires: a 401 means log
in again. So the bridge logs in at its first call and again after a 401, at most once per call
(a second 401 is an answer, not a reason to loop), and keeps any fresher token Frigate sets on
an answer. Neither the password nor the token is ever written to a log or an error report.

Port 8971 serves, by default, a certificate Frigate made itself, which no CA signed and which
names no host, so checking it takes a choice: a CA file to trust (a certificate of your own on
Frigate that names its host), or no check at all (an explicit setting). `ApiError` carries a
reason a person can act on, naming the setting to change.
"""

from __future__ import annotations

import http.client
import http.cookies
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..errors import EdgehiveError

log = logging.getLogger(__name__)

READ_MAX = 64 * 1024  # an answer to a sub-label call or a login is a few hundred bytes


class ApiError(EdgehiveError):
    """A call that did not succeed, in words (no secret in them)."""


@dataclass(frozen=True)
class Login:
    """Who the bridge is at Frigate; `password` stays out of every repr."""

    user: str
    password: str = field(repr=False)
    cookie_name: str = "frigate_token"


@dataclass
class _Answer:
    status: int
    body: bytes
    cookies: list[str]


def tls_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """The TLS settings of an https:// URL; ValueError when the CA file cannot be used."""
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"EDGEHIVE_FRIGATE_CA_FILE={ca_file} cannot be used: {getattr(error, 'strerror', None) or error} "
                         "(expected a PEM file of Frigate's certificate or of its CA)") from None


class FrigateApi:
    """Calls to one Frigate; with `login`, logged in as needed. Used from one thread at a time."""

    def __init__(self, url: str, timeout_s: float, login: Login | None = None, ca_file: str = "", verify: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.login = login
        self.ca_file = ca_file
        self.verify = verify
        self._token: str | None = None
        self._context: ssl.SSLContext | None = None
        self._tls_problem = ""
        if urlsplit(self.url).scheme == "https":
            try:
                self._context = tls_context(ca_file, verify)
            except ValueError as error:
                self._tls_problem = str(error)  # every call says so; the verdicts go on without the sub labels
                log.error("%s", error)
            if not verify:
                log.warning("EDGEHIVE_FRIGATE_TLS_VERIFY=false: Frigate's certificate at %s is not checked", self.url)
        elif login is not None:
            log.warning("EDGEHIVE_FRIGATE_URL=%s is not https://: the Frigate password goes over the network unencrypted", self.url)

    def post(self, path: str, body: dict[str, Any]) -> bytes:
        """POST `body` as JSON to `{url}{path}`; the answer's body, or ApiError with the reason."""
        if self._tls_problem:
            raise ApiError(self._tls_problem)
        if self.login is not None and self._token is None:
            self._log_in()
        answer = self._send(path, body, self._token)
        if answer.status == 401 and self.login is not None:
            log.info("Frigate answered 401 at %s: the token expired or was revoked; logging in again", path)
            self._token = None
            self._log_in()
            answer = self._send(path, body, self._token)
            if answer.status == 401:
                raise ApiError(f"Frigate answered 401 Unauthorized right after a successful login as {self.login.user!r}"
                               f"{_detail(answer.body)} (EDGEHIVE_FRIGATE_USER)")
        if answer.status == 401:
            raise ApiError(f"Frigate answered 401 Unauthorized{_detail(answer.body)} (this URL needs a login, as port 8971 does: "
                           "set EDGEHIVE_FRIGATE_USER and EDGEHIVE_FRIGATE_PASSWORD, or use port 5000)")
        if answer.status >= 400:
            raise ApiError(f"Frigate answered {answer.status} {_reason(answer.status)}{_detail(answer.body)}")
        self._keep_fresh_token(answer)
        return answer.body

    # -- inside ------------------------------------------------------------------------------------

    def _log_in(self) -> None:
        assert self.login is not None
        answer = self._send("/api/login", {"user": self.login.user, "password": self.login.password}, None)
        if answer.status >= 400:
            hint = " (check EDGEHIVE_FRIGATE_USER and EDGEHIVE_FRIGATE_PASSWORD)" if answer.status in (400, 401, 403) else ""
            raise ApiError(f"login to Frigate as {self.login.user!r} failed: Frigate answered {answer.status} "
                           f"{_reason(answer.status)}{_detail(answer.body)}{hint}")
        token = self._token_in(answer)
        if not token:
            raise ApiError(f"login to Frigate as {self.login.user!r} answered {answer.status} but set no {self.login.cookie_name!r} "
                           "cookie (is EDGEHIVE_FRIGATE_COOKIE_NAME Frigate's auth.cookie_name?)")
        self._token = token
        log.info("logged in to Frigate at %s as %r", self.url, self.login.user)

    def _keep_fresh_token(self, answer: _Answer) -> None:
        """Frigate sets a new cookie on an answer when the token nears its end: keep it."""
        if self.login is not None and answer.cookies:
            self._token = self._token_in(answer) or self._token

    def _token_in(self, answer: _Answer) -> str | None:
        assert self.login is not None
        for header in answer.cookies:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            try:
                jar.load(header)
            except http.cookies.CookieError:
                continue
            morsel = jar.get(self.login.cookie_name)
            if morsel is not None and morsel.value:
                return morsel.value
        return None

    def _send(self, path: str, body: dict[str, Any], token: str | None) -> _Answer:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=orjson.dumps(body), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context) as response:
                return _Answer(response.status, response.read(READ_MAX), response.headers.get_all("Set-Cookie") or [])
        except urllib.error.HTTPError as error:
            return _Answer(error.code, error.read(READ_MAX), error.headers.get_all("Set-Cookie") or [])
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:  # the last: a reply that is not HTTP
            raise ApiError(self._unreachable(error)) from None

    def _unreachable(self, error: BaseException) -> str:
        cause = getattr(error, "reason", None) or error
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"Frigate's API at {self.url} did not pass the TLS check: {cause.verify_message}{self._tls_hint(cause)}"
        if isinstance(cause, ssl.SSLError):
            hint = " (an http:// port? https:// needs Frigate's TLS port, 8971)" if cause.reason == "WRONG_VERSION_NUMBER" else ""
            return f"TLS with Frigate's API at {self.url} failed: {cause.reason or cause}{hint}"
        hint = ""
        if isinstance(cause, (ConnectionResetError, http.client.RemoteDisconnected)) and urlsplit(self.url).scheme == "http":
            hint = "; an https:// port such as 8971? use https://"
        return f"Frigate's API did not answer: {cause} (EDGEHIVE_FRIGATE_URL={self.url}{hint})"

    def _tls_hint(self, error: ssl.SSLCertVerificationError) -> str:
        host = urlsplit(self.url).hostname
        if error.verify_code in (62, 64):  # host name, IP address mismatch
            return (f" (the certificate does not name {host}; Frigate's self-made default certificate names no host: give Frigate "
                    "a certificate for its host name, or set EDGEHIVE_FRIGATE_TLS_VERIFY=false)")
        if error.verify_code in (2, 18, 19, 20, 21):  # unknown issuer, self-signed, no local issuer, leaf unverifiable
            where = f"{self.ca_file} did not sign it" if self.ca_file else "set EDGEHIVE_FRIGATE_CA_FILE to Frigate's certificate or its CA"
            return f" (the certificate is not one we trust: {where}; or set EDGEHIVE_FRIGATE_TLS_VERIFY=false)"
        return " (check Frigate's certificate, EDGEHIVE_FRIGATE_CA_FILE and EDGEHIVE_FRIGATE_TLS_VERIFY)"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _detail(body: bytes) -> str:
    text = body[:300].decode(errors="replace").strip()
    return f": {text}" if text else ""
