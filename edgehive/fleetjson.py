"""`edgehive status --json`: the fleet view as one JSON object, for scripts.

The table `edgehive status` prints is for people and changes as columns are added; this shape
is what scripts and monitoring read (documented in the README). Missing readings are `null`,
never a placeholder string, so a script can test for them.
"""

from __future__ import annotations

from typing import Any

from .fleetview import FleetView, NodeRow

JSON_VERSION = 1


def _node(view: FleetView, row: NodeRow) -> dict[str, Any]:
    b, c = row.beat, row.caps
    state = ("draining" if b and b.draining else "online") if view.online(row) else "offline"
    return {
        "node": row.node,
        "state": state,
        "board": c.board if c else None,
        "kinds": list(c.kinds) if c else [],
        "cpu_pct": b.cpu_pct if b else None,
        "temp_c": b.temp_c if b else None,
        "throttled": b.throttled if b else None,
        "in_flight": b.in_flight if b else None,
        "queued": b.queued if b else None,
        "jobs_done": b.jobs_done if b else None,
        "jobs_failed": b.jobs_failed if b else None,
        "service_ms": round(b.service_s * 1000, 3) if b and b.service_s is not None else None,
    }


def fleet_json(view: FleetView) -> dict[str, Any]:
    """Everything the status table shows, as plain JSON values (see the README for the shape)."""
    with view._lock:  # the view's own lock: its bus thread may still be filling it in
        rows = sorted(view.nodes.values(), key=lambda r: r.node)
        nodes = [_node(view, row) for row in rows]
        s = view.stats
        jobs = None if s is None else {
            "queued": s.queued, "in_flight": s.in_flight, "done": s.done, "failed": s.failed,
            "retried": s.retried, "jobs_per_s": s.jobs_per_s,
        }
        frames = {} if s is None else {
            cam: {"in": n, "done": s.frames_done.get(cam, 0), "dropped": s.frames_dropped.get(cam, 0)}
            for cam, n in sorted(s.frames_in.items())
        }
        fusion = {} if s is None else {
            group: {"windows": n, "fused": s.fusion_fused.get(group, 0), "refused": s.fusion_overflow.get(group, 0)}
            for group, n in sorted(s.fusion_windows.items())
        }
        coordinator = view.coordinator
        coordinators = view.coordinator_roles()
    return {
        "v": JSON_VERSION,
        "coordinator": coordinator,
        "coordinators": coordinators,
        "nodes_online": sum(1 for n in nodes if n["state"] != "offline"),
        "nodes": nodes,
        "jobs": jobs,
        "frames": frames,
        "fusion": fusion,
    }
