"""Download the data sets from their canonical public addresses, verified and written atomically.

Nothing here runs at import time. ``metagrad fetch mnist --root DIR`` (see :mod:`metagrad.cli`)
and :func:`fetch` are the same thing::

    from metagrad.data import fetch
    fetch("omniglot")                    # into $METAGRAD_DATA or ~/.cache/metagrad/data
    fetch("all", root="/data/metagrad")

Each file is downloaded to a temporary file in its destination folder, its checksum verified,
and only then renamed into place, so an interrupted or corrupted download never leaves a file
that looks valid. Files already present and valid are skipped.
"""
from __future__ import annotations

import os
import sys
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from .paths import ChecksumError, DataNotFoundError, data_root
from .registry import Resource, resources_for, verify_file

__all__ = ["fetch", "download", "USER_AGENT"]

USER_AGENT = "metagrad-fetch/0.1 (+https://pypi.org/project/metagrad)"
_CHUNK = 1 << 16


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def _present(resource: Resource, root: Path) -> Path | None:
    """The resource's file if it is already there and valid, else None."""
    path = resource.path(root)
    if not path.is_file():
        return None
    try:
        verify_file(path, resource)
    except ChecksumError:
        return None
    return path


def _stream(url: str, dest, progress: bool, timeout: float, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        from tqdm.auto import tqdm
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=label, disable=not progress, leave=False) as bar:
            while chunk := response.read(_CHUNK):
                dest.write(chunk)
                bar.update(len(chunk))


def download(resource: Resource, root: str | os.PathLike | None = None, *,
             mirror: str | None = None, force: bool = False, progress: bool = True,
             timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download one :class:`~metagrad.data.registry.Resource` into ``root``; return its path.

    The canonical addresses are tried in order (``mirror``, when given, replaces them with
    ``<mirror>/<folder>/<filename>``; ``file://`` addresses work too). A file already present and
    valid is kept unless ``force``. A download whose checksum differs raises
    :class:`~metagrad.data.paths.ChecksumError` and leaves nothing behind; when every address
    fails, :class:`~metagrad.data.paths.DataNotFoundError` lists each address and its error.
    """
    root = data_root(root)
    dest = resource.path(root)
    if not force and _present(resource, root):
        _say(f"{dest}: present and valid, skipped", quiet)
        return dest
    urls = ([f"{mirror.rstrip('/')}/{resource.folder}/{resource.filename}"] if mirror
            else list(resource.urls))
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        # a unique temporary name in the destination folder (same file system: atomic rename)
        tmp = dest.parent / f".{resource.filename}.{os.getpid()}.{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "xb") as f:
                _stream(url, f, progress, timeout, resource.filename)
            verify_file(tmp, resource)
            os.replace(tmp, dest)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # an HTTP error holds the open connection
            if isinstance(exc, ChecksumError):
                # name the destination, not the temporary file, and keep trying other mirrors
                exc = ChecksumError(dest, exc.algorithm, exc.expected, exc.actual,
                                    "download from " + url)
            failures.append((url, exc))
            _say(f"{url}: {exc}", quiet)
            continue
        finally:  # also on KeyboardInterrupt: never leave a partial file behind
            tmp.unlink(missing_ok=True)
        _say(f"{dest}: downloaded from {url} and verified ({resource.algorithm})", quiet)
        return dest
    checksum = [e for _, e in failures if isinstance(e, ChecksumError)]
    if checksum and len(checksum) == len(failures):
        raise checksum[0]
    detail = "\n".join(f"    {u}: {e}" for u, e in failures)
    raise DataNotFoundError(f"could not download {resource.filename} to {dest}; tried\n{detail}")


def fetch(datasets: str | Iterable[str] = "all", root: str | os.PathLike | None = None, *,
          mirror: str | None = None, force: bool = False, progress: bool = True,
          timeout: float = 60.0, quiet: bool = False,
          select: Callable[[Resource], bool] | None = None) -> list[Path]:
    """Fetch one or more data sets (``mnist``, ``fashion-mnist``, ``omniglot``, ``pde``, ``all``).

    ``root`` follows the usual rule (argument > ``$METAGRAD_DATA`` > ``~/.cache/metagrad/data``).
    ``select`` keeps only the resources for which it returns true. Returns the paths of the
    files, present or downloaded. Every file is attempted; if some could not be obtained, the
    error (or a summary of all of them) is raised at the end.
    """
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    seen, resources = set(), []
    for name in names:
        for r in resources_for(name):
            if (r.folder, r.filename) not in seen and (select is None or select(r)):
                seen.add((r.folder, r.filename))
                resources.append(r)
    root = data_root(root)
    paths, failures = [], []
    for r in resources:  # keep going past a failure: get everything that can be got
        try:
            paths.append(download(r, root, mirror=mirror, force=force, progress=progress,
                                  timeout=timeout, quiet=quiet))
        except (DataNotFoundError, ChecksumError) as exc:
            failures.append((r, exc))
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        detail = "\n".join(f"  {r.folder}/{r.filename}: {exc}" for r, exc in failures)
        raise DataNotFoundError(f"{len(failures)} of {len(resources)} files could not be fetched "
                                f"into {root}:\n{detail}")
    return paths
