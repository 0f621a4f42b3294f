"""Memory-hard hashing runs in a bounded number of slots; past a short queue the caller
hears at once that the site is busy."""

from __future__ import annotations

import os
import threading

import pytest

from tests.conftest import FAST_SCRYPT
from tests.helpers import slots_taken
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.errors import HashingBusy
from tipbox.hashing_slots import HASHING_NICENESS, UNLIMITED, HashingSlots


def test_a_free_slot_is_taken_at_once() -> None:
    slots = HashingSlots(slots=2, queue=0, wait_seconds=0)
    with slots_taken(slots, 1), slots.slot():
        pass


def test_with_every_slot_taken_and_no_queue_the_caller_hears_busy_at_once() -> None:
    slots = HashingSlots(slots=2, queue=0, wait_seconds=5)
    with slots_taken(slots, 2), pytest.raises(HashingBusy) as caught:
        take_one(slots)
    assert caught.value.retry_after == 60
    assert "busy" in str(caught.value)


def take_one(slots: HashingSlots) -> None:
    with slots.slot():
        pass


def wait_in_queue(slots: HashingSlots, outcome: list[str]) -> threading.Thread:
    """A caller that queues for a slot; returns once it is really waiting."""
    def run() -> None:
        try:
            take_one(slots)
            outcome.append("got a slot")
        except HashingBusy:
            outcome.append("busy")

    thread = threading.Thread(target=run)
    before = slots.waiting
    thread.start()
    for _ in range(500):
        if slots.waiting > before:
            break
        threading.Event().wait(0.01)
    assert slots.waiting > before
    return thread


def test_a_waiting_caller_gets_the_slot_when_it_frees_up() -> None:
    slots = HashingSlots(slots=1, queue=1, wait_seconds=10)
    outcome: list[str] = []
    with slots_taken(slots, 1):
        waiter = wait_in_queue(slots, outcome)
    waiter.join(10)
    assert outcome == ["got a slot"]


def test_a_caller_that_waited_too_long_hears_busy() -> None:
    slots = HashingSlots(slots=1, queue=4, wait_seconds=0.2)
    with slots_taken(slots, 1), pytest.raises(HashingBusy):
        take_one(slots)


def test_the_queue_is_bounded() -> None:
    slots = HashingSlots(slots=1, queue=1, wait_seconds=10)
    outcome: list[str] = []
    with slots_taken(slots, 1):
        waiter = wait_in_queue(slots, outcome)
        with pytest.raises(HashingBusy):  # the second waiter finds the queue full
            take_one(slots)
    waiter.join(10)
    assert outcome == ["got a slot"]


def test_codename_hashes_and_reply_keys_use_the_slots() -> None:
    slots = HashingSlots(slots=1, queue=0, wait_seconds=0)
    hasher = CodenameHasher(b"p" * 32, FAST_SCRYPT, slots)
    deriver = ReplyKeyDeriver(b"p" * 32, FAST_SCRYPT, slots)
    codename = generate_codename()
    assert hasher.hash(codename) == CodenameHasher(b"p" * 32, FAST_SCRYPT).hash(codename)
    with slots_taken(slots, 1):
        with pytest.raises(HashingBusy):
            hasher.hash(codename)
        with pytest.raises(HashingBusy):
            deriver.derive(codename)
    assert deriver.derive(codename).public_bytes  # free again afterwards


def test_slots_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="slots must be at least 1"):
        HashingSlots(slots=0, queue=1, wait_seconds=1)


def priority_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_hash_runs_in_a_thread_at_the_lowest_priority_and_hands_back_its_result() -> None:
    slots = HashingSlots(slots=1, queue=0, wait_seconds=0)
    caller_priority = priority_of_this_thread()
    ran_in: list[int] = []

    def work(a: int, b: int) -> int:
        ran_in.append(threading.get_native_id())
        return priority_of_this_thread() * 1000 + a + b

    assert slots.compute(work, 1, 2) == HASHING_NICENESS * 1000 + 3
    assert ran_in != [threading.get_native_id()]
    # Nice is per thread on Linux: the serving thread that asked keeps its priority.
    assert priority_of_this_thread() == caller_priority


def test_a_failing_hash_raises_in_the_caller_and_frees_its_slot() -> None:
    slots = HashingSlots(slots=1, queue=0, wait_seconds=0)

    def fail() -> None:
        raise ValueError("bad hash")

    with pytest.raises(ValueError, match="bad hash"):
        slots.compute(fail)
    assert slots.compute(lambda: "again") == "again"


def test_tools_without_a_bound_hash_in_their_own_thread() -> None:
    assert UNLIMITED.compute(threading.get_native_id) == threading.get_native_id()

