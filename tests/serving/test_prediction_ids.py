"""Prediction ids: random 128-bit hex strings, drawn from the OS in blocks, never repeated."""

from __future__ import annotations

import os
import re

from model_manager.serving.router import RandomIds


def test_ids_are_distinct_128_bit_hex_across_several_draws_from_the_os() -> None:
    ids = RandomIds()
    taken = [ids.take() for _ in range(1000)]  # about four blocks of 256

    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in taken)
    assert len(set(taken)) == len(taken)


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    ids = RandomIds()
    ids.take()  # the parent now holds a block of ids not yet handed out
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, " ".join(ids.take() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        childs = set(pipe.read().split())
    os.waitpid(child, 0)

    parents = {ids.take() for _ in range(300)}
    assert len(childs) == 10
    assert not childs & parents
