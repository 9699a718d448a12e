"""scripts/condensation_mnist_units.py: the settings of a page row, from the book params or, for
a registered row not listed there yet, from PENDING on top of the MNIST row's."""
from pathlib import Path

import pytest
import yaml
from _helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_row_settings_from_the_book_params_or_pending(monkeypatch):
    mod = load_script("condensation_mnist_units")
    book = yaml.safe_load((ROOT / "params" / "fg2u_condensation.book.yaml").read_text())
    cell, methods, overrides = mod.row_settings(book, "mnist")
    assert cell == book["per_dataset"]["mnist"] and methods == book["methods"] and overrides == book["overrides"]
    monkeypatch.setattr(mod, "PENDING", {"mnist9": {"per_dataset": {"dataset": "mnist", "image_size": 9,
                                                                    "methods": ["TRGU", "(FG)²U b=2"]},
                                                    "methods": {"(FG)²U b=2": {"method": "fg2u", "options": {"b": 2}}}}})
    book = {**book, "per_dataset": {k: v for k, v in book["per_dataset"].items() if k != "mnist9"}}
    cell, methods, overrides = mod.row_settings(book, "mnist9")
    assert cell["image_size"] == 9 and cell["depth"] == book["per_dataset"]["mnist"]["depth"]
    assert methods["(FG)²U b=2"]["options"] == {"b": 2} and "TRGU" in methods
    mine = [o for o in overrides if o["dataset"] == "mnist9"]
    assert len(mine) == 1 and mine[0]["steps"] == next(o for o in book["overrides"] if o["dataset"] == "mnist")["steps"]
    with pytest.raises(SystemExit, match="neither in the book params"):
        mod.row_settings(book, "mnist7")


def test_select_methods_filters_the_row_and_its_cell_overrides():
    mod = load_script("condensation_mnist_units")
    methods = {"A": {}, "B": {}, "C": {}}
    overrides = [{"dataset": "digits", "ipc": 1, "methods": ["A", "C"]}, {"dataset": "mnist", "ipc": 1, "steps": 5}]
    cell, over = mod.select_methods({"methods": ["A", "B"]}, overrides, "digits", ["C"], methods)
    assert cell["methods"] == [] and over[0]["methods"] == ["C"] and over[1] == overrides[1]
    cell, over = mod.select_methods({}, overrides, "mnist", ["B"], methods)  # no list: every method
    assert cell["methods"] == ["B"] and over == overrides
    with pytest.raises(SystemExit, match=r"unknown method label\(s\) \['D'\]; the row digits has \['A', 'B', 'C'\]"):
        mod.select_methods({"methods": ["A", "B"]}, overrides, "digits", ["D"], methods)
