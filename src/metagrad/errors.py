"""Exceptions that name the culprit and the fix. Errors are part of the interface."""
from __future__ import annotations

__all__ = ["MetagradError", "ConfigError", "InnerDivergenceError", "MemoryBudgetError",
           "CorruptFileError", "check"]


class MetagradError(Exception):
    """Base class of every error metagrad raises on purpose."""


class ConfigError(MetagradError, ValueError):
    """A bad option or bad input: the message names it and says what to pass instead."""


class InnerDivergenceError(MetagradError, FloatingPointError):
    """The inner loss became NaN/Inf during the unrolled run."""

    def __init__(self, step: int, value: float, lr: float | None = None):
        self.step, self.value, self.lr = step, value, lr
        hint = (f"try a smaller inner learning rate (e.g. lr={lr / 10:g} instead of {lr:g})"
                if lr is not None else "try a smaller inner learning rate")
        super().__init__(
            f"the inner loss became {value} at inner step {step} (0-based): the inner optimisation "
            f"diverged; {hint}, a shorter horizon T, or check the data for NaN/Inf.")


class MemoryBudgetError(MetagradError, MemoryError):
    """A request whose memory need exceeds what the device has."""


class CorruptFileError(MetagradError, ValueError):
    """A result file or checkpoint that cannot be read (truncated, empty, garbage, crafted).
    The message names the file and what to do (delete it and rerun)."""

    def __init__(self, path, what: str, problem: str, fix: str):
        self.path = path
        super().__init__(f"{what} {path} {problem}; {fix}")


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
