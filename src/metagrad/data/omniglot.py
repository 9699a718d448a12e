"""Omniglot, read straight from the published zips (no extraction).

Characters are named ``"Alphabet/characterXX"``; every character has 20 drawings (one per
drawer). Images (105×105, black strokes on white) are inverted so that ink is 1 and background 0,
then resized to ``size``×``size`` with PIL's antialiasing Lanczos filter.

Zips looked up in ``<root>/omniglot/`` (``which=``):

* ``"small"`` (default): ``images_background_small1.zip`` + ``images_background_small2.zip``.
  Both contain Greek and Latin (the same files); duplicates are dropped, leaving 242 characters
  from 8 alphabets. Always present in the project's shared data, so it is the reproducible
  default.
* ``"background"``: ``images_background.zip`` (964 characters, 30 alphabets).
* ``"evaluation"``: ``images_evaluation.zip`` (659 characters, 20 alphabets).
* ``"all"``: background + evaluation (1 623 characters).
* ``"available"``: every one of the four image zips present (deduplicated by name).
* or a sequence of zip file names.

Characters are sorted by name, so the class index of a character depends only on which
characters are loaded, not on the order of zips. Use :func:`split_classes` for meta-train/test
class splits and :func:`sample_task` for N-way K-shot episodes.

The official 20-way one-shot runs (``all_runs.zip``) are read by :func:`load_oneshot_runs`.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .._validate import as_int
from ..errors import ConfigError
from .episodes import Task, sample_task
from .paths import DataCorruptError, find_file, resolve_root
from .splits import split_classes

__all__ = ["load_omniglot", "load_oneshot_runs", "OmniglotData", "OneShotRun", "OMNIGLOT_SETS",
           "split_classes", "sample_task", "Task"]

#: ``which=`` → zip files, in priority order (the first zip holding a character wins).
OMNIGLOT_SETS = {
    "small": ("images_background_small1.zip", "images_background_small2.zip"),
    "background": ("images_background.zip",),
    "evaluation": ("images_evaluation.zip",),
    "all": ("images_background.zip", "images_evaluation.zip"),
}
_ALL_IMAGE_ZIPS = ("images_background.zip", "images_background_small1.zip",
                   "images_background_small2.zip", "images_evaluation.zip")
DRAWERS = 20


class OmniglotData(NamedTuple):
    """``images``: C×20×1×size×size floats in [0, 1], ink = 1; ``names``: C names
    ``"Alphabet/characterXX"`` (index = class id)."""

    images: torch.Tensor
    names: list[str]


class OneShotRun(NamedTuple):
    """One official 20-way one-shot run: ``support`` (20×1×H×W, the training image of class i at
    index i), ``query`` (20×1×H×W, the test images in file order) and ``query_labels`` (int64,
    the support index each query belongs to)."""

    support: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor


def _decode(data: bytes, size: int) -> np.ndarray:
    """PNG bytes → uint8 size×size array with ink = 255 (inverted), antialiased resize."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        gray = im.convert("L")
    inverted = Image.fromarray(255 - np.asarray(gray, dtype=np.uint8))
    if inverted.size != (size, size):
        inverted = inverted.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(inverted, dtype=np.uint8)


def _characters(zf: zipfile.ZipFile) -> dict[str, list[str]]:
    """``"Alphabet/characterXX"`` → sorted PNG member names, for one Omniglot zip."""
    chars: dict[str, list[str]] = {}
    for member in zf.namelist():
        parts = member.split("/")
        if not member.endswith(".png") or len(parts) < 3 or "__MACOSX" in parts:
            continue
        chars.setdefault(f"{parts[-3]}/{parts[-2]}", []).append(member)
    return {k: sorted(v) for k, v in chars.items()}


@contextlib.contextmanager
def _reading(path: Path):
    """Turn a broken zip / PNG (or a missing member) into a DataCorruptError naming the zip."""
    try:
        yield
    except DataCorruptError:
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError) as exc:
        raise DataCorruptError(path, f"{type(exc).__name__}: {exc}", "omniglot") from None


@functools.lru_cache(maxsize=8)
def _load_zips(paths: tuple[Path, ...], size: int, _stamp: tuple) -> tuple[np.ndarray, tuple]:
    """uint8 array C×20×size×size and names for a tuple of zips (cached per process; ``_stamp``
    holds the files' sizes and mtimes so that a changed file is reread)."""
    owner: dict[str, tuple[Path, list[str]]] = {}
    for path in paths:
        with _reading(path), zipfile.ZipFile(path) as zf:
            for name, members in _characters(zf).items():
                owner.setdefault(name, (path, members))  # first zip wins: de-duplication
    names = sorted(owner)
    out = np.empty((len(names), DRAWERS, size, size), dtype=np.uint8)
    by_zip: dict[Path, list[tuple[int, list[str]]]] = {}
    for c, name in enumerate(names):
        path, members = owner[name]
        if len(members) != DRAWERS:
            raise DataCorruptError(path, f"character {name} has {len(members)} drawings, not "
                                         f"{DRAWERS}", "omniglot")
        by_zip.setdefault(path, []).append((c, members))
    for path, entries in by_zip.items():
        with _reading(path), zipfile.ZipFile(path) as zf:
            for c, members in entries:
                for d, member in enumerate(members):
                    out[c, d] = _decode(zf.read(member), size)
    out.setflags(write=False)
    return out, tuple(names)


def _zip_names(which: str | Sequence[str], directory: Path) -> tuple[str, ...]:
    if isinstance(which, str):
        if which == "available":
            found = tuple(z for z in _ALL_IMAGE_ZIPS if (directory / z).is_file())
            return found or OMNIGLOT_SETS["small"]  # nothing there: report the default's files
        if which not in OMNIGLOT_SETS:
            raise ConfigError(f"load_omniglot: which={which!r}; pass one of "
                              f"{', '.join([*OMNIGLOT_SETS, 'available'])} or a list of zip names")
        return OMNIGLOT_SETS[which]
    return tuple(which)


def load_omniglot(which: str | Sequence[str] = "small", root: str | os.PathLike | None = None, *,
                  size: int = 28, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> OmniglotData:
    """Load Omniglot characters: ``(images C×20×1×size×size in [0, 1], ink = 1; names)``.

    See the module docstring for ``which``. Decoded images are cached in memory per process
    (keyed on the files, their mtimes and ``size``), so repeated calls are cheap. A missing zip
    raises :class:`~metagrad.data.paths.DataNotFoundError` with the fetch command.
    """
    base = resolve_root(root)[0]
    zips = _zip_names(which, base / "omniglot")
    paths = tuple(find_file(root, "omniglot", z, dataset="omniglot").resolve() for z in zips)
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    arr, names = _load_zips(paths, as_int("load_omniglot: size", size, 1, " (pixels per side)"), stamp)
    images = torch.from_numpy(arr.copy()).unsqueeze(2).to(device=device, dtype=dtype).div_(255.0)
    return OmniglotData(images, list(names))


_LABEL_LINE = re.compile(r"^\s*(\S+/test/item(\d+)\.png)\s+(\S+/training/class(\d+)\.png)\s*$")


def load_oneshot_runs(root: str | os.PathLike | None = None, *, size: int = 28,
                      device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> list[OneShotRun]:
    """The 20 official Omniglot 20-way one-shot runs from ``<root>/omniglot/all_runs.zip``.

    Per run: ``support`` = ``training/class01..20.png`` (label i for ``class{i+1:02d}``),
    ``query`` = ``test/item01..20.png``, and ``query_labels`` read from ``class_labels.txt``
    (which maps each test image to the training image of its class). Images are processed as in
    :func:`load_omniglot` (inverted, ink = 1, Lanczos resize to ``size``). Accuracy of a method is
    the mean over the 20 runs of ``(predicted == query_labels).float().mean()``.
    """
    path = find_file(root, "omniglot", "all_runs.zip", dataset="omniglot")
    runs = []
    with _reading(path), zipfile.ZipFile(path) as zf:
        run_dirs = sorted({m.split("/")[0] for m in zf.namelist() if m.startswith("run")})
        for run in run_dirs:
            support = np.stack([_decode(zf.read(f"{run}/training/class{i:02d}.png"), size)
                                for i in range(1, 21)])
            query = np.stack([_decode(zf.read(f"{run}/test/item{i:02d}.png"), size)
                              for i in range(1, 21)])
            labels = np.full(20, -1, dtype=np.int64)
            for line in zf.read(f"{run}/class_labels.txt").decode().splitlines():
                if not line.strip():
                    continue
                m = _LABEL_LINE.match(line)
                if m is None:
                    raise DataCorruptError(path, f"cannot parse line {line!r} of "
                                                 f"{run}/class_labels.txt", "omniglot")
                item, cls = int(m.group(2)), int(m.group(4))
                if not (1 <= item <= 20 and 1 <= cls <= 20):
                    raise DataCorruptError(path, f"{run}/class_labels.txt line {line.strip()!r} "
                                                 f"names item {item} / class {cls} outside 1..20",
                                           "omniglot")
                labels[item - 1] = cls - 1
            if (labels < 0).any():
                raise DataCorruptError(path, f"{run}/class_labels.txt does not label every test "
                                             f"image", "omniglot")

            def to_tensor(a: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(a).unsqueeze(1).to(device=device, dtype=dtype).div_(255.0)

            runs.append(OneShotRun(to_tensor(support), to_tensor(query),
                                   torch.from_numpy(labels).to(device)))
    return runs
