#!/usr/bin/env python3
"""The CNN hyper-cleaning runs registered for the MNIST rows of Table 2 (issue 10; the amendment
of 2026-12-02 in claims/greedy_hypercleaning.yaml), one (p_noise, seed) at a time, so that a
session of a few hours finishes whole units and a later one resumes (each (p, method, seed) is
one cached result file; an interrupted run resumes from its checkpoint).

    PYTHONPATH=src python scripts/hypercleaning_cnn_units.py 0.3 2,3,4    # one worker per p_noise
    PYTHONPATH=src python scripts/hypercleaning_cnn_units.py 0.5 2,3,4

Settings: those of params/greedy_hypercleaning.book.yaml with the registered CNN overrides below;
results under results/greedy_hypercleaning_cnn/book/ until all 50 units are there (then the
page's MNIST rows switch to them through `per_dataset`). Needs MNIST under the data root.
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import hypercleaning as H

#: the registered setting (claims/greedy_hypercleaning.yaml, amendment of 2026-12-02)
CNN = {"model": "cnn", "head_init": "zero", "methods": ["none", "t1t2", "neumann", "greedy", "rmd"],
       "gammas": [0.9], "steps": 200, "eval_every": 10}


def main(argv=None):
    ap = argparse.ArgumentParser(description="The registered CNN hyper-cleaning runs, one (p_noise, seed) at a time.")
    ap.add_argument("p_noise", type=float)
    ap.add_argument("seeds", help="comma-separated, e.g. 2,3,4")
    ap.add_argument("--data-root", default=None, help="default: $METAGRAD_DATA")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/greedy_hypercleaning.book.yaml"))
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = H.HyperCleaningConfig.from_params(**{
            **book, **CNN, "datasets": ["mnist"], "p_noise": [args.p_noise], "seeds": [seed],
            "data_root": args.data_root, "results_dir": "results/greedy_hypercleaning_cnn"})
        t = time.time()
        r = H.run(cfg, progress=True)
        if r.fallback:   # MNIST missing from the data root: say so and how to get it
            raise SystemExit(r.fallback)
        print(time.strftime("%H:%M:%S"), f"p {args.p_noise:g} seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{m} {a:.3f}" for m, a in zip(r.runs.method, r.runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
