#!/usr/bin/env python3
"""The MNIST cell of the condensation page (registered in claims/fg2u_condensation.yaml,
amendments of 2026-12-02), a few methods and seeds at a time, so that a session of a few hours
finishes whole runs and a later one resumes (each (method, seed) is one cached result file under
results/fg2u_condensation/book/; an interrupted run resumes from its checkpoint every 10 outer
steps). `make book RECOMPUTE=fg2u_condensation` recomputes the whole page in one go instead.

    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "(FG)²U"
    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "RGU (full),TRGU,Hessian-free,Neumann"

Settings: params/fg2u_condensation.book.yaml (its `per_dataset: mnist` entry and the MNIST entry
of `overrides`), so the run keys are the page's own. Needs MNIST under the data root
(``metagrad fetch mnist`` says where it goes).
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import condensation as C


def main(argv=None):
    ap = argparse.ArgumentParser(description="The condensation page's MNIST runs.")
    ap.add_argument("seeds", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--methods", default=None,
                    help="comma-separated labels of the MNIST cell's methods (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/fg2u_condensation.book.yaml"))
    cell = dict(book["per_dataset"]["mnist"])
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        unknown = [m for m in wanted if m not in cell["methods"]]
        if unknown:
            raise SystemExit(f"unknown method label(s) {unknown}; the MNIST cell has {cell['methods']}")
        cell["methods"] = wanted
    base = C.Setup(**book["setup_options"])
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.time()
        runs = C.run_table1(base, book["methods"], datasets=["mnist"], ipcs=book["ipcs"], seeds=[seed],
                            per_dataset={"mnist": cell}, per_ipc=book["per_ipc"], overrides=book["overrides"],
                            out_dir="results/fg2u_condensation/book", progress=True)
        print(time.strftime("%H:%M:%S"), f"seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{m} {a:.1f}" for m, a in zip(runs.method, runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
