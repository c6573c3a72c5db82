"""Timing helper shared by the benchmark scripts (imported from their own folder)."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, n: int, warmup: bool = False) -> float:
    """Median wall time of ``n`` calls of ``fn`` in milliseconds (one untimed call first with
    ``warmup``)."""
    if warmup:
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3
