"""Checks of user-given numbers, shared by the configuration classes.

A number may arrive as a Python number, a numpy scalar (``np.float32(0.5)``, ``np.int64(8)``)
or a 0-dim tensor without gradient (``torch.tensor(0.5)``); all three mean the same value and
are turned into a Python ``int``/``float`` here, so that range checks and messages see the
value itself. Everything else (a string, a bool where a count is meant, NaN) is refused with a
message that names the argument, the value and what to pass instead.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["plain_number", "as_int", "as_real"]


def plain_number(value: Any) -> Any:
    """``value`` as a Python scalar when it is a numpy scalar / 0-dim array or a 0-dim tensor
    that needs no gradient; anything else is returned unchanged."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad:
        return value.item()
    return value


def as_int(name: str, value: Any, minimum: int | None = None, hint: str = "") -> int:
    """``value`` as a Python int (``minimum <= value``), or a :class:`ConfigError` naming it."""
    v = plain_number(value)
    try:
        if isinstance(v, bool):
            raise TypeError
        v = operator.index(v)
    except TypeError:
        raise ConfigError(f"{name} must be an integer{_bound(minimum)}, got {v!r} "
                          f"({type(value).__name__}){hint}") from None
    if minimum is not None and v < minimum:
        raise ConfigError(f"{name} must be an integer{_bound(minimum)}, got {v!r}{hint}")
    return v


def _bound(minimum):
    return "" if minimum is None else f" >= {minimum}"


def as_real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """``value`` as a finite Python float in the given interval, or a :class:`ConfigError`."""
    lo = f"{'(' if low_open else '['}{low:g}"
    hi = f"{high:g}{')' if high_open else ']'}"
    where = (f"a finite number > {low:g}" if low_open and high == math.inf
             else f"a finite number >= {low:g}" if high == math.inf and low != -math.inf
             else "a finite number" if (low, high) == (-math.inf, math.inf)
             else f"a number in {lo}, {hi}")
    v = plain_number(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(f"{name} must be {where}, got {v!r} ({type(value).__name__}){hint}")
    v = float(v)
    bad = (not math.isfinite(v) or v < low or v > high or (low_open and v == low)
           or (high_open and v == high))
    if bad:
        raise ConfigError(f"{name} must be {where}, got {v!r}{hint}")
    return v
