"""Sensor groups: readings are windowed per group, and each closed window becomes a fusion job.

A group's windows are fused strictly one after another, because window n+1 needs window n's
posterior as its prior. The prior is put into the job when the job is created, so the job
alone is enough to fuse the window on any node, again and again if nodes die; the coordinator
keeps the newest posterior per group and hands it to the next window.

Bounds, and what happens at them (never silently):
- a closed window waits in its group's queue; when `queue_max` windows wait across all groups,
  a newly closed window is refused (it was never accepted), counted in `overflow` and reported
  by the caller on `errors`. Accepted windows are jobs: journaled, leased, retried.
- an open window takes at most `max_readings`; more are refused the same way.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from edgehive.schemas import JobRequest, Requirements
from edgehive.schemas.base import Ident
from edgehive.schemas.fusion import FusionMethod, ImuConfig, KalmanConfig, RowData, window_params, window_row
from edgehive.schemas.kinds import FUSION_KIND
from edgehive.schemas.sensors import IMU_QUANTITY, ImuReading, SensorReading, canonical_unit

from .fusion_log import COMPACT_AFTER, FusionLog, FusionWrite, Snapshot, closed_line, snapshot_line

log = logging.getLogger(__name__)



class GroupConfig(BaseModel):
    """One sensor group: which readings it fuses, and how its windows close."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    quantity: Ident
    sensors: list[Ident] = Field(default_factory=list, description="Sensors of the group; empty: every sensor of the quantity")
    window_s: float | None = Field(None, gt=0, le=3600, description="Time windows of this length, aligned to the epoch")
    window_count: int | None = Field(None, ge=1, le=100_000, description="Or: windows of this many readings")
    method: FusionMethod | None = Field(None, description="Default: imu for quantity imu, else kalman")
    config: dict[str, Any] = Field(default_factory=dict, description="Filter tuning (KalmanConfig or ImuConfig fields)")
    requires: Requirements | None = Field(None, description="Where the group's windows may run, as a job's `requires` (tags, node, arch, …)")
    priority: int = Field(10, ge=-100, le=100, description="Queue priority of the group's windows (default above plain jobs: fusion is near real time)")

    @model_validator(mode="after")
    def _one_window_rule(self) -> GroupConfig:
        if self.window_s is not None and self.window_count is not None:
            raise ValueError("give window_s or window_count, not both")
        return self

    @property
    def fusion_method(self) -> FusionMethod:
        return self.method or ("imu" if self.quantity == IMU_QUANTITY else "kalman")

    @property
    def window_length_s(self) -> float | None:
        return None if self.window_count is not None else (self.window_s or 1.0)


GROUPS = TypeAdapter(dict[Ident, GroupConfig])


def parse_groups(text: str) -> dict[str, GroupConfig]:
    """`EDGEHIVE_FUSION_GROUPS`: JSON `{"room": {"quantity": "temperature", ...}}`, or a path to such a file."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith(("{", "[")):  # JSON (an array is refused for its shape, not looked for as a file), else a path
        text = Path(text).read_text()
    return GROUPS.validate_json(text)


@dataclass
class Window:
    number: int
    start: float  # epoch s; for count windows, the first reading's time
    end: float
    readings: list[RowData] = field(default_factory=list)  # ScalarRow or ImuRow order (schemas/fusion.py)


@dataclass
class Group:
    name: str
    config: GroupConfig
    prior: dict[str, Any] | None = None
    windows: int = 0  # windows closed so far; the next one gets windows + 1
    open: Window | None = None
    waiting: deque[Window] = field(default_factory=deque)
    in_flight_window: Window | None = None  # the window being fused, as a job
    done: int = 0  # the last window that ended (fused or failed)
    closed_until: float = -math.inf  # end of the last closed time window: older readings are late
    last_end: float = -math.inf  # end of the last closed window of either kind (kept in the log: what a takeover replays after)

    @property
    def in_flight(self) -> str | None:
        """The job id of the window being fused."""
        return None if self.in_flight_window is None else window_job_id(self.name, self.in_flight_window.number)


class FusionWindows:
    """Every group's open window, closed windows waiting, and the job of each group in flight."""

    def __init__(self, groups: dict[str, GroupConfig], queue_max: int, max_readings: int, grace_s: float, state_path: Path | None) -> None:
        self.groups = {name: Group(name, config) for name, config in groups.items()}
        self.queue_max = queue_max
        self.max_readings = max_readings
        self.grace_s = grace_s
        self._by_sensor: dict[tuple[str, str], list[Group]] = {}
        self._by_quantity: dict[str, list[Group]] = {}
        for group in self.groups.values():
            if group.config.sensors:
                for sensor in group.config.sensors:
                    self._by_sensor.setdefault((sensor, group.config.quantity), []).append(group)
            else:
                self._by_quantity.setdefault(group.config.quantity, []).append(group)
        self.readings: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.fused: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.overflow: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()  # per sensor: sequence numbers never received
        self._last_seq: dict[tuple[str, str], int] = {}
        self._refused: list[tuple[str, int, int]] = []
        self._waiting = 0  # windows waiting across all groups (checked on every reading)
        self.log = FusionLog(state_path) if state_path is not None else None
        self._changed: set[str] = set()
        self._lines: list[bytes] = []  # closed windows accepted, for the log
        self._logged = -1  # lines in the log since it was last rewritten; -1: rewrite first
        self._load_state()

    # -- readings ---------------------------------------------------------------------------

    def wants(self, sensor: str, quantity: str) -> list[Group]:
        return self._by_sensor.get((sensor, quantity), []) + self._by_quantity.get(quantity, [])

    def add(self, sensor: str, quantity: str, reading: SensorReading | ImuReading, ts: float, replayed: bool = False) -> list[str]:
        """File one reading (stamped `ts`) into each group that wants it; returns why any group refused it.

        `replayed`: a standby taking over files the readings it kept while the active one ran;
        a group skips, silently, those at or before the end of its last closed window (the
        active one filed them already), so the window it had open is rebuilt whole."""
        problems: list[str] = []
        groups = self.wants(sensor, quantity)
        if replayed:
            groups = [g for g in groups if ts > g.last_end]
        elif groups and reading.seq is not None:
            self._count_gap(sensor, quantity, reading.seq)
        for group in groups:  # units were checked and normalised at the door (parse_readings)
            problem = self._file(group, window_row(sensor, reading, ts), ts)
            if problem is not None:
                problems.append(f"group {group.name}: {problem}")
        return problems

    def _count_gap(self, sensor: str, quantity: str, seq: int) -> None:
        """Readings a sensor numbered but that never arrived (dropouts, QoS 0 losses). A sequence
        that goes back means the sensor restarted: counting starts over, nothing is missing."""
        key = (sensor, quantity)
        last = self._last_seq.get(key)
        self._last_seq[key] = seq
        if last is not None and seq > last + 1:
            self.missing[sensor] += seq - last - 1
        else:
            self.missing[sensor] += 0  # every numbered sensor shows, at 0 while nothing is missing

    def _file(self, group: Group, row: RowData, ts: float) -> str | None:
        config = group.config
        length = config.window_length_s
        window = group.open
        if length is not None:
            start = math.floor(ts / length) * length
            if window is not None and start > window.start:
                self._close(group)
                window = None
            elif start < (window.start if window is not None else group.closed_until):
                self.late[group.name] += 1
                return "reading is older than a window already closed (late or clock skew)"
            if window is None:
                window = group.open = Window(group.windows + 1, start, start + length)
        elif window is None:
            window = group.open = Window(group.windows + 1, ts, ts)
        if len(window.readings) >= self.max_readings:
            self.overflow[group.name] += 1
            return f"window {window.number} already holds {self.max_readings} readings (fusion_window_max_readings)"
        window.readings.append(row)
        if length is None:
            window.end = max(window.end, ts)
        self.readings[group.name] += 1
        if config.window_count is not None and len(window.readings) >= config.window_count:
            self._close(group)
        return None

    def close_due(self, now: float) -> None:
        """Close time windows whose end (plus grace for late readings) has passed."""
        for group in self.groups.values():
            if group.open is not None and group.config.window_length_s is not None and now >= group.open.end + self.grace_s:
                self._close(group)

    def _close(self, group: Group) -> None:
        window, group.open = group.open, None
        if window is None or not window.readings:
            return
        group.windows = window.number
        group.last_end = max(group.last_end, window.end)
        self._changed.add(group.name)  # numbering survives a restart: a window number is never reused
        if group.config.window_length_s is not None:
            group.closed_until = window.end
        self.closed[group.name] += 1
        if self._waiting >= self.queue_max:
            self.overflow[group.name] += 1
            self._refused.append((group.name, window.number, len(window.readings)))
            return
        group.waiting.append(window)
        self._waiting += 1
        if self.log is not None:
            self._lines.append(closed_line(group.name, _window_entry(window)))

    def take_refused(self) -> list[tuple[str, int, int]]:
        """(group, window, readings) of windows refused since the last call, to report on `errors`."""
        if not self._refused:
            return self._refused
        refused, self._refused = self._refused, []
        return refused

    def waiting_count(self) -> int:
        return self._waiting

    # -- jobs -------------------------------------------------------------------------------

    def ready_jobs(self) -> list[JobRequest]:
        """A job for the next waiting window of every group that has none in flight."""
        jobs: list[JobRequest] = []
        for group in self.groups.values():
            if group.in_flight is not None or not group.waiting:
                continue
            window = group.waiting.popleft()
            self._waiting -= 1
            job_id = window_job_id(group.name, window.number)
            group.in_flight_window = window
            config = group.config
            params = window_params(config.fusion_method, group.name, config.quantity, canonical_unit(config.quantity), window.number,
                                   window.start, window.end, group.prior, window.readings, config.config)
            jobs.append(JobRequest(kind=FUSION_KIND, id=job_id, source=group.name, params=params, requires=config.requires, priority=config.priority))
        return jobs

    def finished(self, job_id: str, params: dict[str, Any], output: Any) -> None:
        """A group's window ended: its posterior (None when the job failed) becomes the next prior."""
        group = self.groups.get(str(params.get("group")))
        if group is None or group.in_flight != job_id:
            return
        group.in_flight_window = None
        group.done = max(group.done, int(params.get("window", 0)))
        self._changed.add(group.name)
        if isinstance(output, dict) and isinstance(output.get("state"), dict):
            group.prior = output["state"]
            self.fused[group.name] += 1
        else:
            self.failed[group.name] += 1  # the prior carries over the gap

    def adopt(self, job_id: str, params: dict[str, Any]) -> None:
        """A fusion job recovered from the journal is its group's window in flight."""
        group = self.groups.get(str(params.get("group")))
        if group is None:
            return
        number = int(params.get("window", 0))
        group.in_flight_window = Window(number, float(params.get("window_start", 0.0)), float(params.get("window_end", 0.0)), _rows(params.get("readings", [])))
        group.windows = max(group.windows, number)
        kept = [w for w in group.waiting if w.number != number]  # the journal holds it as a job: not waiting
        self._waiting -= len(group.waiting) - len(kept)
        group.waiting = deque(kept)

    # -- restart survival (coordinator/fusion_log.py) ----------------------------------------

    def take_state(self) -> FusionWrite | None:
        """What changed since the last call, as lines for the log: snapshots of the groups that
        changed and windows accepted; on the first call, and when the log grew long, all of it
        (a snapshot per group and the windows still pending) to replace the log."""
        if self.log is None:
            return None
        if self._logged < 0 or self._logged >= COMPACT_AFTER:
            lines: list[bytes] = []
            for name, g in self.groups.items():
                lines.append(snapshot_line(name, self._snapshot(g)))
                lines += [closed_line(name, _window_entry(w)) for w in ([g.in_flight_window] if g.in_flight_window else []) + list(g.waiting)]
            self._lines.clear()
            self._changed.clear()
            self._logged = len(lines)
            return FusionWrite(lines, rewrite=True)
        if not self._lines and not self._changed:
            return None
        lines, self._lines = self._lines, []
        lines += [snapshot_line(name, self._snapshot(self.groups[name])) for name in self._changed]
        self._changed.clear()
        self._logged += len(lines)
        return FusionWrite(lines)

    def rewrite_next(self) -> None:
        """The next `take_state` returns the whole state (to hand a standby a full copy)."""
        self._logged = -1

    def flush_state(self) -> None:
        """Write what changed since the last call (`take_state`) to the log, from this thread."""
        change = self.take_state()
        if change is not None and self.log is not None:
            self.log.write(change)

    def _snapshot(self, group: Group) -> Snapshot:
        return Snapshot(windows=group.windows, done=group.done, prior=group.prior,
                        until=None if group.last_end == -math.inf else group.last_end)

    def _load_state(self) -> None:
        if self.log is None:
            return
        for name, saved in self.log.load().items():
            group = self.groups.get(name)
            if group is None:
                continue
            snap = saved.snapshot
            group.prior, group.done = snap.prior, snap.done
            if snap.until is not None:
                group.last_end = snap.until
                if group.config.window_length_s is not None:
                    group.closed_until = snap.until
            group.windows = max([snap.windows, *saved.closed])
            for number in sorted(n for n in saved.closed if n > snap.done):  # closed, never ended: waiting again
                entry = saved.closed[number]
                group.waiting.append(Window(number, float(entry["start"]), float(entry["end"]), _rows(entry["readings"])))
                self._waiting += 1

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def stats(self) -> dict[str, Any]:
        return {
            "fusion_queued": self.waiting_count(), "fusion_readings": dict(self.readings), "fusion_windows": dict(self.closed),
            "fusion_fused": dict(self.fused), "fusion_failed": dict(self.failed), "fusion_overflow": dict(self.overflow),
            "fusion_late": dict(self.late), "sensor_missing": dict(self.missing),
        }


def window_job_id(group: str, number: int) -> str:
    return f"fusion-{group}-{number}"[:64]


def _window_entry(window: Window) -> dict[str, Any]:
    return {"number": window.number, "start": window.start, "end": window.end, "readings": window.readings}


def _rows(saved: Iterable[Any]) -> list[RowData]:
    """Rows read back from the journal or the log (JSON arrays) as the tuples `window_row` builds."""
    return [tuple(row) for row in saved]


def validate_groups(groups: Iterable[GroupConfig]) -> None:
    """Fail at start-up, not at the first window, on tuning a filter would refuse."""
    for config in groups:
        try:
            (ImuConfig if config.fusion_method == "imu" else KalmanConfig).model_validate(config.config)
        except ValidationError as error:
            problems = ["config.{}: {}".format(".".join(str(p) for p in item["loc"]), item["msg"]) for item in error.errors(include_url=False)[:3]]
            raise ValueError(f"fusion group config: {'; '.join(problems)}") from None
