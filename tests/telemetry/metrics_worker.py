"""One worker of a multiprocess server, for ``test_metrics``; run it with
PROMETHEUS_MULTIPROC_DIR set.

``metrics_worker.py REQUESTS SIZE PENDING DROPPED [scrape]``: record REQUESTS predictions of
iris v1, hold a loaded version of SIZE bytes (none if 0) and PENDING writes, drop DROPPED of
them, then exit; with ``scrape``, print what a scrape of the server shows first.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from model_manager.telemetry import Metrics

BUDGET = 1000
FREE, TOTAL = 30, 90


@dataclass
class Writer:
    pending: int
    writes_dropped: int = 0

    def pending_count(self) -> int:
        return self.pending


@dataclass
class Space:
    free: int = FREE
    total: int = TOTAL


def main(requests: int, size: int, pending: int, dropped: int, scrape: bool) -> None:
    metrics = Metrics()
    writer = Writer(pending)
    metrics.watch_cache(lambda: size, lambda: 1 if size else 0, BUDGET)
    metrics.watch_registry(lambda: 1.0, lambda: 0.0, {"usage": writer})
    metrics.watch_disks(lambda: {"data_dir": Space()})
    for _ in range(requests):
        metrics.on_request(("iris", 1), "ok", 0.01, 0.005)
    if size:
        metrics.on_load(("iris", 1), size, 0.1)
    writer.writes_dropped = dropped // 2
    metrics.publish()
    writer.writes_dropped = dropped  # counted once, however often published
    metrics.publish()
    if scrape:
        sys.stdout.write(metrics.render().decode())


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:5]), scrape=sys.argv[5:] == ["scrape"])
