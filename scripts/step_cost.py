#!/usr/bin/env python3
"""Process-CPU seconds per outer step of each method at a candidate setting of a page, to plan a
scale-up before running it (issue 10: "measure the cost of one outer step first").

    PYTHONPATH=src python scripts/step_cost.py hypercleaning [--steps 3] [--set key=value ...]
    PYTHONPATH=src python scripts/step_cost.py condensation  [--steps 3] [--set key=value ...]
    PYTHONPATH=src python scripts/step_cost.py fewshot       [--steps 3] [--set key=value ...]

``--set`` overrides a field of the page's configuration (YAML values: ``--set image_size=14
--set model=cnn``; condensation: fields of ``Setup``). One thread; the first step of each method
is a warm-up and not counted. Prints one line per method: CPU s per outer step, and the CPU hours
that ``--plan STEPS,RUNS`` outer steps × runs would take.
"""
from __future__ import annotations

import argparse
import time

import torch
import yaml

from metagrad.loops import OuterConfig, outer_loop


def _per_step(problem_at, alpha0, method, options, steps):
    def once(n):
        t = time.process_time()
        outer_loop(problem_at, alpha0, OuterConfig(method=method, options=options, steps=n, optimizer="adam",
                                                    lr=1e-3, seed=0), progress=False)
        return time.process_time() - t
    once(1)  # warm-up (first-call costs), not counted
    return once(steps) / steps


def hypercleaning(over: dict):
    from metagrad.tasks import hypercleaning as H
    cfg = H.HyperCleaningConfig.from_params(**{"datasets": ["mnist"], **over})
    d = cfg.datasets[0]
    inst = H.build(cfg, d, cfg.p_noise[0], 0)
    opts = {"greedy": {"gamma": cfg.gammas[0]}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}
    return [(m, lambda m=m: (lambda step: inst.problem, inst.alpha0, m, opts.get(m, {})))
            for m in cfg.methods if m != "none"]


def condensation(over: dict):
    from metagrad.tasks import condensation as C
    s = C.Setup(**{"dataset": "mnist", "image_size": 28, "depth": 3, **over})
    data = C.load_data(s)
    alpha0 = C.initial_images(s, data, 0)
    methods = {"trgu": {"K": 2}, "hessian-free": {}, "neumann": {"K": 5}, "fg2u": {"b": 8}, "rmd": {}, "greedy": {"gamma": 0.9}}
    return [(m, lambda m=m, o=o: (lambda step: C.make_problem(s, data, 0, step), alpha0, m, o))
            for m, o in methods.items()]


def fewshot(over: dict):
    from metagrad.tasks import fewshot as F
    from metagrad.tasks.fewshot.model import init_params, make_problem, stack_tasks, training_tasks
    cfg = F.FewShotConfig.from_params(**{"data": "auto", **over})
    data = F.load_data(cfg)
    shot, way = cfg.settings[0]
    w0, alpha0 = init_params(cfg, 0, way)
    opts = {"greedy": {"gamma": cfg.gammas[0]}, "neumann": {"K": cfg.neumann_K}, "fg2u": {"b": cfg.fg2u_b}}

    def problem_at(step):
        return make_problem(cfg, w0, *stack_tasks(training_tasks(cfg, data, shot, way, 0, step)))
    return [(m, lambda m=m: (problem_at, alpha0, m, opts.get(m, {}))) for m in cfg.methods if m != "init"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", choices=["hypercleaning", "condensation", "fewshot"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--plan", default=None, metavar="STEPS,RUNS", help="outer steps per run, runs per method")
    args = ap.parse_args(argv)
    over = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE, e.g. --set image_size=14")
        over[key] = yaml.safe_load(value)
    torch.set_num_threads(1)
    plan = tuple(int(x) for x in args.plan.split(",")) if args.plan else None
    total = 0.0
    for method, make in globals()[args.page](over):
        s = _per_step(*make(), args.steps)
        line = f"{args.page} {method:>13}: {s:7.3f} CPU s per outer step"
        if plan:
            hours = s * plan[0] * plan[1] / 3600
            total += hours
            line += f"; {plan[0]} steps x {plan[1]} runs = {hours:.2f} CPU h"
        print(line, flush=True)
    if plan:
        print(f"total: {total:.2f} CPU h (evaluation not included)")


if __name__ == "__main__":
    main()
