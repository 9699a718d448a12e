r"""Data hyper-cleaning (Table 2 of the generalized greedy paper, PAPERS.md part B.3).

A training set whose labels are replaced, with probability ``p_noise``, by a random *other*
class; one hyperparameter per training example, its weight :math:`\sigma(\alpha_i)`:

.. math::
    L_{train}(w, \alpha) = \frac1n \sum_i \sigma(\alpha_i)\,\mathrm{CE}(f_w(x_i), \tilde y_i),
    \qquad L_{val}(w) = \mathrm{CE}(f_w(X_{val}), y_{val}) \text{ (clean)},

inner loop: T steps of full-batch momentum SGD from a fixed (seeded) initialisation; outer
loop: Adam on α from α = 0 (all weights ½). After the outer loop the network is retrained
with the learned weights (the same T inner steps) and scored on the validation set and on a
disjoint, held-out test set; the AUROC of α for separating clean from corrupted examples says
how well the weights find the corrupted labels.

Data: MNIST's 10 000-image test split (the only MNIST split in the shared data folder), cut
by :func:`metagrad.data.disjoint_split` into train / validation / test per seed, or the
embedded scikit-learn digits. One result file per (dataset, p_noise, method, seed).
"""
from __future__ import annotations

from .setup import METHODS, CORE, METRICS, PAPER_TABLE, HyperCleaningConfig, load_dataset, corrupt_labels, Instance, _uniform, init_params, net, inner_loss, outer_loss, build, evaluate  # noqa: F401
from .experiment import _options, _tag, label, _r, train, HyperCleaningResult, _run_cfg, _unavailable, run, _choose_gamma, _reported, expected_cost, cost_check, noise_check  # noqa: F401
from .report import _summary, paper_table, display_table, plot_accuracy, plot_curves, setup_table, timings, facts, plot_equal_compute  # noqa: F401

__all__ = ["HyperCleaningConfig", "HyperCleaningResult", "Instance", "PAPER_TABLE", "paper_table", "load_dataset", "corrupt_labels", "build", "evaluate", "train", "run", "display_table", "cost_check", "noise_check", "plot_accuracy", "plot_curves", "plot_equal_compute", "setup_table", "facts", "expected_cost"]
