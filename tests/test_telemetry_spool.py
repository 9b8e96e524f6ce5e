"""The spool: one order for every batch, a hard bound that drops the oldest, and nothing lost across a restart."""

from __future__ import annotations

from pathlib import Path

from edgehive.telemetry.spool import Spool


def body(seq: int, points: int = 3, width: int = 100) -> bytes:
    return b"".join(f"m,b={seq} i={i}i {seq * 1000 + i}".ljust(width).encode() + b"\n" for i in range(points))


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (batch := spool.peek()) is not None:
        out.append(batch.body)
        spool.done(batch.seq)
    return out


def test_batches_come_out_in_the_order_they_went_in_across_memory_and_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, memory_max_bytes=3 * len(body(0)))
    for seq in range(10):
        spool.put(body(seq), 3)
    assert len(list((tmp_path / "spool").glob("*.lp"))) == 7, "three batches fit in memory, the rest wait on disk"
    spool.put(body(10), 3)  # disk is not empty: this one queues behind it even though memory frees up below
    assert spool.points == 33
    assert drain(spool) == [body(seq) for seq in range(11)]
    assert spool.points == 0 and spool.bytes == 0 and not list((tmp_path / "spool").iterdir())


def test_peek_without_done_returns_the_same_batch_so_a_failed_write_is_retried_not_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, memory_max_bytes=0)
    spool.put(body(1), 3)
    spool.put(body(2), 3)
    first = spool.peek()
    assert first is not None and spool.peek() == first
    spool.done(first.seq + 1)  # not the head: nothing happens
    assert spool.peek() == first


def test_at_the_bound_the_oldest_batches_are_dropped_and_counted(tmp_path: Path) -> None:
    size = len(body(0))
    spool = Spool(tmp_path, max_bytes=5 * size, memory_max_bytes=2 * size)
    dropped = [spool.put(body(seq), 3) for seq in range(8)]
    assert dropped == [0, 0, 0, 0, 0, 3, 3, 3]
    assert spool.dropped_points == 9 and spool.dropped_batches == 3
    assert spool.bytes == 5 * size and sum(p.stat().st_size for p in tmp_path.glob("*.lp")) <= 5 * size
    assert drain(spool) == [body(seq) for seq in range(3, 8)], "the newest survive, still in order"


def test_a_memory_only_spool_is_bounded_the_same_way() -> None:
    size = len(body(0))
    spool = Spool(None, max_bytes=2 * size)
    for seq in range(5):
        spool.put(body(seq), 3)
    assert spool.dropped_points == 9
    assert drain(spool) == [body(3), body(4)]


def test_a_restart_sends_what_was_left_first_in_order_then_what_is_new(tmp_path: Path) -> None:
    size = len(body(0))
    spool = Spool(tmp_path, max_bytes=1 << 20, memory_max_bytes=2 * size)
    for seq in range(5):
        spool.put(body(seq), 3)
    head = spool.peek()
    assert head is not None
    spool.done(head.seq)  # batch 0 was written before the stop
    spool.persist()  # batches 1 and 2 were in memory: now on disk, in front of 3 and 4
    (tmp_path / ".0000000000000099-3.lp.tmp").write_bytes(b"half a batch from a crash mid-write")

    again = Spool(tmp_path, max_bytes=1 << 20, memory_max_bytes=2 * size)
    assert again.points == 12 and not list(tmp_path.glob(".*.tmp")), "a half-written temp file is never replayed"
    again.put(body(5), 3)
    assert drain(again) == [body(seq) for seq in range(1, 6)]


def test_spool_files_are_plain_line_protocol_named_by_order_and_point_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, memory_max_bytes=0)
    spool.put(body(7, points=4), 4)
    [path] = tmp_path.glob("*.lp")
    assert path.name == "0000000000000001-4.lp"
    assert path.read_bytes() == body(7, points=4)
