"""scripts/step_cost.py: the planning tool prints a positive CPU cost per outer step and a plan."""
import pytest
from _helpers import load_script


def _module():
    return load_script("step_cost")


def test_step_cost_hypercleaning_digits(capsys):
    _module().main(["hypercleaning", "--steps", "1", "--set", "datasets=[digits]",
                    "--set", "sizes={digits: [60, 60, 60]}", "--set", "methods=[none, t1t2, rmd]",
                    "--plan", "10,2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0].split()[-1] for line in out[:-1]] == ["t1t2", "rmd"]
    costs = [float(line.split(":")[1].split()[0]) for line in out[:-1]]
    assert all(c > 0 for c in costs), out
    assert out[-1].startswith("total:")


def test_step_cost_refuses_malformed_override():
    with pytest.raises(SystemExit):
        _module().main(["hypercleaning", "--set", "image_size"])
