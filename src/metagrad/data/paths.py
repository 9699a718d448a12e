"""Where the data lives, and the errors raised when it is not there.

The data root is chosen, in order, from

1. an explicit ``root=`` argument,
2. the environment variable ``METAGRAD_DATA``,
3. the default ``~/.cache/metagrad/data``.

Under the root, each data set has its own folder: ``mnist/``, ``fashion-mnist/``, ``omniglot/``,
``pde/``, ``cifar-10/``, ``cifar-100/`` (the layout of the ``shared/data`` folder the tests use, and what ``metagrad fetch``
writes).
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Iterable

from ..errors import MetagradError

__all__ = [
    "ENV_VAR", "DEFAULT_ROOT", "DataNotFoundError", "ChecksumError", "DataCorruptError",
    "data_root", "resolve_root", "find_file", "fetch_command",
]

#: Environment variable naming the data root.
ENV_VAR = "METAGRAD_DATA"
#: Data root used when neither ``root=`` nor ``METAGRAD_DATA`` is given.
DEFAULT_ROOT = Path("~/.cache/metagrad/data")


class DataNotFoundError(MetagradError, FileNotFoundError):
    """A data file is missing. The message names the file, the folder searched and the fix."""


class ChecksumError(MetagradError, ValueError):
    """A file's checksum differs from the published one. The message gives expected vs actual."""

    def __init__(self, path: str | os.PathLike, algorithm: str, expected: str, actual: str,
                 what: str = "file"):
        self.path, self.algorithm = Path(path), algorithm
        self.expected, self.actual = expected, actual
        super().__init__(
            f"checksum mismatch for {self.path} ({algorithm} of the {what}): expected {expected}, "
            f"got {actual}. The file is corrupt or not the published one; delete it and fetch it "
            f"again.")


class DataCorruptError(MetagradError, ValueError):
    """A data file is present but unreadable or inconsistent (truncated gzip, broken zip, a label
    out of range). The message names the file and the ``metagrad fetch ... --force`` command
    (``root``: the data root; default the folder above the file's folder)."""

    def __init__(self, path: str | os.PathLike, problem: str, dataset: str | None = None, *,
                 root: str | os.PathLike | None = None):
        self.path = Path(path)
        dataset = dataset or self.path.parent.name
        root = self.path.parent.parent if root is None else Path(root)
        super().__init__(
            f"{self.path} is corrupt: {problem}. Download it again with\n"
            f"    {fetch_command(dataset, root, force=True)}\n"
            f"(or delete it and fetch without --force).")


def resolve_root(root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Return the data root and a few words saying where it came from (for error messages)."""
    if root is not None:
        return Path(root).expanduser(), "the root= argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"the environment variable {ENV_VAR}"
    return DEFAULT_ROOT.expanduser(), f"the default (neither root= nor {ENV_VAR} was set)"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$METAGRAD_DATA``, else
    ``~/.cache/metagrad/data``."""
    return resolve_root(root)[0]


def fetch_command(dataset: str, root: Path, *, force: bool = False) -> str:
    """The shell command that downloads ``dataset`` into the data root ``root``."""
    return (f"metagrad fetch {dataset} --root {shlex.quote(str(root))}"
            + (" --force" if force else ""))


def find_file(root: str | os.PathLike | None, folder: str, names: str | Iterable[str],
              dataset: str | None = None) -> Path:
    """Return the first of ``names`` that exists in ``<root>/<folder>``.

    Raises :class:`DataNotFoundError` naming the file(s), the folder searched, how the root was
    chosen, and the ``metagrad fetch`` command that downloads the data set (``dataset`` defaults
    to ``folder``).
    """
    base, how = resolve_root(root)
    names = [names] if isinstance(names, str) else list(names)
    directory = base / folder
    for name in names:
        if (directory / name).is_file():
            return directory / name
    wanted = " or ".join(repr(n) for n in names)
    raise DataNotFoundError(
        f"{wanted} not found in {directory} (data root {base}, from {how}). Fetch it with\n"
        f"    {fetch_command(dataset or folder, base)}\n"
        f"or point {ENV_VAR} (or root=) at a folder that has {folder}/{names[0]}.")
