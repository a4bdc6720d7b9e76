"""Small timing helpers shared by the cases."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Awaitable, Callable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (garbage collected first, so runs start alike)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def atimed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds one await of ``fn()`` takes (garbage collected first)."""
    gc.collect()
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start
