r"""Few-shot meta-learning with warp layers (Yakovlev 2024, generalized greedy hypergradient,
ICLR-2025 version, Table 3; and the 10-shot table of the slides).

The bilevel problem (WarpGrad-style). A 6-layer CNN; its *even* conv layers 2, 4, 6 are the
hyperparameters α (shared by all tasks, never adapted in the inner loop); its odd conv layers
1, 3, 5 and the linear head are the inner parameters w, adapted to each N-way K-shot task:

.. math:: L_{train}(w, \alpha) = \mathrm{CE}(f_{w,\alpha}(x_{support}), y_{support}), \qquad
          F(\alpha) = \mathbb{E}_{task}\, \mathrm{CE}(f_{w_T(\alpha),\alpha}(x_{query}), y_{query}).

Architecture (the paper gives only "6 conv layers of 32 channels"; these choices are ours):
every layer is a 3×3 convolution with padding 1 followed by ReLU; a 2×2 max-pool follows each
hyper layer (2, 4, 6), so 28×28 → 14 → 7 → 3 and the head sees 3·3·width features. No
normalisation layer (everything stays a pure function of (w, α)). ``depth`` may be any even
number (the smoke scale uses 2: one inner, one hyper layer).

Initialisation: for each seed, α₀ (layers 2, 4, 6) and the odd layers of w₀ are drawn once
(Kaiming-normal, zero biases) and shared by every task of that seed; the head starts at zero
(uniform prediction, so the head works for any number of ways, e.g. the 20-way official runs).
w₀ is *not* learned: α contains exactly the even conv layers.

Meta-batch: each outer step samples ``meta_batch`` tasks from the meta-train classes and stacks
them into one :class:`~metagrad.BilevelProblem` whose w holds every task's copy of the inner
parameters (a leading task dimension). The inner loss is the *sum* of the per-task mean
cross-entropies, so each task's weights follow exactly their own full-batch momentum SGD; the
outer loss is the *mean* of the per-task query losses, so any estimator's hypergradient is the
mean of the per-task hypergradients (the tasks are independent: the Jacobians are block
diagonal). For ``fg2u`` the random directions are shared by the tasks of a step.

Evaluation: accuracy on episodes from the held-out 20 % of classes (w₀ adapted T steps on the
support, accuracy on the queries); γ of the greedy method is chosen on a separate set of
held-out episodes (``select`` episodes) and reported on fresh ones (``test`` episodes); and the
official 20-way one-shot runs (``all_runs.zip``, evaluation alphabets, never seen in training).

Data: Omniglot as present under the data root — here the two ``images_background_small`` zips,
242 characters from 8 alphabets after de-duplication, not the paper's 1 623 characters. With no
Omniglot, ``data="auto"`` falls back to scikit-learn's digits (10 classes, embedded) at 28×28.
"""
from __future__ import annotations

from .setup import _LABELS, METHODS, CELL_FIELDS, _paper, PAPER_1SHOT, PAPER_10SHOT, resolve_device, FewShotConfig, FewShotData, load_data  # noqa: F401
from .model import _is_hyper, init_params, forward, task_logits, _task_ce, inner_loss, outer_loss, stack_tasks, make_problem, _accuracy_of, training_tasks, held_out_episodes, episode_accuracy, oneshot_accuracy  # noqa: F401
from .experiment import _options, _tag, train, FewShotResult, _label, _run_keys, cached_data, run, _choose_gamma, reported, _table  # noqa: F401
from .report import setting_label, cell_table, cell_comparison, display_table, _ints, plot_comparison, expected_cost, cost_check, timings, setup_table, summary, _chance_sentence, _oneshot_sentence, plot_curves, plot_equal_compute  # noqa: F401

__all__ = ["PAPER_1SHOT", "PAPER_10SHOT", "FewShotConfig", "FewShotData", "FewShotResult", "METHODS", "load_data", "init_params", "forward", "task_logits", "stack_tasks", "make_problem", "training_tasks", "held_out_episodes", "episode_accuracy", "oneshot_accuracy", "train", "run", "plot_comparison", "display_table", "setting_label", "cell_table", "cell_comparison", "cost_check", "expected_cost", "timings", "setup_table", "summary", "plot_curves", "plot_equal_compute", "resolve_device"]
