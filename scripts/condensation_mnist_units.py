#!/usr/bin/env python3
"""The MNIST condensation runs registered for Table 1 (issue 10; the amendment of 2026-12-02 in
claims/fg2u_condensation.yaml), a few methods and seeds at a time, so that a session of a few
hours finishes whole runs and a later one resumes (each (method, seed) is one cached result file;
an interrupted run resumes from its checkpoint every 10 outer steps).

    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "(FG)²U"
    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "RGU (full),TRGU,Hessian-free,Neumann"

Settings: those of params/fg2u_condensation.book.yaml with the registered MNIST cell below;
results under results/fg2u_condensation_mnist/book/ until every run is there (then the page's
table adds the MNIST rows through ``datasets`` and ``per_dataset``). Needs MNIST under the data
root (``metagrad fetch mnist`` says where it goes).
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import condensation as C

#: the registered cell (claims/fg2u_condensation.yaml, amendments of 2026-12-02; inner lr 0.01 as
#: in the paper: at 0.1 the exact hypergradient made the images worse)
MNIST = {"ipcs": [1], "methods": ["TRGU", "Hessian-free", "Neumann", "(FG)²U", "RGU (full)"], "image_size": 28, "depth": 3, "width": 8, "T": 20, "inner_lr": 0.01, "pool_size": 5000,
         "test_size": 5000, "eval_steps": 300, "eval_nets": 2}
SCHEDULE = [{"dataset": "mnist", "ipc": 1, "steps": 1000, "lr": 0.01, "warm_start": 0, "eval_every": 100}]


def main(argv=None):
    ap = argparse.ArgumentParser(description="The registered MNIST condensation runs.")
    ap.add_argument("seeds", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--methods", default=None,
                    help="comma-separated labels of the book params' methods (default: all)")
    ap.add_argument("--out-dir", default="results/fg2u_condensation_mnist/book")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/fg2u_condensation.book.yaml"))
    methods = book["methods"]
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            raise SystemExit(f"unknown method label(s) {unknown}; the book params have {list(methods)}")
        methods = {m: methods[m] for m in wanted}
    cell = {**MNIST, "methods": [m for m in MNIST["methods"] if m in methods]}
    base = C.Setup(**book["setup_options"])
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.time()
        runs = C.run_table1(base, methods, datasets=["mnist"], ipcs=[1], seeds=[seed],
                            per_dataset={"mnist": cell}, per_ipc=book["per_ipc"], overrides=SCHEDULE,
                            out_dir=args.out_dir,
                            progress=True)
        print(time.strftime("%H:%M:%S"), f"seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{m} {a:.1f}" for m, a in zip(runs.method, runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
