"""Memory-hard hashing runs in a bounded number of slots; past a short queue the caller
hears at once that the site is busy."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import FAST_SCRYPT
from tests.helpers import slots_taken
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.errors import HashingBusy
from tipbox.hashing_slots import HashingSlots


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
