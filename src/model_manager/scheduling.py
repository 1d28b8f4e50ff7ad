"""How Linux schedules the server's threads.

The threads the server starts before it serves (gRPC's, the worker threads of its start-up)
and the model processes (which put themselves under it) run under ``SCHED_BATCH``: one that wakes
(gRPC's poller when a call arrives) then waits for the running thread to block or use up its
slice rather than preempting it, and each request pays fewer thread switches: a gRPC call
passes through three threads (about 15% more gRPC calls a second on one core). The event loop's
own thread returns to the normal policy once the server has started: a request that arrives
must wake it at once, and under the batch policy it too would wait for whatever holds its core,
which made one request in a thousand over REST wait two to three times longer. Threads it
starts later (worker threads started on demand) inherit the normal policy.

Where the policy is missing or refused, the server runs as it is.
"""

from __future__ import annotations

import contextlib
import os


def batch_all_threads() -> None:
    """Put every thread of the process under ``SCHED_BATCH``: those started so far (a BLAS pool
    at numpy's import), and through them the threads and processes started later, which
    inherit it."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    tasks = "/proc/self/task"
    for thread in os.listdir(tasks) if os.path.isdir(tasks) else ["0"]:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(int(thread), policy, os.sched_param(0))


def wake_promptly() -> None:
    """Return the calling thread (the event loop's, once its helpers have started and
    inherited the batch policy) to the normal one, so that a request wakes it at once."""
    if getattr(os, "SCHED_BATCH", None) is None:
        return
    with contextlib.suppress(OSError):
        if os.sched_getscheduler(0) == os.SCHED_BATCH:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
