"""From a notebook's parameters cell to a frozen configuration dataclass."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from .errors import ConfigError

__all__ = ["config_from_params"]


def _freeze(value: Any) -> Any:
    """Lists (papermill/YAML give lists) become tuples, recursively, so configs are hashable."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def config_from_params(cls, params: dict):
    """``cls(**params)`` with lists frozen to tuples; unknown keys are refused by name."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(known)}")
    return cls(**{k: _freeze(v) for k, v in params.items()})


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
