"""Outer-loop checkpoints: tensors and plain containers only, read with ``weights_only=True``.

A checkpoint is a ``torch.save`` file of a dict of tensors, numbers, strings, lists and dicts:
the configuration key, α, the outer optimiser's state, the finished steps' records and the
random number generators' states (as tensors). It is read with ``torch.load(weights_only=True)``,
which refuses any other object, so a crafted file cannot run code. It is written atomically
(temporary file, ``fsync``, rename). A checkpoint of another configuration is ignored with a
warning (the run starts fresh and replaces it); an unreadable one raises
:class:`~metagrad.errors.CorruptFileError` naming the file.
"""
from __future__ import annotations

import io
import math
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._tree import same_structure, describe
from .errors import ConfigError, CorruptFileError
from .results import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "FORMAT"]

#: Version of the layout below; older files are treated as another configuration.
FORMAT = 2
_FIELDS = ("format", "key", "alpha", "opt_state", "step", "records", "wall_time_s", "rng")


def rng_state() -> dict:
    """The global torch (CPU and CUDA), numpy and Python RNG states, as tensors and numbers."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                       "gauss": py_gauss}}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto a GPU moved them
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([x.cpu() for x in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with numpy scalars as Python scalars; refuses what ``weights_only`` cannot read."""
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    raise ConfigError(f"cannot checkpoint {where} of type {type(obj).__name__}: a checkpoint holds "
                      f"only tensors, numbers, strings, lists and dicts (e.g. return float(x) "
                      f"from evaluate)")


def save_checkpoint(path: str | Path, **fields: Any) -> None:
    """Write a checkpoint with ``fields`` (see :data:`_FIELDS`) atomically."""
    buf = io.BytesIO()
    torch.save(_plain({"format": FORMAT, **fields}, "checkpoint"), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, key: str, alpha0: Any, steps: int) -> dict | None:
    """The checkpoint at ``path`` if it belongs to configuration ``key``; ``None`` if there is
    none or it belongs to another configuration (a warning says so: the run starts fresh)."""
    path = Path(path)
    if not path.exists():
        return None
    fix = "delete it and rerun (the run then starts from step 0)"
    if path.is_dir():
        raise CorruptFileError(path, "checkpoint", "is a folder", "pass a file path as checkpoint=")
    if path.stat().st_size == 0:
        raise CorruptFileError(path, "checkpoint", "is empty (an interrupted write?)", fix)
    device = next(iter(x.device for x in _leaves(alpha0)), torch.device("cpu"))
    try:
        saved = torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported" in str(exc):
            raise CorruptFileError(path, "checkpoint", "holds objects other than tensors and plain "
                                   "containers (not written by metagrad, possibly crafted); it was "
                                   "not loaded and nothing in it was run", fix) from None
        raise CorruptFileError(path, "checkpoint", f"is corrupt ({exc})", fix) from None
    except Exception as exc:  # truncated zip, garbage bytes, ...: torch raises many kinds
        raise CorruptFileError(path, "checkpoint", f"is truncated or corrupt ({type(exc).__name__}: "
                               f"{str(exc)[:200]})", fix) from None
    if not isinstance(saved, dict) or "key" not in saved:
        raise CorruptFileError(path, "checkpoint", "is not a metagrad outer-loop checkpoint", fix)
    if saved.get("format") != FORMAT or saved["key"] != key:
        warnings.warn(f"checkpoint {path} belongs to another configuration or format (key "
                      f"{saved['key']!r}, this run's is {key!r}); starting fresh, it will be "
                      f"replaced", stacklevel=3)
        return None
    ok = (set(_FIELDS) <= set(saved) and isinstance(saved["step"], int)
          and 0 <= saved["step"] <= steps and isinstance(saved["records"], list)
          and len(saved["records"]) == saved["step"] and same_structure(saved["alpha"], alpha0)
          and isinstance(saved["wall_time_s"], float) and math.isfinite(saved["wall_time_s"]))
    if not ok:
        got = describe(saved.get("alpha")) if "alpha" in saved else "no alpha"
        raise CorruptFileError(path, "checkpoint", f"is inconsistent (step {saved.get('step')!r} of "
                               f"{steps}, alpha {got}, expected {describe(alpha0)})", fix)
    return saved


def _leaves(tree):
    from ._tree import tree_leaves
    return [x for x in tree_leaves(tree) if isinstance(x, torch.Tensor)]
