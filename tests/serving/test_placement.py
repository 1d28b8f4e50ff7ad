"""Where a version's predictions run: waiting for the interpreter never passes for the model's
cost, in either direction, and a model that sleeps is never taken for a cheap one."""

from __future__ import annotations

from model_manager.serving.placement import INLINE_BELOW, WAIT_BOUND, Placement

FAST = 30e-6
HELD_UP = 5e-3
"""A fast prediction held up for a switch interval while another thread had the interpreter."""


def test_a_new_version_starts_in_a_thread_and_comes_to_the_loop_once_a_run_is_fast() -> None:
    placement = Placement()
    assert not placement.inline
    placement.ran_in_thread(FAST)
    assert placement.inline


def test_a_fast_version_held_up_now_and_then_stays_on_the_loop() -> None:
    placement = Placement()
    placement.ran_in_thread(FAST)
    for i in range(200):
        placement.ran_inline(HELD_UP if i % 5 == 0 else FAST)
        assert placement.inline, f"moved off the loop at run {i}"


def test_a_fast_version_waiting_in_threads_comes_back_to_the_loop() -> None:
    """In threads under load most runs wait for the interpreter; one that did not is enough."""
    placement = Placement()
    for seconds in (HELD_UP, 2e-3, 3e-3, 1e-3, HELD_UP, FAST):
        assert not placement.inline
        placement.ran_in_thread(seconds)
    assert placement.inline


def test_a_slow_version_leaves_the_loop_after_a_few_runs() -> None:
    placement = Placement()
    placement.ran_in_thread(FAST)  # its first run happened to be fast
    runs = 0
    while placement.inline:
        placement.ran_inline(1e-3)
        runs += 1
    assert runs == 3


def test_a_run_past_the_wait_bound_leaves_the_loop_at_once() -> None:
    placement = Placement()
    placement.ran_in_thread(FAST)
    placement.ran_inline(FAST)
    placement.ran_inline(WAIT_BOUND)
    assert not placement.inline


def test_a_model_that_sleeps_never_comes_to_the_loop() -> None:
    placement = Placement()
    for _ in range(100):
        placement.ran_in_thread(2 * INLINE_BELOW)  # its CPU time would be near nothing
    assert not placement.inline


def test_after_leaving_the_loop_only_a_fast_thread_run_brings_it_back() -> None:
    placement = Placement()
    placement.ran_in_thread(FAST)
    placement.ran_inline(WAIT_BOUND)
    for _ in range(20):
        placement.ran_in_thread(1e-3)
    assert not placement.inline  # the fast run before it left no longer counts
    placement.ran_in_thread(FAST)
    assert placement.inline
