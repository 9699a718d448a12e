#!/usr/bin/env python3
"""Few-shot Omniglot runs of the page, one (setting, seed) at a time, so that a session of a few
hours finishes whole units and a later one resumes (each (setting, method, γ, seed) is one cached
result file under results/greedy_fewshot/book/; an interrupted run resumes from its checkpoint).
`make book RECOMPUTE=greedy_fewshot` recomputes the whole page in one go instead.

    PYTHONPATH=src python scripts/fewshot_units.py 1,2 0,1,2,3,4     # one worker per setting
    PYTHONPATH=src python scripts/fewshot_units.py 1,10 0,1
    PYTHONPATH=src python scripts/fewshot_units.py '{name: long, shot: 1, way: 5, outer_steps: 2000}' 0,1

Settings: params/greedy_fewshot.book.yaml (width, T, outer steps, methods, γ grid, episodes), so
the run keys are the page's own; only the (shot, way) setting — or one cell, a YAML mapping as
the page's `cells` holds them (see FewShotConfig) — and the seeds are chosen here.
Needs Omniglot under the data root (the digits fallback is refused: it cannot test the claims).
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import fewshot as F


def main(argv=None):
    ap = argparse.ArgumentParser(description="The page's few-shot runs, one (shot, way, seed) at a time.")
    ap.add_argument("setting", help="SHOT,WAY, e.g. 1,2; or a cell as YAML, e.g. '{name: long, shot: 1, way: 5, outer_steps: 2000}'")
    ap.add_argument("seeds", help="comma-separated, e.g. 0,1,2,3,4")
    args = ap.parse_args(argv)
    if args.setting.lstrip().startswith("{"):
        cell = yaml.safe_load(args.setting)
        where = {"settings": [], "cells": [cell]}
    else:
        try:
            shot, way = (int(x) for x in args.setting.split(","))
        except ValueError:
            ap.error(f"setting {args.setting!r}: expected SHOT,WAY such as 1,5, or a cell as YAML")
        where = {"settings": [[shot, way]], "cells": []}
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/greedy_fewshot.book.yaml"))
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = F.FewShotConfig.from_params(**{**book, "data": "omniglot", **where, "seeds": [seed]})
        t = time.time()
        r = F.run(cfg, progress=False)
        print(time.strftime("%H:%M:%S"), f"{F.summary(r)['settings']} seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{lab} {a:.3f}" for lab, a in zip(r.runs.label, r.runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
