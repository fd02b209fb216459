from __future__ import annotations

import uuid

from infinitic.common import command_id, deterministic_id, new_id


def test_new_ids_are_unique_uuids_sorted_by_creation() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:100])


def test_command_ids_are_deterministic() -> None:
    assert command_id("wf", "run", 3) == command_id("wf", "run", 3)
    assert len({command_id("wf", "run", p) for p in range(1000)}) == 1000
    assert command_id("wf", "run", 0) != command_id("wf2", "run", 0)
    assert command_id("wf", "a", 0) != command_id("wf", "b", 0)
    uuid.UUID(deterministic_id("x", 1))


def test_command_ids_never_change() -> None:
    """Stored histories hold these ids and replays compute them again: a change of the
    derivation would make every stored workflow fail its replay."""
    assert deterministic_id("command", "wf-1", "run-1", 3) == "86d7b93b-9092-8306-939d-8c50bd602325"
    assert command_id("a", "b", 0) == "0f92ebe5-f439-87d9-0f65-803571e38576"


def test_a_forked_child_never_repeats_its_parents_random_bits() -> None:
    import os

    new_id()  # the parent's pool of random bytes is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: same clock and counter state, its own random bytes
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    parent = new_id()
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child[-12:] != parent[-12:]
    assert child != parent
