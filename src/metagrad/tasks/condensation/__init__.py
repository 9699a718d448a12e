r"""Data condensation (Shen et al. 2024, "Memory-Efficient Gradient Unrolling for Large-Scale
Bi-level Optimization", §5.1, Table 1): learn a few synthetic images per class.

The bilevel problem. α = the synthetic images ``α["images"]`` (``C·IPC × channels × H × W``;
their labels are fixed, IPC per class); w = the weights of a small ConvNet, drawn afresh at
every outer step from a seed (:math:`w_0` does not depend on α). The inner loop trains the
net on the synthetic images for T steps of plain SGD; the outer loss is the cross-entropy of
the trained net on a batch of *real* images:

.. math:: L_{train}(w, \alpha) = \mathrm{CE}(f_w(\alpha), y_{syn}), \qquad
          F(\alpha) = \mathrm{CE}(f_{w_T(\alpha)}(x_{real}), y_{real}).

After each outer update the images are clipped to the valid pixel range [0, 1] (``project``).
Evaluation: a fresh net is trained on the condensed images for E steps; test accuracy on
held-out real images. The "whole data" upper bound trains the same net on the whole
real-train pool.

Three experiments, each one library call of a notebook:

* :func:`run_table1` — Table 1 (test accuracy per data set, IPC, method, seed);
* :func:`gradient_quality` — cosine similarity of every estimator with the exact (``rmd``)
  hypergradient along one condensation run, against measured cost and memory;
* :func:`two_phase` — a cheap biased estimator, (FG)²U, and cheap-then-(FG)²U at an equal
  wall-clock budget.

Every (data set, IPC, method, seed) run is a :func:`metagrad.results.cached` JSON file and its
outer loop checkpoints (:func:`metagrad.loops.outer_loop`) under ``checkpoints/``.
"""
from __future__ import annotations

from .setup import _M, _ROWS, PAPER_TABLE1, PAPER_FIGURE1, PAPER_NAMES, _CIFAR, resolve_device, Setup, Phase, CondensationData, _check_available, data_source, load_data  # noqa: F401
from .model import convnet_init, convnet, _losses, _mix, _net_init, labels_of, _inner_optimizer, make_problem, initial_images, clip, _accuracy, evaluate, whole_data_accuracy  # noqa: F401
from .run import _checkpoint_dir, _run_phases, _history, condense, _setup_for, _phases_for, _slug, real_dataset, row_label, row_labels, run_table1  # noqa: F401
from .quality import _cos, fg2u_expected_cosine, _measure, gradient_quality, two_phase_schedules, schedule_table, two_phase  # noqa: F401
from .report import table1_summary, plot_table1, quality_summary, format_quality, plot_quality, at_budget, two_phase_summary, plot_two_phase, plot_images, plot_equal_compute, progress, plot_progress, progress_md, compute_minutes, sensitivity_md, adaptation_gains, adaptation_md, n_pixels, directions_table, directions_md, paired_cosine_gap, compare_md, crossings, crossings_md, time_per_product_ratio, verdict_of, jvp_vjp_md, lemma_md, recipe_md  # noqa: F401

__all__ = ["PAPER_TABLE1", "PAPER_FIGURE1", "Setup", "Phase", "CondensationData", "data_source", "load_data", "resolve_device", "convnet_init", "convnet", "labels_of", "make_problem", "initial_images", "clip", "evaluate", "whole_data_accuracy", "condense", "real_dataset", "row_label", "row_labels", "run_table1", "gradient_quality", "fg2u_expected_cosine", "two_phase", "two_phase_schedules", "table1_summary", "plot_table1", "plot_images", "quality_summary", "format_quality", "plot_quality", "schedule_table", "at_budget", "two_phase_summary", "plot_two_phase", "plot_equal_compute", "progress", "plot_progress", "progress_md", "compute_minutes", "sensitivity_md", "adaptation_gains", "adaptation_md", "n_pixels", "directions_table", "directions_md", "paired_cosine_gap", "compare_md", "crossings", "crossings_md", "time_per_product_ratio", "verdict_of", "jvp_vjp_md", "lemma_md", "recipe_md"]
