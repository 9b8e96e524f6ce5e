"""Telemetry: the sink that writes what the fleet does to InfluxDB (see docs/TELEMETRY.md)."""
