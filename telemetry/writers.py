"""Where a batch of line protocol goes: InfluxDB 1.x `/write`, the v2 write API, or a file.

Every writer takes one batch (newline-terminated lines, nanosecond timestamps) and either
stores all of it or raises `WriteError`, which says whether trying the same batch again can
help. Library errors (urllib3, influxdb-client) never leave this module.

- Unreachable, timed out, 5xx, 429, 401/403 (credentials can be fixed without losing data):
  retryable; the sink keeps the batch and backs off.
- 400 (InfluxDB refused the content: a field type conflict, a point outside the retention
  policy): not retryable; InfluxDB 1.x has already stored the valid points of the batch
  ("partial write"), and sending it again would be refused again forever.
- 413 (request too large): not retryable as is; the sink splits the batch and sends halves.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlencode

from ..errors import EdgehiveError
from .settings import SinkSettings

log = logging.getLogger(__name__)

_DROPPED = re.compile(rb"dropped=(\d+)")


class WriteError(EdgehiveError):
    """A batch was not stored; `retryable` says whether the same batch may succeed later."""

    def __init__(self, message: str, *, retryable: bool, too_large: bool = False, dropped: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.too_large = too_large
        self.dropped = dropped


class Writer(Protocol):
    """Stores one batch of line protocol, or raises WriteError."""

    description: str

    def write(self, body: bytes) -> None: ...

    def close(self) -> None: ...


def _http_error(status: int, text: bytes, what: str) -> WriteError:
    message = f"{what} answered {status}: {text[:300].decode(errors='replace').strip()}"
    if status == 413:
        return WriteError(message, retryable=False, too_large=True)
    if status == 400 or status == 422:
        found = _DROPPED.search(text)
        return WriteError(message, retryable=False, dropped=int(found.group(1)) if found else None)
    return WriteError(message, retryable=True)


class InfluxV1Writer:
    """InfluxDB 1.x: `POST /write?db=&rp=&precision=ns`, basic auth, gzip, keep-alive.

    The database is created (`CREATE DATABASE`, a no-op when it exists) before the first write
    and whenever the server says it is missing, as Telegraf does; without the admin right that
    fails, is logged, and batches wait like any other until someone creates it.
    """

    def __init__(self, url: str, database: str, retention_policy: str = "", username: str = "", password: str = "",
                 compress: bool = True, timeout_s: float = 10.0) -> None:
        base = url.rstrip("/")
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_url = f"{base}/write?{urlencode(params)}"
        self._query_url = f"{base}/query"
        self._database = database
        self._compress = compress
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if compress:
            self._headers["Content-Encoding"] = "gzip"
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        # Imported here: a sink that writes a file (the default) need not hold an HTTP client.
        import urllib3

        self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False, timeout=urllib3.Timeout(total=timeout_s))
        self._unreachable = (urllib3.exceptions.HTTPError, OSError)
        self._created = False
        self.description = f"InfluxDB 1.x {base} database {database!r}"

    def write(self, body: bytes) -> None:
        if not self._created:
            self._created = self._create_database()
        data = gzip.compress(body, compresslevel=1) if self._compress else body
        try:
            response = self._pool.request("POST", self._write_url, body=data, headers=self._headers, preload_content=True)
        except self._unreachable as error:
            raise WriteError(f"{self.description} unreachable: {error}", retryable=True) from None
        if 200 <= response.status < 300:
            return
        if response.status == 404 and b"database not found" in response.data:
            self._create_database()
            raise WriteError(f"{self.description}: database not found (created it)", retryable=True)
        raise _http_error(response.status, response.data, self.description)

    def _create_database(self) -> bool:
        """True once the server answered (created, already there, or refused for lack of rights)."""
        headers = {k: v for k, v in self._headers.items() if k == "Authorization"}
        query = urlencode({"q": f'CREATE DATABASE "{self._database}"'})
        try:
            response = self._pool.request("POST", f"{self._query_url}?{query}", headers=headers)
        except self._unreachable as error:
            log.debug("could not create database %s yet: %s", self._database, error)
            return False
        if response.status >= 300 or b'"error"' in response.data:
            log.warning("could not create database %s: %s %s", self._database, response.status, response.data[:200])
        else:
            log.info("database %s is there (CREATE DATABASE)", self._database)
        return True

    def close(self) -> None:
        self._pool.clear()


class InfluxV2Writer:
    """The v2 write API (`/api/v2/write`) through influxdb-client: InfluxDB 2.x and 3.x, and
    anything else that speaks it (VictoriaMetrics). Synchronous, no client-side retries: the
    sink owns retrying, so that a batch is retried in order and spooled while it waits."""

    def __init__(self, url: str, token: str, org: str, bucket: str, compress: bool = True, timeout_s: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=url, token=token, org=org, enable_gzip=compress, timeout=int(timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket, self._org = bucket, org
        self.description = f"InfluxDB v2 API {url.rstrip('/')} bucket {bucket!r}"

    def write(self, body: bytes) -> None:
        import urllib3
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(bucket=self._bucket, org=self._org, record=body, write_precision=WritePrecision.NS)  # type: ignore[arg-type]  # annotated as the class, given its str constants
        except ApiException as error:
            text = error.body if isinstance(error.body, bytes) else str(error.body or error.reason or "").encode()
            raise _http_error(int(error.status or 0), text, self.description) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise WriteError(f"{self.description} unreachable: {error}", retryable=True) from None
        except InfluxDBError as error:  # influxdb-client's own error type: never leak it
            raise WriteError(f"{self.description}: {type(error).__name__}: {error}", retryable=True) from None

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]  # influxdb-client leaves close() unannotated
        self._client.close()  # type: ignore[no-untyped-call]  # (same)


class FileWriter:
    """Appends line protocol to a file, importable later (`influx write -f`, `curl --data-binary @file /write`).

    At `max_bytes` the file is renamed to `<file>.1` (replacing an older one) and a new one
    started, so the pair never holds more than about twice the bound.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: BinaryIO | None = None
        self.description = f"line-protocol file {path}"

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        return self._file

    def write(self, body: bytes) -> None:
        try:
            handle = self._open()
            if handle.tell() and handle.tell() + len(body) > self.max_bytes:
                handle.close()
                self._file = None
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                handle = self._open()
            handle.write(body)
            handle.flush()
        except OSError as error:
            if self._file is not None:
                self._file.close()
                self._file = None
            raise WriteError(f"{self.description}: {error}", retryable=True) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def create_writer(settings: SinkSettings) -> Writer:
    """The writer the settings ask for (see SinkSettings.target)."""
    target = settings.target
    if target == "file":
        return FileWriter(Path(settings.telemetry_file), settings.telemetry_file_max_bytes)
    if target == "1":
        return InfluxV1Writer(settings.influx_url, settings.influx_database, settings.influx_retention_policy, settings.influx_username,
                              settings.influx_password, settings.influx_gzip, settings.influx_timeout_s)
    return InfluxV2Writer(settings.influx_url, settings.influx_token, settings.influx_org, settings.influx_bucket, settings.influx_gzip,
                          settings.influx_timeout_s)
