"""Download the data sets from their canonical public addresses, verified and written atomically.

Nothing here runs at import time. ``metagrad fetch mnist --root DIR`` (see :mod:`metagrad.cli`)
and :func:`fetch` are the same thing::

    from metagrad.data import fetch
    fetch("omniglot")                    # into $METAGRAD_DATA or ~/.cache/metagrad/data
    fetch("all", root="/data/metagrad")

Each file is downloaded to a temporary ``.part`` file in its destination folder, its checksum
verified, and only then renamed into place, so an interrupted or corrupted download never leaves
a file that looks valid. The ``.part`` file is removed on any error, Ctrl-C or SIGTERM (and one
left by a killed process is removed by the next fetch). Files already present and valid are
skipped. ``timeout`` bounds each wait for the server (a stalled connection); ``deadline`` bounds
a whole ``fetch`` call, so a server that trickles bytes cannot make it hang.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ConfigError
from .paths import ChecksumError, DataNotFoundError, data_root
from .registry import Resource, resources_for, verify_file

__all__ = ["fetch", "download", "USER_AGENT", "DeadlineError"]

USER_AGENT = "metagrad-fetch/0.1 (+https://pypi.org/project/metagrad)"
_CHUNK = 1 << 16
_DEADLINE = 1800.0  # default seconds for a whole fetch


def _check_root(root) -> Path:
    """The data root; refuses one that exists but is not a folder."""
    path = data_root(root)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"data root {path} cannot be created: {p} is a file, not a folder; "
                                  f"pass a folder as --root / root= (or METAGRAD_DATA)")
            break
    return path


def _check_seconds(**values) -> None:
    import math
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v <= 0):
            raise ConfigError(f"{name} must be a finite number of seconds > 0, got {v!r}")


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


class DeadlineError(TimeoutError):
    """The overall ``deadline`` of a fetch passed."""


def _stream(url: str, dest, progress: bool, timeout: float, label: str, deadline: float) -> None:
    """Copy ``url`` into ``dest``. ``deadline`` is a ``time.monotonic()`` instant: reads return
    whatever has arrived (``read1``), so the deadline is checked at least every ``timeout``
    seconds, however slowly the server sends."""
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineError(f"the fetch deadline passed while downloading {url}; pass a larger "
                                f"deadline (--deadline SECONDS) or use a faster mirror (--mirror)")
        return remaining

    def stalled(exc: BaseException) -> OSError:
        left()  # the deadline, if that is what ran out
        return TimeoutError(f"no data from {url} for {timeout:g} s (a stalled connection); pass a "
                            f"larger --timeout or use another mirror")

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = _open(request, min(timeout, left()), left)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise stalled(exc) from None
        raise
    with response:
        total = response.headers.get("Content-Length")
        got = 0
        from tqdm.auto import tqdm
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=label, disable=not progress, leave=False) as bar:
            while True:
                _set_timeout(response, min(timeout, left()))
                try:
                    chunk = response.read1(_CHUNK)
                except TimeoutError as exc:
                    raise stalled(exc) from None
                if not chunk:
                    break
                dest.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        left()
        if total and total.isdigit() and got != int(total):
            raise OSError(f"connection closed after {got:,} of {int(total):,} bytes from {url}")


def _open(request, timeout: float, left: Callable[[], float]):
    """``urlopen`` bounded by the deadline too: a server that trickles its status line and
    headers (each read within ``timeout``) is abandoned when ``left()`` runs out. The opening
    runs in a daemon thread; a response that arrives after we gave up is closed."""
    box: dict = {}
    gave_up = threading.Event()

    def target():
        try:
            box["response"] = urllib.request.urlopen(request, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        if gave_up.is_set() and "response" in box:
            box["response"].close()

    thread = threading.Thread(target=target, daemon=True, name="metagrad-fetch-open")
    thread.start()
    thread.join(left())
    if thread.is_alive():
        gave_up.set()
        thread.join(0.05)
        if "response" in box:
            box["response"].close()
        raise DeadlineError(f"the fetch deadline passed while waiting for {request.full_url} to "
                            f"answer; pass a larger deadline (--deadline SECONDS) or use another "
                            f"mirror (--mirror)")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _set_timeout(response, seconds: float) -> None:
    """Shorten the socket timeout of an open HTTP response (so a read never outlives the
    deadline); file:// responses have no socket."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.01))


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While fetching in the main thread, SIGTERM raises KeyboardInterrupt, so that the
    ``finally`` that removes the ``.part`` file runs (a plain SIGTERM would skip it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # the application handles SIGTERM itself
        return

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale_parts(folder: Path, filename: str) -> None:
    """Remove ``.part`` files of ``filename`` left by processes that no longer run (kill -9)."""
    for part in folder.glob(f".{filename}.*.part"):
        try:
            pid = int(part.name[len(filename) + 2:].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            pass  # not ours to judge: another user's process, or an unexpected name


def download(resource: Resource, root: str | os.PathLike | None = None, *,
             mirror: str | None = None, force: bool = False, progress: bool = True,
             timeout: float = 60.0, quiet: bool = False, deadline: float | None = None) -> Path:
    """Download one :class:`~metagrad.data.registry.Resource` into ``root``; return its path.

    The canonical addresses are tried in order (``mirror``, when given, replaces them with
    ``<mirror>/<folder>/<filename>``; ``file://`` addresses work too). A file already present and
    valid is kept unless ``force``. A download whose checksum differs raises
    :class:`~metagrad.data.paths.ChecksumError` and leaves nothing behind; when every address
    fails, :class:`~metagrad.data.paths.DataNotFoundError` lists each address and its error.
    ``timeout``: seconds to wait for the server at each step; ``deadline``: seconds for the
    whole download (all addresses), default 30 minutes.
    """
    root = _check_root(root)
    _check_seconds(timeout=timeout, deadline=deadline)
    end = time.monotonic() + (_DEADLINE if deadline is None else deadline)
    dest = resource.path(root)
    if not force and _present(resource, root):
        _say(f"{dest}: present and valid, skipped", quiet)
        return dest
    urls = ([f"{mirror.rstrip('/')}/{resource.folder}/{resource.filename}"] if mirror
            else list(resource.urls))
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest.parent, resource.filename)
    failures = []
    for url in urls:
        # a unique temporary name in the destination folder (same file system: atomic rename)
        tmp = dest.parent / f".{resource.filename}.{os.getpid()}.{secrets.token_hex(4)}.part"
        try:
            with _sigterm_as_interrupt():
                with open(tmp, "xb") as f:
                    _stream(url, f, progress, timeout, resource.filename, end)
                verify_file(tmp, resource)
                os.replace(tmp, dest)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # an HTTP error holds the open connection
            if isinstance(exc, ChecksumError):
                # name the destination, not the temporary file, and keep trying other mirrors
                exc = ChecksumError(dest, exc.algorithm, exc.expected, exc.actual,
                                    "download from " + url)
            if isinstance(exc, http.client.IncompleteRead):  # its message is unreadable
                exc = OSError(f"connection closed after {len(exc.partial):,} bytes")
            failures.append((url, exc))
            _say(f"{url}: {exc}", quiet)
            if isinstance(exc, DeadlineError):
                break  # no time left for the other addresses
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
          select: Callable[[Resource], bool] | None = None,
          deadline: float | None = None) -> list[Path]:
    """Fetch one or more data sets (``mnist``, ``fashion-mnist``, ``omniglot``, ``pde``,
    ``cifar10``, ``cifar100``, or ``all`` = every one except CIFAR-10/100).

    ``root`` follows the usual rule (argument > ``$METAGRAD_DATA`` > ``~/.cache/metagrad/data``).
    ``select`` keeps only the resources for which it returns true. Returns the paths of the
    files, present or downloaded. Every file is attempted; if some could not be obtained, the
    error (or a summary of all of them) is raised at the end. ``deadline`` (seconds, default
    30 minutes) bounds the whole call; ``timeout`` each wait for a server.
    """
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    seen, resources = set(), []
    for name in names:
        for r in resources_for(name):
            if (r.folder, r.filename) not in seen and (select is None or select(r)):
                seen.add((r.folder, r.filename))
                resources.append(r)
    root = _check_root(root)
    _check_seconds(timeout=timeout, deadline=deadline)
    end = time.monotonic() + (_DEADLINE if deadline is None else deadline)
    paths, failures = [], []
    for r in resources:  # keep going past a failure: get everything that can be got
        try:
            paths.append(download(r, root, mirror=mirror, force=force, progress=progress,
                                  timeout=timeout, quiet=quiet,
                                  deadline=max(1e-3, end - time.monotonic())))
        except (DataNotFoundError, ChecksumError) as exc:
            failures.append((r, exc))
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        detail = "\n".join(f"  {r.folder}/{r.filename}: {exc}" for r, exc in failures)
        raise DataNotFoundError(f"{len(failures)} of {len(resources)} files could not be fetched "
                                f"into {root}:\n{detail}")
    return paths
