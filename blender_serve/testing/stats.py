"""Latency summaries shared by the benchmarks and the reliability report."""

from __future__ import annotations

from typing import Sequence

__all__ = ["percentile"]


def percentile(xs: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``xs`` (0-100); NaN when empty."""
    ordered = sorted(xs)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
