#!/usr/bin/env python3
"""What the outer loop's once-per-run problem check saves: three few-shot outer steps (the book
settings of params/greedy_fewshot.book.yaml, 1-shot 5-way) with the problem validated on every
step (before 2026-12-02) against on the first step only (now), interleaved over rounds, CPU time.
Prints the ratio once / every step, median [min-max] over rounds, per method.

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/bench_validation.py [--rounds 11]

Uses Omniglot when it is under the data root, else the embedded digits (same shapes).
"""
import argparse

import yaml

import metagrad as mg
from metagrad.bench_targets import fmt, interleave, paired_ratios, summary
from metagrad.tasks import fewshot as F
from metagrad.tasks.fewshot.model import init_params, make_problem, stack_tasks, training_tasks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args(argv)
    book = yaml.safe_load(open("params/greedy_fewshot.book.yaml"))
    cfg = F.FewShotConfig.from_params(**{**book, "data": "auto", "settings": [[1, 5]], "cells": []})
    data = F.load_data(cfg)
    w0, alpha = init_params(cfg, 0, 5)
    problems = [make_problem(cfg, w0, *stack_tasks(training_tasks(cfg, data, 1, 5, 0, s))) for s in range(3)]
    print(f"data: {data.name}; {args.rounds} rounds, 3 outer steps per call")
    for m in ("fo", "rmd", "greedy"):
        calls = {"every": lambda m=m: [mg.hypergrad(p, alpha, m) for p in problems],
                 "once": lambda m=m: [mg.hypergrad(p, alpha, m, validate=i == 0) for i, p in enumerate(problems)]}
        times = interleave(calls, args.rounds)
        print(f"{m:7s} once / every step = {fmt(summary(paired_ratios(times, 'once', 'every')))}")


if __name__ == "__main__":
    main()
