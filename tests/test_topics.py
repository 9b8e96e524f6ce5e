"""The topic scheme: builders and `parse` are inverses, and anything outside the scheme is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from paho.mqtt.client import topic_matches_sub

from edgehive.schemas import TopicError, TopicRef, Topics

# kind → (build it, the suffix after the prefix, what parse must report)
Case = tuple[Callable[[Topics], str], str, TopicRef]

CASES: dict[str, Case] = {
    "capabilities": (lambda t: t.capabilities("pi-1"), "nodes/pi-1/capabilities", TopicRef("capabilities", node="pi-1")),
    "status": (lambda t: t.status("pi-1"), "nodes/pi-1/status", TopicRef("status", node="pi-1")),
    "heartbeat": (lambda t: t.heartbeat("pi-1"), "nodes/pi-1/heartbeat", TopicRef("heartbeat", node="pi-1")),
    "jobs": (lambda t: t.jobs("jetson.2"), "nodes/jetson.2/jobs", TopicRef("jobs", node="jetson.2")),
    "node_result": (lambda t: t.node_results("pi-1"), "nodes/pi-1/results", TopicRef("node_result", node="pi-1")),
    "node_snapshot": (lambda t: t.node_snapshot("pi-1", "door"), "nodes/pi-1/snapshots/door",
                      TopicRef("node_snapshot", node="pi-1", extra={"camera": "door"})),
    "result": (lambda t: t.result("detect", "cam_1"), "results/detect/cam_1", TopicRef("result", result_kind="detect", source="cam_1")),
    "frames": (lambda t: t.frames("cam:door"), "frames/cam:door", TopicRef("frames", extra={"camera": "cam:door"})),
    "sensor": (lambda t: t.sensor("imu-1", "accel"), "sensors/imu-1/accel", TopicRef("sensor", extra={"sensor": "imu-1", "quantity": "accel"})),
    "submit": (lambda t: t.submit, "jobs/submit", TopicRef("submit")),
    "job_state": (lambda t: t.job_state("job-42"), "jobs/job-42/state", TopicRef("job_state", job="job-42")),
    "coordinator_status": (lambda t: t.coordinator_status, "coordinator/status", TopicRef("coordinator_status")),
    "coordinator_stats": (lambda t: t.coordinator_stats, "coordinator/stats", TopicRef("coordinator_stats")),
    "coordinator_leader": (lambda t: t.coordinator_leader, "coordinator/leader", TopicRef("coordinator_leader")),
    "coordinator_journal": (lambda t: t.coordinator_journal, "coordinator/journal", TopicRef("coordinator_journal")),
    "coordinator_member": (lambda t: t.coordinator_member("head-1"), "coordinator/members/head-1",
                           TopicRef("coordinator_member", extra={"coordinator": "head-1"})),
    "errors": (lambda t: t.errors, "errors", TopicRef("errors")),
}

PREFIXES = ["edgehive/v1", "acme/fleet", "single", "a/b/c/d"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("kind", sorted(CASES))
def test_build_then_parse(prefix: str, kind: str) -> None:
    """Every topic a part builds is understood by every other part, under any prefix."""
    topics = Topics(prefix)
    build, suffix, expected = CASES[kind]
    topic = build(topics)
    assert topic == f"{prefix}/{suffix}"
    assert topics.parse(topic) == expected


@pytest.mark.parametrize("kind", sorted(CASES))
def test_parse_then_build(kind: str) -> None:
    """The reverse direction: rebuilding from a parsed ref gives the same topic."""
    topics = Topics("acme/fleet")
    build, suffix, _ = CASES[kind]
    ref = topics.parse(f"acme/fleet/{suffix}")
    rebuilt = {
        "capabilities": lambda: topics.capabilities(ref.node),
        "status": lambda: topics.status(ref.node),
        "heartbeat": lambda: topics.heartbeat(ref.node),
        "jobs": lambda: topics.jobs(ref.node),
        "result": lambda: topics.result(ref.result_kind, ref.source),
        "node_result": lambda: topics.node_results(ref.node),
        "node_snapshot": lambda: topics.node_snapshot(ref.node, ref.extra["camera"]),
        "frames": lambda: topics.frames(ref.extra["camera"]),
        "sensor": lambda: topics.sensor(ref.extra["sensor"], ref.extra["quantity"]),
        "job_state": lambda: topics.job_state(ref.job),
        "coordinator_member": lambda: topics.coordinator_member(ref.extra["coordinator"]),
    }.get(ref.kind, lambda: build(topics))()
    assert rebuilt == f"acme/fleet/{suffix}"


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_topic_matches_its_pattern_only(kind: str) -> None:
    """A subscription to `pattern(kind)` receives that kind's topics and no other kind's (MQTT matching)."""
    topics = Topics()
    pattern = topics.pattern(kind)
    for other, (build, _, _) in CASES.items():
        assert topic_matches_sub(pattern, build(topics)) == (other == kind), (pattern, other)


def test_pattern_heartbeat() -> None:
    """The filter the coordinator subscribes with, spelled out."""
    assert Topics().pattern("heartbeat") == "edgehive/v1/nodes/+/heartbeat"
    assert Topics("acme/fleet").pattern("result") == "acme/fleet/results/+/+"
    assert Topics().pattern("submit") == "edgehive/v1/jobs/submit"


@pytest.mark.parametrize("prefix", ["acme/fleet/", "/acme/fleet", "/acme/fleet/"])
def test_prefix_slashes_are_stripped(prefix: str) -> None:
    """`acme/fleet/` from an env var must not produce `acme/fleet//errors`."""
    topics = Topics(prefix)
    assert topics.prefix == "acme/fleet"
    assert topics.errors == "acme/fleet/errors"
    assert topics.parse("acme/fleet/errors").kind == "errors"


@pytest.mark.parametrize(
    ("prefix", "topic"),
    [
        ("edgehive/v1", "acme/fleet/errors"),
        ("acme/fleet", "edgehive/v1/errors"),
        ("edgehive/v1", "edgehive/v2/errors"),
        ("edgehive/v1", "edgehive/errors"),
        ("edgehive/v1", "/edgehive/v1/errors"),
        ("edgehive/v1", "EDGEHIVE/v1/errors"),
        ("acme/fleet", "acme/fleetx/errors"),
    ],
)
def test_parse_refuses_wrong_prefix(prefix: str, topic: str) -> None:
    """Another fleet's (or another version's) traffic is never taken for ours."""
    with pytest.raises(TopicError, match="outside prefix"):
        Topics(prefix).parse(topic)


@pytest.mark.parametrize(
    "suffix",
    [
        "",
        "nodes/x",
        "nodes",
        "nodes/x/heartbeat/extra",
        "nodes/x/bogus",
        "results/detect",
        "frames",
        "frames/cam/extra",
        "jobs",
        "jobs/submit/now",
        "jobs/j1/status",
        "coordinator",
        "coordinator/health",
        "errors/more",
        "bogus",
    ],
)
def test_parse_refuses_wrong_shape(suffix: str) -> None:
    """Unknown levels and wrong lengths are not part of the scheme."""
    topic = "edgehive/v1" + (f"/{suffix}" if suffix else "")
    with pytest.raises(TopicError, match="not part of the edgehive scheme"):
        Topics().parse(topic)


BAD_IDS = ["my node", "a+b", "+", "#", "a#", "", "-x", "x" * 65, "ünïcode", "tab\there"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("template", ["nodes/{}/heartbeat", "nodes/{}/jobs", "results/{}/src", "results/detect/{}",
                                      "frames/{}", "sensors/{}/temp", "sensors/s1/{}", "jobs/{}/state"])
def test_parse_refuses_bad_ids(bad: str, template: str) -> None:
    """Spaces, wildcards, empty and over-long ids are refused with a TopicError."""
    with pytest.raises(TopicError, match="invalid"):
        Topics().parse("edgehive/v1/" + template.format(bad))


def test_longest_id_is_accepted() -> None:
    """64 characters is the documented maximum; 65 is refused above."""
    node = "n" * 64
    topics = Topics()
    assert topics.parse(topics.heartbeat(node)).node == node


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("build", [
    lambda t, i: t.capabilities(i), lambda t, i: t.status(i), lambda t, i: t.heartbeat(i), lambda t, i: t.jobs(i),
    lambda t, i: t.result(i, "src"), lambda t, i: t.result("detect", i), lambda t, i: t.frames(i),
    lambda t, i: t.sensor(i, "temp"), lambda t, i: t.sensor("s1", i), lambda t, i: t.job_state(i),
])
def test_builders_refuse_bad_ids(bad: str, build: Callable[[Topics, str], str]) -> None:
    """A bad id fails where it is built, not later at a confused subscriber."""
    with pytest.raises(TopicError):
        build(Topics(), bad)


def test_topic_error_is_a_value_error() -> None:
    """Callers that catch ValueError for bad input also catch bad topics."""
    assert issubclass(TopicError, ValueError)


def test_trailing_newline_in_id_is_refused() -> None:
    """`x\\n` is refused by the message models (pydantic's regex), so the topic layer must refuse it too."""
    topics = Topics()
    with pytest.raises(TopicError):
        topics.heartbeat("pi-1\n")
    with pytest.raises(TopicError):
        topics.parse("edgehive/v1/nodes/pi-1\n/heartbeat")
