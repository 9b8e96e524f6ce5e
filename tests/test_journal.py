"""The job journal: a coordinator restart recovers every accepted, unfinished job and nothing else."""

from __future__ import annotations

from pathlib import Path

import orjson

from edgehive.coordinator.journal import JobJournal
from edgehive.schemas import JobRequest, Requirements


def request(job_id: str, **extra: object) -> JobRequest:
    """A submitted job with its id assigned, as the coordinator journals it."""
    return JobRequest(kind="sleep", id=job_id, params={"seconds": 0.05}, **extra)  # type: ignore[arg-type]


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
    first.ended("j1")
    first.ended("j3")
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
        journal.ended(f"j{i}")
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
    journal.ended("j1")
    journal.close()
    assert journal.recover() == []
    assert list(tmp_path.iterdir()) == []


def test_a_journal_on_a_full_disk_reports_once_keeps_going_and_heals(tmp_path: Path) -> None:
    """Writes fail (the file is /dev/full: ENOSPC on flush): the failure is reported once, later
    calls do not raise, and the next flush rewrites the file from the open jobs."""
    path = tmp_path / "jobs.jsonl"
    problems: list[str] = []
    open_jobs = {"j1": (request("j1"), 1.0, 1)}
    journal = JobJournal(path, lambda: list(open_jobs.values()), problems.append)
    journal.recover()
    path.unlink()
    path.symlink_to("/dev/full")
    journal.close()
    journal._file = path.open("ab")  # what the running coordinator holds: a handle on the failing device

    journal.accepted(request("j1"), 1.0, attempt=1)
    journal.flush()
    assert journal.broken is not None and "No space left on device" in journal.broken
    assert len(problems) == 1 and "jobs continue from memory" in problems[0]
    journal.accepted(request("j2"), 2.0)  # no exception while broken
    open_jobs["j2"] = (request("j2"), 2.0, 0)
    journal.ended("j1")
    del open_jobs["j1"]
    journal._next_heal = 0.0  # the backoff has passed
    journal.flush()  # heals: the rewrite replaces the link with a real file holding the open jobs
    assert journal.broken is None and not path.is_symlink()
    journal.accepted(request("j3"), 3.0)
    journal.close()
    assert [r.id for r, _, _ in recover_once(path)] == ["j2", "j3"]
    assert len(problems) == 1


def test_a_failed_compaction_leaves_the_journal_writable_after_it_heals(tmp_path: Path) -> None:
    """Compaction cannot create its temporary file (a directory is in the way): the old file is
    kept whole, the failure is reported, and once the way is clear the rewrite heals it."""
    path = tmp_path / "jobs.jsonl"
    problems: list[str] = []
    open_jobs: dict[str, tuple[JobRequest, float, int]] = {}
    journal = JobJournal(path, lambda: list(open_jobs.values()), problems.append, compact_after=2)
    journal.recover()
    blocker = path.with_suffix(".tmp")
    blocker.mkdir()
    for i in range(3):
        open_jobs[f"j{i}"] = (request(f"j{i}"), float(i), 0)
        journal.accepted(request(f"j{i}"), float(i))
    journal.ended("j0")
    del open_jobs["j0"]
    journal.ended("j1")  # the second end triggers compaction, which fails
    del open_jobs["j1"]
    assert journal.broken is not None and "IsADirectoryError" in journal.broken
    assert len(problems) == 1
    journal.accepted(request("j9"), 9.0)
    open_jobs["j9"] = (request("j9"), 9.0, 0)
    journal._next_heal = 0.0
    journal.flush()
    assert journal.broken is not None  # still blocked; retried later, reported only once
    blocker.rmdir()
    journal._next_heal = 0.0
    journal.flush()
    assert journal.broken is None
    journal.close()
    assert sorted(r.id for r, _, _ in recover_once(path)) == ["j2", "j9"]
    assert len(problems) == 1


def test_a_compaction_writes_the_journals_own_account_of_open_jobs(tmp_path: Path) -> None:
    """The writer thread owns the journal, not the jobs: what it compacts to is what it was told
    (accepted and not ended), with nothing asked of the thread that owns the jobs."""
    path = tmp_path / "jobs.jsonl"
    journal = JobJournal(path, compact_after=3)
    journal.recover()
    for i in range(5):
        journal.accepted(request(f"j{i}"), float(i))
    for i in (0, 2, 4):
        journal.ended(f"j{i}")  # the third end compacts
    journal.close()
    assert path.read_bytes().count(b"\n") == 2  # compacted: the two open jobs, no end lines
    assert [r.id for r, _, _ in recover_once(path)] == ["j1", "j3"]
