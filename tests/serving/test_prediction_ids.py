"""Prediction ids: random 128-bit hex strings, drawn from the OS in blocks, never repeated."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from model_manager.serving.router import RandomIds


def test_ids_are_distinct_128_bit_hex_across_several_draws_from_the_os() -> None:
    ids = RandomIds()
    taken = [ids.take() for _ in range(1000)]  # about four blocks of 256

    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in taken)
    assert len(set(taken)) == len(taken)


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    # In a fresh interpreter: forking this one, which may hold other libraries' threads, is unsafe.
    script = textwrap.dedent("""
        import os
        from model_manager.serving.router import RandomIds

        ids = RandomIds()
        ids.take()  # the parent now holds a block of ids not yet handed out
        read, write = os.pipe()
        if os.fork() == 0:
            os.write(write, " ".join(ids.take() for _ in range(10)).encode())
            os._exit(0)
        os.close(write)
        child = os.fdopen(read).read()
        os.wait()
        print(child)
        print(" ".join(ids.take() for _ in range(300)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    childs, parents = set(out[0].split()), set(out[1].split())

    assert len(childs) == 10 and len(parents) == 300
    assert not childs & parents
