#!/usr/bin/env python3
"""The MNIST rows of the hyper-cleaning page (the 3-layer CNN registered in
claims/greedy_hypercleaning.yaml, amendment of 2026-12-02), one (p_noise, seed) at a time, so
that a session of a few hours finishes whole units and a later one resumes (each (p, method,
seed) is one cached result file under results/greedy_hypercleaning/book/; an interrupted run
resumes from its checkpoint). `make book RECOMPUTE=greedy_hypercleaning` recomputes the whole
page in one go instead.

    PYTHONPATH=src python scripts/hypercleaning_cnn_units.py 0.3 0,1,2,3,4    # one worker per p_noise
    PYTHONPATH=src python scripts/hypercleaning_cnn_units.py 0.5 0,1,2,3,4

Settings: params/greedy_hypercleaning.book.yaml (its `per_dataset: mnist` entry holds the CNN), so
the run keys are the page's own. Needs MNIST under the data root.
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import hypercleaning as H


def main(argv=None):
    ap = argparse.ArgumentParser(description="The page's MNIST hyper-cleaning runs, one (p_noise, seed) at a time.")
    ap.add_argument("p_noise", type=float)
    ap.add_argument("seeds", help="comma-separated, e.g. 2,3,4")
    ap.add_argument("--data-root", default=None, help="default: $METAGRAD_DATA")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/greedy_hypercleaning.book.yaml"))
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = H.HyperCleaningConfig.from_params(**{
            **book, "datasets": ["mnist"], "p_noise": [args.p_noise], "seeds": [seed],
            "data_root": args.data_root})
        t = time.time()
        r = H.run(cfg, progress=True)
        if r.fallback:   # MNIST missing from the data root: say so and how to get it
            raise SystemExit(r.fallback)
        print(time.strftime("%H:%M:%S"), f"p {args.p_noise:g} seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{m} {a:.3f}" for m, a in zip(r.runs.method, r.runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
