#!/usr/bin/env python3
"""The MNIST rows of the condensation page (registered in claims/fg2u_condensation.yaml,
amendments of 2026-12-02), a few methods and seeds at a time, so that a session of a few hours
finishes whole runs and a later one resumes (each (row, method, seed) is one cached result file
under results/fg2u_condensation/book/; an interrupted run resumes from its checkpoint every 10
outer steps). `make book RECOMPUTE=fg2u_condensation` recomputes the whole page in one go instead.

    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "(FG)²U"
    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1,2,3,4 --methods "RGU (full),TRGU,Hessian-free,Neumann"
    PYTHONPATH=src python scripts/condensation_mnist_units.py 0,1 --row mnist16

Settings: params/fg2u_condensation.book.yaml (its `per_dataset` entry of the row and the row's
entry of `overrides`), so the run keys are the page's own. A registered row that the book params
do not list yet (they list only computed rows) is taken from PENDING below, which inherits the
MNIST row's settings. Needs MNIST under the data root (``metagrad fetch mnist`` says where it goes).
"""
import argparse
import time

import torch
import yaml

from metagrad.tasks import condensation as C

#: Registered rows not yet in the book params: {row: {"per_dataset": changes to the MNIST row's
#: per_dataset entry, "methods": extra method definitions}}.
PENDING: dict = {}   # mnist16 was held here until its 5 seeds were computed; it is in the params now


def row_settings(book: dict, row: str) -> tuple[dict, dict, list]:
    """(per_dataset entry, method definitions, overrides) of ``row`` from the book params, or
    from PENDING on top of the MNIST row's."""
    methods, overrides = dict(book["methods"]), list(book["overrides"])
    if row in book["per_dataset"]:
        return dict(book["per_dataset"][row]), methods, overrides
    if row not in PENDING:
        raise SystemExit(f"row {row!r} is neither in the book params' per_dataset "
                         f"({sorted(book['per_dataset'])}) nor pending ({sorted(PENDING)})")
    cell = {**book["per_dataset"]["mnist"], **PENDING[row]["per_dataset"]}
    methods.update(PENDING[row]["methods"])
    overrides += [{**o, "dataset": row} for o in book["overrides"] if o.get("dataset") == "mnist"]
    return cell, methods, overrides


def select_methods(cell: dict, overrides: list, row: str, wanted: list, methods: dict) -> tuple[dict, list]:
    """Keep only the ``wanted`` labels in the row's methods and in its overrides that name a
    cell's methods; a label the row does not run is refused, naming the row's labels."""
    mine = [o for o in overrides if o.get("dataset") == row and "methods" in o]
    have = list(dict.fromkeys([*cell.get("methods", methods), *(m for o in mine for m in o["methods"])]))
    unknown = [m for m in wanted if m not in have]
    if unknown:
        raise SystemExit(f"unknown method label(s) {unknown}; the row {row} has {have}")
    cell = {**cell, "methods": [m for m in cell.get("methods", methods) if m in wanted]}
    overrides = [{**o, "methods": [m for m in o["methods"] if m in wanted]} if o in mine else o for o in overrides]
    return cell, overrides


def main(argv=None):
    ap = argparse.ArgumentParser(description="The condensation page's MNIST rows (or any row), a few seeds at a time.")
    ap.add_argument("seeds", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--row", default="mnist", help="the page's row (default mnist; mnist16: 16×16, b = 32)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated labels of the row's methods (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    book = yaml.safe_load(open("params/fg2u_condensation.book.yaml"))
    cell, methods, overrides = row_settings(book, args.row)
    if args.methods:
        cell, overrides = select_methods(cell, overrides, args.row, [m.strip() for m in args.methods.split(",")],
                                         methods)
    base = C.Setup(**book["setup_options"])
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.time()
        runs = C.run_table1(base, methods, datasets=[args.row], ipcs=book["ipcs"], seeds=[seed],
                            per_dataset={args.row: cell}, per_ipc=book["per_ipc"], overrides=overrides,
                            out_dir="results/fg2u_condensation/book", progress=True)
        print(time.strftime("%H:%M:%S"), f"{args.row} seed {seed}: {time.time() - t:.0f} s;",
              ", ".join(f"{m} {a:.1f}" for m, a in zip(runs.method, runs.test_acc)), flush=True)


if __name__ == "__main__":
    main()
