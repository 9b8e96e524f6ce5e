"""The job journal: a coordinator restart recovers every accepted, unfinished job and nothing else."""

from __future__ import annotations

from pathlib import Path

import orjson

from edgehive.coordinator.journal import JobJournal
from edgehive.schemas import JobRequest, Requirements


def request(job_id: str, **extra: object) -> JobRequest:
    """A submitted job with its id assigned, as the coordinator journals it."""
    return JobRequest(kind="sleep", id=job_id, params={"seconds": 0.05}, **extra)  # type: ignore[arg-type]


def no_open_jobs() -> list[tuple[JobRequest, float, int]]:
    """The `open_jobs` callback for tests that never reach compaction."""
    return []


def recover_once(path: Path) -> list[tuple[JobRequest, float, int]]:
    """What a restarted coordinator would recover; closes the file the journal reopens."""
    journal = JobJournal(path)
    try:
        return journal.recover()
    finally:
        journal.close()


def journal_lines(path: Path) -> list[dict]:
    """The file's entries as dicts, to check what is really on disk."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_open_jobs_recovered_and_ended_ones_not(tmp_path: Path) -> None:
    """After a restart, exactly the accepted-but-unfinished jobs come back, with time and attempt."""
    path = tmp_path / "state" / "jobs.jsonl"  # the folder does not exist yet
    first = JobJournal(path)
    assert first.recover() == []
    detailed = request("j2", requires=Requirements(tags=["camera"], min_ram_mb=512), priority=7, deadline_s=30.0, source="cam1")
    first.accepted(request("j1"), 100.0)
    first.accepted(detailed, 101.5, attempt=2)
    first.accepted(request("j3"), 102.0)
    first.ended("j1", no_open_jobs)
    first.ended("j3", no_open_jobs)
    first.close()

    recovered = recover_once(path)
    assert recovered == [(detailed, 101.5, 2)]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A crash mid-write leaves half a line; the rest of the journal still recovers."""
    path = tmp_path / "jobs.jsonl"
    journal = JobJournal(path)
    journal.recover()
    journal.accepted(request("j1"), 1.0)
    journal.accepted(request("j2"), 2.0)
    journal.close()
    with path.open("ab") as out:
        out.write(b'{"job": {"v": 1, "kind": "sleep", "id": "j3", "par')
    recovered = recover_once(path)
    assert [r.id for r, _, _ in recovered] == ["j1", "j2"]


def test_unreadable_lines_in_the_middle_are_skipped(tmp_path: Path) -> None:
    """Garbage, invalid requests and odd JSON values each cost one line, never the journal."""
    path = tmp_path / "jobs.jsonl"
    good = orjson.dumps({"job": request("ok").model_dump(exclude_none=True), "ts": 5.0, "attempt": 1})
    bad_request = orjson.dumps({"job": {"v": 1, "kind": "has space", "id": "x"}, "ts": 1.0})
    path.write_bytes(b"\n".join([b"not json", bad_request, b"42", b'{"ts": 1.0}', good, b""]))
    journal = JobJournal(path)
    assert [(r.id, ts, attempt) for r, ts, attempt in journal.recover()] == [("ok", 5.0, 1)]
    journal.close()


def test_recover_rewrites_file_to_open_jobs(tmp_path: Path) -> None:
    """The journal does not grow across restarts: only the open jobs remain on disk."""
    path = tmp_path / "jobs.jsonl"
    journal = JobJournal(path)
    journal.recover()
    for i in range(5):
        journal.accepted(request(f"j{i}"), float(i))
    for i in (0, 1, 3):
        journal.ended(f"j{i}", no_open_jobs)
    journal.close()
    with path.open("ab") as out:
        out.write(b"{torn")

    again = JobJournal(path)
    assert [r.id for r, _, _ in again.recover()] == ["j2", "j4"]
    assert [entry["job"]["id"] for entry in journal_lines(path)] == ["j2", "j4"]
    assert not path.with_suffix(".tmp").exists()
    # The journal keeps appending after recovery, and a second restart sees both.
    again.accepted(request("j5"), 5.0)
    again.close()
    assert [r.id for r, _, _ in recover_once(path)] == ["j2", "j4", "j5"]


def test_resubmitted_id_keeps_latest_entry(tmp_path: Path) -> None:
    """A job journaled again (a retry with a higher attempt) comes back once, as its latest state."""
    path = tmp_path / "jobs.jsonl"
    journal = JobJournal(path)
    journal.recover()
    journal.accepted(request("j1"), 1.0, attempt=1)
    journal.accepted(request("j1"), 1.0, attempt=2)
    journal.close()
    assert [(r.id, attempt) for r, _, attempt in recover_once(path)] == [("j1", 2)]


def test_no_path_is_a_no_op(tmp_path: Path) -> None:
    """With the journal disabled (state_dir ''), every call is harmless and writes nothing."""
    journal = JobJournal(None)
    assert journal.recover() == []
    journal.accepted(request("j1"), 1.0)
    journal.ended("j1", no_open_jobs)
    journal.close()
    assert journal.recover() == []
    assert list(tmp_path.iterdir()) == []
