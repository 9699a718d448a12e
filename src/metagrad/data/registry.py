"""The files metagrad knows how to fetch: canonical addresses, published checksums, verification.

Each :class:`Resource` is one file, stored at ``<root>/<folder>/<filename>``. Checksums are of the
file itself, except for MNIST and Fashion-MNIST, whose checksum is the md5 of the *decompressed*
IDX bytes: publishers have recompressed these ``.gz`` files over the years (the copies in the
project's shared data folder are such recompressions) while the content stayed the same.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from .paths import ChecksumError

__all__ = ["Resource", "RESOURCES", "DATASETS", "NOT_IN_ALL", "resources_for", "file_digest", "verify_file"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    ``urls`` are tried in order. ``algorithm``/``digest`` is the published checksum; when
    ``decompressed`` is true it is the checksum of the gunzipped content (a raw, already
    decompressed file of the same content also verifies). ``source`` says where the checksum
    comes from.
    """

    folder: str
    filename: str
    urls: tuple[str, ...]
    algorithm: str
    digest: str
    decompressed: bool = False
    source: str = ""

    def path(self, root: str | os.PathLike) -> Path:
        """Where the file lives under the data root ``root``."""
        return Path(root) / self.folder / self.filename


def _idx(folder: str, bases: tuple[str, ...], md5s: dict[str, str], source: str) -> list[Resource]:
    return [Resource(folder, f"{stem}.gz", tuple(b + f"{stem}.gz" for b in bases), "md5", md5, True,
                     source) for stem, md5 in md5s.items()]


_MNIST_BASES = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
    "http://yann.lecun.com/exdb/mnist/",  # the original site
)
# md5 of the decompressed IDX files: the test-split values are stated in shared/data/README.md and
# verified on those files; all four are the values listed by many public MNIST loaders (e.g.
# secml's CDataLoaderMNIST, TensorFlow-based downloaders), and correspond to the .gz md5s that
# torchvision's datasets/mnist.py publishes (f68b3c2d…, d53e105e…, 9fb629c4…, ec29112d…).
_MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_FASHION_BASES = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# md5 of the decompressed Fashion-MNIST IDX files, as listed next to the .gz md5s of the
# Fashion-MNIST README (8d4fb7e6…, 25c81989…, bef4ecab…, bb300cfd…) by public loaders (the
# FashionMNIST classes of several libraries keep both lists as `resources` and `raw_data`).
_FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

_OMNI = ("https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
         "https://github.com/brendenlake/omniglot/raw/master/python/")
_PINNS = ("https://raw.githubusercontent.com/maziarraissi/PINNs/master/main/Data/",
          "https://github.com/maziarraissi/PINNs/raw/master/main/Data/")
_README = "sha256 from the project's shared/data/README.md (files copied unchanged from the source)"
# md5 of the full Omniglot zips: torchvision's datasets/omniglot.py (`zips_md5`).
_TORCHVISION_OMNI = "md5 published in torchvision's datasets/omniglot.py"


def _omni(filename: str, algorithm: str, digest: str, source: str, sub: str = "") -> Resource:
    return Resource("omniglot", filename, tuple(b + sub + filename for b in _OMNI), algorithm,
                    digest, False, source)


_KRIZ = "https://www.cs.toronto.edu/~kriz/"
# md5 of the CIFAR *binary* archives (never the Python-pickle ones) at the canonical address,
# each as independent public codebases list it (they agree):
# * cifar-10-binary.tar.gz, c32a1d4a…: mindspore-lab/mindcv mindcv/data/dataset_download.py
#   (Cifar10Download.url), aria-ml/dataeval src/dataeval/utils/data/datasets/_cifar10.py
#   (DataLocation checksum) and datasets-mila/datasets--cifar10 `md5sums` (a DataLad copy whose
#   git-annex key MD5E-s170052171--c32a1d4a… also gives the size, 170 052 171 bytes);
# * cifar-100-binary.tar.gz, 03b5dce0…: mindspore-lab/mindcv mindcv/data/dataset_download.py
#   (Cifar100Download.url) and datasets-mila/datasets--cifar100 `md5sums` (git-annex key
#   MD5E-s168513733--03b5dce0…, 168 513 733 bytes).
# Not verified here against a download (no network on the machines that built this).
_CIFAR_SOURCE = "md5 of the archive as published on the CIFAR page (see comment in registry.py)"


def _cifar(folder: str, filename: str, md5: str) -> Resource:
    return Resource(folder, filename, (_KRIZ + filename,), "md5", md5, False, _CIFAR_SOURCE)


def _pde(filename: str, digest: str) -> Resource:
    return Resource("pde", filename, tuple(b + filename for b in _PINNS), "sha256", digest, False,
                    _README)


#: Every fetchable file, by data set name (the names ``metagrad fetch`` accepts).
RESOURCES: dict[str, list[Resource]] = {
    "mnist": _idx("mnist", _MNIST_BASES, _MNIST_MD5, "md5 of decompressed bytes (see comment)"),
    "fashion-mnist": _idx("fashion-mnist", _FASHION_BASES, _FASHION_MD5,
                          "md5 of decompressed bytes (see comment)"),
    "omniglot": [
        _omni("images_background_small1.zip", "sha256",
              "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4", _README),
        _omni("images_background_small2.zip", "sha256",
              "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f", _README),
        _omni("all_runs.zip", "sha256",
              "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325", _README,
              sub="one-shot-classification/"),
        _omni("images_background.zip", "md5", "68d2efa1b9178cc56df9314c21c6e718",
              _TORCHVISION_OMNI),
        _omni("images_evaluation.zip", "md5", "6b91aef0f799c5bb55b94e3f2daec811",
              _TORCHVISION_OMNI),
    ],
    "pde": [
        _pde("burgers_shock.mat",
             "f4d11e6798b8d29b6829984952b04adcc470d9bf70dd7e56c7985cd8e316c4bf"),
        _pde("AC.mat", "266e97eedd9ef543d7f6d370fa5f06388761aa7da2b97e476562dcf1d644a175"),
        _pde("KdV.mat", "7c04e89a0c65692105dbe7fc8ba52cb90ce01a64e47e995a5736fbf1c06be220"),
    ],
    "cifar10": [_cifar("cifar-10", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")],
    "cifar100": [_cifar("cifar-100", "cifar-100-binary.tar.gz",
                        "03b5dce01913d631647c71ecec9e9cb8")],
}
#: Data sets fetched only by name, not by ``all`` (which keeps meaning the data of the book's
#: default and CPU scales): CIFAR-10/100 (≈ 330 MB) serve only the paper scale of data
#: condensation.
NOT_IN_ALL: tuple[str, ...] = ("cifar10", "cifar100")
#: Names accepted by :func:`resources_for` and ``metagrad fetch`` (``all`` = every data set
#: except those in :data:`NOT_IN_ALL`).
DATASETS: tuple[str, ...] = (*RESOURCES, "all")


def resources_for(dataset: str) -> list[Resource]:
    """The resources of one data set, or for ``"all"`` of every data set not in
    :data:`NOT_IN_ALL`."""
    if dataset == "all":
        return [r for name, rs in RESOURCES.items() if name not in NOT_IN_ALL for r in rs]
    if dataset not in RESOURCES:
        from ..errors import ConfigError
        raise ConfigError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    return list(RESOURCES[dataset])


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *,
                decompress: bool = False) -> str:
    """Hex digest of a file, streamed. With ``decompress``, of its gunzipped content when the
    file is gzip-compressed (a file without the gzip magic bytes is hashed as is)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as raw:
        gz = decompress and raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw) if gz else raw
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, resource: Resource) -> None:
    """Raise :class:`ChecksumError` (file, expected, actual) unless ``path`` matches
    ``resource``."""
    try:
        actual = file_digest(path, resource.algorithm, decompress=resource.decompressed)
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip stream
        if isinstance(exc, FileNotFoundError):
            raise
        actual = f"<unreadable: {exc}>"
    if actual != resource.digest:
        what = "decompressed content" if resource.decompressed else "file"
        raise ChecksumError(path, resource.algorithm, resource.digest, actual, what)
