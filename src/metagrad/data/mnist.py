"""MNIST and Fashion-MNIST from their IDX files (gzip-compressed or raw).

Files are looked up as ``<root>/mnist/`` (``kind="mnist"``) or ``<root>/fashion-mnist/``
(``kind="fashion"``), named as published: ``train-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz`` etc. (or the same names without ``.gz``).

Only the MNIST *test* split (10 000 images) ships with the project's shared data. The book draws
its training, validation and test sets for data hyper-cleaning from it, disjointly, with
:func:`disjoint_split` — see that function.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .paths import DataCorruptError, find_file
from .splits import disjoint_split

__all__ = ["load_mnist", "read_idx", "disjoint_split", "MNIST_KINDS"]

#: ``kind`` → (folder under the data root, name for ``metagrad fetch``).
MNIST_KINDS = {"mnist": "mnist", "fashion": "fashion-mnist", "fashion-mnist": "fashion-mnist"}
_PREFIX = {"train": "train", "test": "t10k"}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not, detected from its content) into a numpy array.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    int32 per dimension; the data follow in C order. A truncated or corrupt file raises
    :class:`~metagrad.data.paths.DataCorruptError` naming it and the fetch command.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:  # truncated stream, bad CRC, garbage
            raise DataCorruptError(path, f"the gzip stream cannot be decompressed "
                                         f"({type(exc).__name__}: {exc})", _dataset(path)) from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _DTYPES:
        raise DataCorruptError(path, f"not an IDX file (header {data[:4].hex() or 'empty'})",
                               _dataset(path))
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = offset + dtype.itemsize * int(np.prod(shape))
    if len(data) != expected:
        raise DataCorruptError(path, f"the IDX header says shape {shape} ({expected} bytes) but the "
                                     f"file has {len(data)} bytes (truncated?)", _dataset(path))
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def _dataset(path) -> str:
    """The ``metagrad fetch`` name for a file under ``<root>/<folder>/``."""
    folder = Path(path).parent.name
    return MNIST_KINDS.get(folder, folder)


def _idx_path(root, folder: str, fetch_name: str, stem: str) -> Path:
    return find_file(root, folder, (f"{stem}.gz", stem), dataset=fetch_name)


def load_mnist(split: str = "test", root: str | os.PathLike | None = None, kind: str = "mnist",
               *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of an MNIST or Fashion-MNIST split.

    ``split`` is ``"test"`` (10 000 images) or ``"train"`` (60 000); ``kind`` is ``"mnist"`` or
    ``"fashion"``. Images are ``N×1×28×28`` floats in [0, 1] (pixel / 255, ink = high), labels
    int64 in 0..9. A missing file raises :class:`~metagrad.data.paths.DataNotFoundError` with the
    ``metagrad fetch`` command that gets it.
    """
    if split not in _PREFIX:
        raise ConfigError(f"load_mnist: split={split!r}; pass 'test' or 'train'")
    if kind not in MNIST_KINDS:
        raise ConfigError(f"load_mnist: kind={kind!r}; pass 'mnist' or 'fashion'")
    folder = MNIST_KINDS[kind]
    prefix = _PREFIX[split]
    x_path = _idx_path(root, folder, folder, f"{prefix}-images-idx3-ubyte")
    y_path = _idx_path(root, folder, folder, f"{prefix}-labels-idx1-ubyte")
    x, y = read_idx(x_path), read_idx(y_path)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise DataCorruptError(x_path, f"expected N x 28 x 28 uint8 images, got {x.shape} {x.dtype}",
                               folder)
    if y.ndim != 1 or len(x) != len(y):
        raise DataCorruptError(y_path, f"labels of shape {y.shape} do not match the {len(x)} images "
                                       f"of {x_path.name}", folder)
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):
        bad = int(np.flatnonzero((y < 0) | (y > 9))[0])
        raise DataCorruptError(y_path, f"label {int(y[bad])} at index {bad} is outside 0..9", folder)
    images = torch.from_numpy(x.copy()).to(device=device, dtype=dtype).div_(255.0).unsqueeze(1)
    labels = torch.from_numpy(y.astype(np.int64)).to(device)
    return images, labels
