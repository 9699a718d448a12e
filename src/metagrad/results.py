"""Result files with provenance, and computing them once.

A result file is JSON: ``{"config": ..., "provenance": ..., "result": ...}``. Provenance
records the seed, git commit (and whether the tree was dirty), device, library versions, date
and wall time. A book table is a pure function of result files (:func:`load_result`).
"""
from __future__ import annotations

import contextvars
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CorruptFileError
__all__ = ["config_hash", "provenance", "save_result", "load_result", "cached", "lookup",
           "atomic_write_bytes", "repo_root", "track_checkpoint"]


def repo_root() -> Path:
    """The repository root (where ``pyproject.toml`` is), or the current directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "metagrad").exists():
            return parent
    return Path.cwd()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_hash(config: dict) -> str:
    """A short stable hash of a configuration (key order does not matter)."""
    blob = json.dumps(_canonical(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except Exception:
        return None


def provenance(config: dict, *, wall_time_s: float | None = None, device: str | None = None) -> dict:
    import numpy
    import metagrad
    # dirty: tracked changes anywhere, or library code that git does not track yet
    dirty = _git("status", "--porcelain", "--untracked-files=normal", "--", "src", "pyproject.toml")
    return {
        "config_hash": config_hash(config),
        "seed": config.get("seed"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "device": device or ("cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "metagrad": metagrad.__version__},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "created_unix": round(time.time(), 3),
        "wall_time_s": wall_time_s,
        # the library modules loaded when the result was made (metagrad.provenance: staleness)
        "code": _code_hashes(),
    }


def _code_hashes() -> dict:
    from .provenance import code_hashes  # imported here: `python -m metagrad.provenance` stays clean
    return code_hashes()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file, ``fsync`` and rename (then ``fsync`` the folder), so that an
    interrupted write, a crash or a power loss never leaves half a file: readers see the old
    file or the new one. Concurrent writers each write their own temporary file; the last
    rename wins and the file is always one writer's complete bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:  # disk full, read-only, ...
            raise OSError(exc.errno, f"could not write {path} ({exc.strerror}); the previous "
                                     f"version, if any, is unchanged", str(path)) from exc
        raise
    _fsync_dir(path.parent)


def _remove_stale_tmp(path: Path) -> None:
    """Remove temporary files of ``path`` left by writers killed mid-write (their pid is gone);
    a live writer's temporary file is never touched."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            os.kill(int(tmp.name[len(path.name) + 2:].split(".")[0]), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, OSError):
            pass  # not our naming, or another user's live process


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_result(path: str | Path, config: dict, result: Any, *, wall_time_s: float | None = None,
                device: str | None = None) -> dict:
    if not isinstance(config, dict):
        from .errors import ConfigError
        raise ConfigError(f"the configuration of result {path} must be a dict, got "
                          f"{type(config).__name__}")
    payload = {"config": _canonical(config),
               "provenance": provenance(config, wall_time_s=wall_time_s, device=device),
               "result": _canonical(result)}
    atomic_write_bytes(path, json.dumps(payload, indent=1, default=str).encode())
    return payload


def load_result(path: str | Path) -> dict:
    """Read a result file. A truncated, empty or garbage file raises
    :class:`~metagrad.errors.CorruptFileError` naming it (delete it and rerun to recompute)."""
    path = Path(path)
    fix = "delete it and rerun to recompute it (finished results are cached in such files)"
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise CorruptFileError(path, "result file", "is a folder", "remove or rename it") from None
    if not raw.strip():
        raise CorruptFileError(path, "result file", "is empty (an interrupted write?)", fix)
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, "result file", f"is not valid JSON ({exc}; truncated or "
                               f"overwritten?)", fix) from None
    missing = ({"config", "provenance", "result"} - set(payload)
               if isinstance(payload, dict) else None)
    if missing is None or missing or not isinstance(payload["provenance"], dict):
        raise CorruptFileError(path, "result file", "is JSON but not a metagrad result (it needs "
                               "the keys config, provenance, result)", fix)
    return payload


# Checkpoints written while computing a cached result: removed once the result is saved.
_CHECKPOINTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("metagrad_checkpoints",
                                                                           default=None)


def track_checkpoint(path: str | Path) -> None:
    """Note that the computation now running under :func:`cached` wrote checkpoint ``path``:
    it is deleted once that result is saved (a finished run needs no checkpoint, and a stale
    one must not outlive its result). Outside :func:`cached` this does nothing."""
    pending = _CHECKPOINTS.get()
    if pending is not None and Path(path) not in pending:
        pending.append(Path(path))


#: Environment variable set by ``make book RECOMPUTE=<page>`` (scripts/build_book.py): a Unix
#: time; result files made before it are recomputed by :func:`cached` (each once per build).
RECOMPUTE_ENV = "METAGRAD_RECOMPUTE_BEFORE"


def _recompute_before() -> float | None:
    value = os.environ.get(RECOMPUTE_ENV)
    try:
        return float(value) if value else None
    except ValueError:
        raise ValueError(f"{RECOMPUTE_ENV}={value!r} is not a Unix time; unset it or set it to "
                         "e.g. $(date +%s)") from None


def lookup(path: str | Path, config: dict) -> dict | None:
    """The payload of ``path`` if it holds a result for exactly ``config`` (and is not due for
    recomputation, see :data:`RECOMPUTE_ENV`), else ``None``. Reads no data: pages call it to
    decide whether they need their data at all."""
    path = Path(path)
    if not path.exists():
        return None
    payload = load_result(path)
    prov = payload.get("provenance", {}) if isinstance(payload, dict) else {}
    if prov.get("config_hash") != config_hash(config):
        return None
    before = _recompute_before()
    if before is not None and float(prov.get("created_unix") or 0) < before:
        return None
    return payload


def cached(path: str | Path, config: dict, compute: Callable[[], Any], *, force: bool = False,
           device: str | None = None) -> dict:
    """Load ``path`` if it holds a result for exactly ``config``; otherwise run ``compute()``,
    save it with provenance and return the payload. Finished results are never recomputed,
    except with ``force=True`` or under ``make book RECOMPUTE=...`` (:data:`RECOMPUTE_ENV`).
    Outer-loop checkpoints written by ``compute`` are removed once the result is saved; if
    ``compute`` fails they stay, and the next call resumes from them."""
    path = Path(path)
    if not force:
        payload = lookup(path, config)
        if payload is not None:
            return payload
    start = time.perf_counter()
    token = _CHECKPOINTS.set([])
    try:
        result = compute()
        written = _CHECKPOINTS.get()
    finally:
        _CHECKPOINTS.reset(token)
    payload = save_result(path, config, result, wall_time_s=time.perf_counter() - start,
                          device=device)
    for ck in written:
        ck.unlink(missing_ok=True)
    return payload
