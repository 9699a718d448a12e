"""CIFAR-10 and CIFAR-100 from their *binary* distributions (never the Python-pickle one).

Files are looked up under the data root as published by ``metagrad fetch cifar10`` /
``metagrad fetch cifar100``:

* ``<root>/cifar-10/cifar-10-binary.tar.gz`` (members ``cifar-10-batches-bin/data_batch_1.bin``
  … ``data_batch_5.bin`` = train, ``test_batch.bin`` = test; records of 1 label byte + 3 072
  pixel bytes), read straight from the archive, or, when no archive is there, the extracted
  folder ``<root>/cifar-10/cifar-10-batches-bin/``;
* ``<root>/cifar-100/cifar-100-binary.tar.gz`` (members ``cifar-100-binary/train.bin``,
  ``test.bin``; records of 2 label bytes, coarse then fine, + 3 072 pixel bytes), or the
  extracted ``<root>/cifar-100/cifar-100-binary/``.

Pixels of a record are the red, then green, then blue 32×32 planes in row-major order, so a record
reshapes directly to 3×32×32. The decoded uint8 arrays are cached in memory per process, keyed on
the files' sizes and modification times (a changed file is reread).
"""
from __future__ import annotations

import functools
import os
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import ConfigError
from .paths import DataCorruptError, DataNotFoundError, ENV_VAR, fetch_command, resolve_root

__all__ = ["load_cifar", "CIFAR_SETS"]

_PIXELS = 3 * 32 * 32


class _Layout(NamedTuple):
    folder: str  # under the data root
    archive: str  # the published file
    inner: str  # its top folder (also the name of the extracted folder)
    splits: dict  # split -> member files, in order
    label_bytes: int  # per record
    classes: dict  # label kind -> number of classes


#: ``name`` (also the ``metagrad fetch`` name) → where the files are and what a record holds.
CIFAR_SETS = {
    "cifar10": _Layout("cifar-10", "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                       {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                        "test": ("test_batch.bin",)},
                       1, {"fine": 10}),
    "cifar100": _Layout("cifar-100", "cifar-100-binary.tar.gz", "cifar-100-binary",
                        {"train": ("train.bin",), "test": ("test.bin",)},
                        2, {"coarse": 20, "fine": 100}),
}


def _decode(raw: bytes, where: Path, member: str, name: str, root: Path) -> np.ndarray:
    """uint8 array N × (label bytes + 3 072) of one ``.bin`` file; checks size and labels."""
    spec = CIFAR_SETS[name]
    width = spec.label_bytes + _PIXELS
    if not raw or len(raw) % width:
        raise DataCorruptError(where, f"{member} has {len(raw)} bytes, not a positive multiple of "
                                      f"the {width}-byte record (truncated?)", name, root=root)
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
    limits = [20, 100] if spec.label_bytes == 2 else [10]
    for col, limit in enumerate(limits):
        bad = np.flatnonzero(records[:, col] >= limit)
        if bad.size:
            raise DataCorruptError(where, f"{member}: record {int(bad[0])} has label "
                                          f"{int(records[bad[0], col])}, outside 0..{limit - 1}",
                                   name, root=root)
    return records


@functools.lru_cache(maxsize=4)
def _read(name: str, split: str, source: Path, root: Path, _stamp: tuple) -> np.ndarray:
    """Records of one split, from the archive ``source`` or the extracted folder ``source``."""
    spec = CIFAR_SETS[name]
    members = spec.splits[split]
    parts = []
    if source.is_dir():
        for member in members:
            path = source / member
            parts.append(_decode(path.read_bytes(), path, member, name, root))
    else:
        found: dict[str, bytes] = {}
        try:
            with tarfile.open(source, "r:gz") as tar:
                for info in tar:  # one pass over the compressed stream
                    base = info.name.rsplit("/", 1)[-1]
                    if info.isfile() and base in members and base not in found:
                        found[base] = tar.extractfile(info).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise DataCorruptError(source, f"the archive cannot be read ({type(exc).__name__}: "
                                           f"{exc})", name, root=root) from None
        for member in members:
            if member not in found:
                raise DataCorruptError(source, f"the archive has no member {spec.inner}/{member}",
                                       name, root=root)
            parts.append(_decode(found[member], source, f"{spec.inner}/{member}", name, root))
    out = np.concatenate(parts) if len(parts) > 1 else parts[0]
    out.setflags(write=False)
    return out


def _source(name: str, split: str, root) -> tuple[Path, Path]:
    """(the archive, or else the extracted folder holding the split's files; the data root)."""
    spec = CIFAR_SETS[name]
    base, how = resolve_root(root)
    folder = base / spec.folder
    archive = folder / spec.archive
    if archive.is_file():
        return archive, base
    extracted = folder / spec.inner
    if all((extracted / m).is_file() for m in spec.splits[split]):
        return extracted, base
    raise DataNotFoundError(
        f"{spec.archive!r} (or the extracted {spec.inner}/ with "
        f"{', '.join(spec.splits[split])}) not found in {folder} (data root {base}, from {how}). "
        f"Fetch it with\n    {fetch_command(name, base)}\n"
        f"or point {ENV_VAR} (or root=) at a folder that has {spec.folder}/{spec.archive}.")


def load_cifar(name: str = "cifar10", split: str = "train",
               root: str | os.PathLike | None = None, *, label: str = "fine",
               device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of a CIFAR-10 or CIFAR-100 split.

    ``name``: ``"cifar10"`` or ``"cifar100"``; ``split``: ``"train"`` (50 000 images) or
    ``"test"`` (10 000), the official splits, in file order. ``label`` (CIFAR-100 only):
    ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses). Images are ``N×3×32×32`` floats
    in [0, 1] (pixel / 255, RGB), labels int64. A missing file raises
    :class:`~metagrad.data.paths.DataNotFoundError` with the ``metagrad fetch`` command; a
    truncated or corrupt one :class:`~metagrad.data.paths.DataCorruptError` naming the file and
    ``metagrad fetch NAME --force``.
    """
    if name not in CIFAR_SETS:
        raise ConfigError(f"load_cifar: name={name!r}; pass one of {', '.join(CIFAR_SETS)}")
    spec = CIFAR_SETS[name]
    if split not in spec.splits:
        raise ConfigError(f"load_cifar: split={split!r}; pass 'train' or 'test'")
    if label not in spec.classes:
        raise ConfigError(f"load_cifar: label={label!r}; {name} has "
                          f"{' or '.join(repr(k) for k in spec.classes)} labels")
    source, base = _source(name, split, root)
    source = source.resolve()
    files = [source] if source.is_file() else [source / m for m in spec.splits[split]]
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    records = _read(name, split, source, base, stamp)
    col = 0 if label == "coarse" or spec.label_bytes == 1 else 1
    images = torch.from_numpy(records[:, spec.label_bytes:].copy()).view(-1, 3, 32, 32)
    images = images.to(device=device, dtype=dtype).div_(255.0)
    labels = torch.from_numpy(records[:, col].astype(np.int64)).to(device)
    return images, labels
