"""The Pareto front of (cost, quality) points: e.g. measured latency (lower is better) against accuracy
(higher is better). A pure function, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, in increasing cost.

    A point ``(cost, quality)`` is dominated when another one has ``cost <=`` and ``quality >=`` with at
    least one strict. Equal points do not dominate each other (both stay on the front). Points with a
    missing (None or NaN) coordinate are never on the front.
    """
    valid = [i for i, (x, y) in enumerate(points)
             if x is not None and y is not None and not (math.isnan(x) or math.isnan(y))]
    # by cost, then best quality first: a point is on the front iff its quality beats every cheaper one's
    order = sorted(valid, key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    last: tuple[float, float] | None = None
    for i in order:
        x, y = points[i]
        if y > best:
            front.append(i)
            best = y
            last = (x, y)
        elif last is not None and (x, y) == last:  # an equal twin of the last front point
            front.append(i)
    return front
