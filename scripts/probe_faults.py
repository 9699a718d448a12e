"""Count bad inputs refused clearly and faults survived (issue 13).

    PYTHONPATH=src python scripts/probe_faults.py

Runs every case of ``tests/_fault_cases.py`` (the same ones ``tests/test_faults.py`` runs) in a
fresh temporary folder and prints, per case, ``ok`` or the failure, then the two totals:
bad inputs tried / handled (refused with an error naming the value or file and the fix, or, for
numpy / tensor scalars, accepted with the right result), and fault scenarios injected /
survived with nothing lost. A bad-input case counts the inputs it tries (its ``refused`` and
``accepted`` checks); a fault case counts as one scenario. Exit status 1 unless all pass.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import _fault_cases as fc  # noqa: E402


def _run(case) -> tuple[bool, int, str]:
    """(passed, number of bad inputs / faults it tried, message)."""
    calls = {"n": 0}
    real = {name: getattr(fc, name) for name in ("refused", "accepted")}

    def counting(fn):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            return fn(*args, **kwargs)
        return wrapper
    for name, fn in real.items():
        setattr(fc, name, counting(fn))
    is_fault = case in fc.FAULTS
    try:
        with tempfile.TemporaryDirectory() as tmp:
            case(Path(tmp))
        return True, 1 if is_fault else calls["n"], "ok"
    except BaseException as exc:  # noqa: BLE001 - report every failure and go on
        return False, 1 if is_fault else max(calls["n"], 1), f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        for name, fn in real.items():
            setattr(fc, name, fn)


def main() -> int:
    totals = {}
    for kind, group in (("bad inputs", fc.BAD_INPUTS), ("faults", fc.FAULTS)):
        tried = handled = 0
        for case in group:
            start = time.perf_counter()
            ok, n, msg = _run(case)
            tried += n
            handled += n if ok else 0
            print(f"{'ok  ' if ok else 'FAIL'} {case.__name__:60s} {n:3d} "
                  f"{time.perf_counter() - start:5.1f} s  {'' if ok else msg}")
        totals[kind] = (handled, tried)
    b, f = totals["bad inputs"], totals["faults"]
    print(f"\nbad inputs refused with a clear error: {b[0]}/{b[1]}")
    print(f"fault scenarios survived, nothing lost: {f[0]}/{f[1]}")
    return 0 if b[0] == b[1] and f[0] == f[1] else 1


if __name__ == "__main__":
    sys.exit(main())
