"""The agent's results outbox (agents/results.py): results that finish together travel together,
and no result ever waits for company. The first tests drive the outbox with a stand-in for the
network thread (a queue this test runs); the last one runs it on a real bus and broker."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import orjson
import pytest
from harness import MosquittoBroker, Recorder, bus_url, free_port, wait_until

from edgehive.agents.results import ResultOutbox, pack
from edgehive.bus import MqttBus
from edgehive.schemas import Topics


class Loop:
    """The network thread's side: what `call_soon` asked, run when the test says."""

    def __init__(self) -> None:
        self.asked: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.sent: list[bytes] = []

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.asked.put(fn)

    def turn(self) -> int:
        ran = 0
        while not self.asked.empty():
            self.asked.get()()
            ran += 1
        return ran


def item(n: int, size: int = 0) -> bytes:
    return orjson.dumps({"job_id": f"j{n}", "pad": "x" * size})


def sent_ids(messages: list[bytes]) -> list[str]:
    ids: list[str] = []
    for message in messages:
        body = orjson.loads(message)
        ids += [r["job_id"] for r in (body if isinstance(body, list) else [body])]
    return ids


def test_an_idle_node_sends_its_one_result_alone_and_unchanged_at_the_next_turn() -> None:
    loop = Loop()
    outbox = ResultOutbox(loop.sent.append, loop.call_soon)
    outbox.add(item(1))
    assert loop.sent == [] and loop.turn() == 1, "a send is asked of the network thread at once"
    assert loop.sent == [item(1)], "one result is a plain object, byte for byte"


def test_results_finished_before_the_network_thread_s_turn_go_in_one_array() -> None:
    loop = Loop()
    outbox = ResultOutbox(loop.sent.append, loop.call_soon)
    for n in range(5):
        outbox.add(item(n))
    assert loop.turn() == 1, "one wake-up for them all"
    assert len(loop.sent) == 1 and sent_ids(loop.sent) == [f"j{n}" for n in range(5)]
    outbox.add(item(9))  # and the next one is not held back by the last batch
    loop.turn()
    assert loop.sent[-1] == item(9)


def test_results_made_while_a_jobs_message_is_handled_go_out_together_at_its_end() -> None:
    loop = Loop()
    outbox = ResultOutbox(loop.sent.append, loop.call_soon)
    with outbox.holding():
        for n in range(3):
            outbox.add(item(n))
        assert loop.sent == []
    assert loop.turn() == 0, "the end of the message sent them; no wake-up was needed"
    assert sent_ids(loop.sent) == ["j0", "j1", "j2"] and len(loop.sent) == 1


def test_arrays_are_cut_at_the_size_bound_and_a_big_result_goes_alone() -> None:
    small = [item(n, 100) for n in range(10)]
    big = item(99, 5000)
    messages = list(pack([*small[:5], big, *small[5:]], max_bytes=1000))
    assert sent_ids(messages) == [f"j{n}" for n in range(5)] + ["j99"] + [f"j{n}" for n in range(5, 10)]
    assert big in messages, "a result larger than the bound is sent alone, as it is"
    assert all(len(m) <= 1000 for m in messages if m != big)
    assert list(pack([small[0]])) == [small[0]]


def test_every_result_from_many_threads_is_sent_exactly_once() -> None:
    loop = Loop()
    outbox = ResultOutbox(loop.sent.append, loop.call_soon)
    stop = threading.Event()

    def network() -> None:
        while not stop.is_set():
            loop.turn()
        loop.turn()

    runner = threading.Thread(target=network)
    runner.start()
    workers = [threading.Thread(target=lambda w=w: [outbox.add(item(w * 1000 + n)) for n in range(500)]) for w in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wait_until(lambda: len(sent_ids(loop.sent)) >= 3000, 10, "every result sent")
    stop.set()
    runner.join()
    ids = sent_ids(loop.sent)
    assert sorted(ids) == sorted(f"j{w * 1000 + n}" for w in range(6) for n in range(500))


def test_a_heartbeat_s_flush_waits_for_a_send_in_progress_so_results_go_first() -> None:
    """The heartbeat thread flushes before it publishes; if the network thread is sending what
    it took a moment ago, the heartbeat must still go after those results."""
    order: list[str] = []
    sending, release = threading.Event(), threading.Event()

    def send(payload: bytes) -> None:
        sending.set()
        release.wait(10)
        order.append("result")

    outbox = ResultOutbox(send, lambda fn: None)
    outbox.add(item(1))
    network = threading.Thread(target=outbox.flush)
    network.start()
    assert sending.wait(10)
    beat_sent = threading.Event()

    def heartbeat() -> None:
        outbox.flush()
        order.append("heartbeat")
        beat_sent.set()

    beats = threading.Thread(target=heartbeat)
    beats.start()
    beat_sent.wait(0.5)  # a heartbeat that did not wait for the send would be out by now
    release.set()
    network.join()
    beats.join()
    assert order == ["result", "heartbeat"]


@pytest.mark.integration
def test_results_added_from_worker_threads_reach_the_broker_through_the_network_thread(mosquitto: MosquittoBroker, prefix: str) -> None:
    """On a real bus: call_soon runs on paho's network thread, and what it publishes goes out."""
    topics = Topics(prefix)
    bus = MqttBus(bus_url(mosquitto.url), topics, f"results-test-{free_port()}", source="results-test")
    watcher = Recorder(mosquitto.url, prefix)
    threads: list[str] = []

    def send(payload: bytes) -> None:
        threads.append(threading.current_thread().name)
        bus.publish(topics.node_results("pi-1"), payload, qos=1)

    bus.start()
    try:
        outbox = ResultOutbox(send, bus.call_soon)
        workers = [threading.Thread(target=lambda n=n: outbox.add(item(n)), name=f"job-{n}") for n in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        def got() -> list[str]:
            return sent_ids([p for t, p, _ in list(watcher.messages) if t.endswith("/results")])

        wait_until(lambda: len(got()) == 20, 10, "all 20 results")
        assert sorted(got()) == sorted(f"j{n}" for n in range(20))
        assert threads and all(not name.startswith("job-") for name in threads), "sent from the network thread"
    finally:
        bus.stop()
        watcher.close()
