"""Settings of `edgehive sink`: where points go, how they are batched, how much may wait on disk."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edgehive.settings import CommonSettings

MiB = 1024 * 1024


class SinkSettings(CommonSettings):
    """No InfluxDB configured (the default) means a line-protocol file, as on a laptop."""

    influx_url: str = Field("", description="InfluxDB URL, e.g. http://influxdb:8086 (empty: write line protocol to telemetry_file instead)")
    influx_version: Literal["auto", "1", "2"] = Field(
        "auto", description="InfluxDB write API: 1 (/write, InfluxDB 1.x), 2 (/api/v2/write via influxdb-client: 2.x, 3.x), auto (2 when a token is set)")
    influx_token: str = Field("", description="API token (InfluxDB 2.x/3.x)")
    influx_org: str = Field("", description="Organization (InfluxDB 2.x)")
    influx_bucket: str = Field("edgehive", description="Bucket (InfluxDB 2.x/3.x)")
    influx_database: str = Field("edgehive", description="Database (InfluxDB 1.x; created when missing); also the database Grafana's InfluxQL queries")
    influx_retention_policy: str = Field("", description="Retention policy (InfluxDB 1.x; empty: the database's default)")
    influx_username: str = Field("", description="User (InfluxDB 1.x, and Grafana's datasource)")
    influx_password: str = Field("", description="Password (InfluxDB 1.x, and Grafana's datasource; for 2.x a token)")
    influx_gzip: bool = Field(True, description="Compress write requests with gzip")
    influx_timeout_s: float = Field(10.0, gt=0, description="Seconds one write request may take before it counts as failed")
    telemetry_file: str = Field(".edgehive/telemetry.lp", description="Line-protocol file written when no influx_url is set (import with `influx write` or curl /write)")
    telemetry_file_max_bytes: int = Field(100 * MiB, ge=MiB, description="Size at which the telemetry file is rotated to <file>.1 (one old file is kept)")
    spool_dir: str = Field(".edgehive/spool", description="Folder where points wait, in order, while InfluxDB is unreachable (empty: memory only)")
    spool_max_bytes: int = Field(100 * MiB, ge=MiB, description="Most bytes of points waiting; at the bound the oldest are dropped, counted and reported")
    sink_batch_size: int = Field(5000, ge=1, le=100_000, description="Points per write request")
    sink_flush_s: float = Field(1.0, gt=0, description="Longest a point waits before its batch is written")
    sink_retry_max_s: float = Field(10.0, gt=0, description="Longest wait between write attempts while InfluxDB is unreachable (backoff doubles up to it)")
    sink_stats_s: float = Field(10.0, gt=0, description="Seconds between the sink's own `sink` points (spool size, drops, writes)")

    @field_validator("influx_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Anything else was taken as a host name and retried forever, every point spooled.
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an http:// or https:// URL, e.g. http://influxdb:8086")
        return value

    @property
    def target(self) -> Literal["file", "1", "2"]:
        """Which writer: the file when no URL is set; else the API version (auto: 2 with a token)."""
        if not self.influx_url:
            return "file"
        if self.influx_version == "auto":
            return "2" if self.influx_token else "1"
        return self.influx_version
