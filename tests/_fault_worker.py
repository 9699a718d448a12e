"""Code the fault-injection tests run in a forked child process (to kill it) and in the test.

:func:`run_outer` with a FLAG path writes FLAG at outer step :data:`HANG_AT` and sleeps: the test
then sends SIGKILL and resumes in-process. :func:`fetch` runs ``metagrad fetch pde`` from a
mirror. The same from a shell: ``python tests/_fault_worker.py outer CHECKPOINT FLAG`` or
``python tests/_fault_worker.py fetch ROOT URL``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)

STEPS, CHECKPOINT_EVERY, HANG_AT = 8, 2, 5


def problem_at_factory(flag: Path | None = None):
    """A problem whose outer batch is drawn from the *global* torch and numpy RNGs at every
    step, so that a resume is only bit-identical if the RNG states are checkpointed too."""
    from metagrad.tasks import families
    base, alpha0 = families.quadratic(P=6, N=3, T=5)

    def problem_at(step: int):
        if flag is not None and step == HANG_AT:
            flag.write_text("hanging")
            time.sleep(120)
        noise = torch.randn(6, dtype=torch.float64) * 0.1 + float(np.random.standard_normal()) * 0.01
        batch = dict(base.outer_batch, target=base.outer_batch["target"] + noise)
        return base.replace(outer_batch=batch)
    return problem_at, alpha0


def run_outer(checkpoint: Path | None, flag: Path | None = None, method: str = "fg2u"):
    from metagrad.loops import OuterConfig, outer_loop
    torch.manual_seed(0)
    np.random.seed(0)
    problem_at, alpha0 = problem_at_factory(flag)
    cfg = OuterConfig(method=method, options={"b": 2}, steps=STEPS, lr=0.05, seed=3,
                      checkpoint_every=CHECKPOINT_EVERY)
    return outer_loop(problem_at, alpha0, cfg, checkpoint=checkpoint, progress=False)


def fetch(root: str, mirror: str) -> int:
    from metagrad.cli import main
    return main(["fetch", "pde", "--root", root, "--mirror", mirror, "--quiet"])


if __name__ == "__main__":
    if sys.argv[1] == "outer":
        run_outer(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "fetch":
        sys.exit(fetch(sys.argv[2], sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
    os._exit(0)
