"""The work queue, on a clock the test moves: de-duplication, one look per key at a time,
delayed adds (the earliest wish wins), per-key exponential backoff, and shutdown."""

from __future__ import annotations

import threading

import pytest

from imagepuller.workqueue import WorkQueue
from tests.fakes import Clock


@pytest.fixture
def clock():
    return Clock(100.0)


@pytest.fixture
def queue(clock):
    return WorkQueue(clock, base_delay=1.0, max_delay=60.0)


def drain(queue):
    """Every key due now, in order, each marked done."""
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def test_a_key_added_many_times_is_looked_at_once_in_order(queue):
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert drain(queue) == ["a", "b", "c"]
    assert queue.get(timeout=0) is None


def test_a_key_added_while_being_looked_at_comes_back_once_after_done(queue):
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(timeout=0) is None  # never two looks at one key at once
    queue.done("a")
    assert drain(queue) == ["a"]


def test_a_delayed_key_is_due_at_its_time_and_the_earliest_wish_wins(queue, clock):
    queue.add_after("a", 10)
    queue.add_after("a", 30)  # later: the earlier wish stands
    queue.add_after("b", 20)
    queue.add_after("b", 5)  # earlier: replaces the wish for 20
    clock.now += 4.9
    assert drain(queue) == []
    clock.now += 0.1
    assert drain(queue) == ["b"]
    clock.now += 5
    assert drain(queue) == ["a"]
    clock.now += 100
    assert drain(queue) == []  # the superseded wishes do not come back


def test_adding_a_delayed_key_now_takes_it_now_and_only_once(queue, clock):
    queue.add_after("a", 10)
    queue.add("a")
    assert drain(queue) == ["a"]
    clock.now += 10
    assert drain(queue) == []


def test_failures_back_off_exponentially_per_key_up_to_the_bound_and_forget_resets(queue, clock):
    delays = [queue.add_rate_limited("a") for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert queue.add_rate_limited("b") == 1  # per key
    assert queue.failures("a") == 8
    queue.forget("a")
    assert queue.failures("a") == 0
    clock.now += 1
    assert sorted(drain(queue)) == ["a", "b"]  # the earliest retry of each
    assert queue.add_rate_limited("a") == 1


def test_shutdown_wakes_a_waiting_worker_and_refuses_new_keys(queue):
    got = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]
    queue.add("a")
    queue.add_after("b", 1)
    assert queue.get(timeout=0) is None and len(queue) == 0


def test_a_waiting_worker_wakes_for_a_key_added_from_another_thread(queue):
    got = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=10)))
    worker.start()
    queue.add("a")
    worker.join(timeout=10)
    assert got == ["a"]


def test_len_counts_keys_waiting_now_and_later(queue):
    queue.add("a")
    queue.add_after("b", 5)
    assert len(queue) == 2


def test_a_get_passes_the_time_to_a_delayed_key_through_the_pause_it_was_given(clock):
    pauses: list[float | None] = []

    def pause(changed, timeout):  # the time passes on the test's clock, at once
        pauses.append(timeout)
        clock.now += timeout

    queue = WorkQueue(clock, base_delay=2.0, max_delay=60.0, pause=pause)
    queue.add_rate_limited("k")
    queue.add_after("other", 30.0)
    assert queue.get() == "k"
    assert pauses == [2.0] and clock.now == 102.0
    queue.done("k")
    assert queue.get() == "other"
    assert pauses == [2.0, 28.0]
