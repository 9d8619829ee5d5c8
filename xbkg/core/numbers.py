"""The one check of option values that must be numbers, shared by the option objects of
every layer (build, cross-validation, simulator)."""

from __future__ import annotations

import math

__all__ = ["is_number"]


def is_number(value, low: float = -math.inf, high: float = math.inf, *,
              inclusive: bool = False) -> bool:
    """``value`` converts to a finite float ``x`` with ``low < x < high`` (``low <= x`` with
    ``inclusive``); NaN, infinities and what is not a number are not.

    >>> is_number("2.5", 0), is_number(0, 0), is_number(0, 0, inclusive=True), is_number("x")
    (True, False, True, False)
    >>> is_number(float("nan")), is_number(float("inf"), 0), is_number(90, 0, 90)
    (False, False, False)
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and (low <= x if inclusive else low < x) and x < high
