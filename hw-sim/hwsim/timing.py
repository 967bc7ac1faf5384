"""Waiting for a condition, and percentiles of what was timed: shared by the simulated venue,
the reliability harnesses and ``scripts/bench``."""

from __future__ import annotations

import time
from typing import Callable


def wait(predicate: Callable[[], object], what: str, timeout: float = 30.0, step: float = 0.05) -> None:
    """Until ``predicate()`` is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting: {what}")
        time.sleep(step)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``th percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
