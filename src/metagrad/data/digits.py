"""scikit-learn's bundled 8×8 digits: 1 797 images, always available (no folder, no network).

The embedded default data set: tests, examples and the ``smoke`` scale of the book use it where
MNIST would be too large or absent. ``size=28`` upsamples bilinearly so that models built for
MNIST's 1×28×28 input run on it unchanged.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["load_digits"]


def load_digits(*, size: int = 8, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)``: images ``N×1×size×size`` in [0, 1], labels int64 in 0..9.

    The raw pixels (integers 0..16, ink = high) are divided by 16. With ``size != 8`` the images
    are resized with bilinear interpolation (``align_corners=False``, values stay in [0, 1]).
    N = 1 797, in scikit-learn's order.
    """
    from .._validate import as_int
    size = as_int("load_digits: size", size, 1, " (pixels per side; 8 is the native size)")
    from sklearn.datasets import load_digits as _sk_load_digits  # slow import: only when used

    bunch = _sk_load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float64) / 16.0)
    images = images.to(dtype=dtype).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp_(0.0, 1.0)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return images.to(device).contiguous(), labels.to(device)
