"""Data sets for the book and tests: digits, MNIST/Fashion-MNIST, CIFAR-10/100, Omniglot, PDE
solutions.

Loaders look for files under a data root: an explicit ``root=`` argument, else the environment
variable ``METAGRAD_DATA``, else ``~/.cache/metagrad/data``; one folder per data set (``mnist/``,
``fashion-mnist/``, ``cifar-10/``, ``cifar-100/``, ``omniglot/``, ``pde/``). ``metagrad fetch
NAME`` (or :func:`fetch`) downloads and verifies them; nothing is downloaded at import time.
``metagrad fetch all`` gets every data set except CIFAR-10/100 (:data:`NOT_IN_ALL`, ≈ 330 MB,
needed only by the paper scale of data condensation): ``metagrad fetch cifar10 cifar100``.
:func:`load_cifar` reads the *binary* CIFAR archives (``cifar-10-binary.tar.gz``,
``cifar-100-binary.tar.gz``) straight from the ``.tar.gz``; the Python-pickle distribution is
never read. The scikit-learn digits (:func:`load_digits`) need no files at all.
"""
from .paths import (ENV_VAR, DEFAULT_ROOT, DataNotFoundError, ChecksumError, DataCorruptError,
                    data_root, resolve_root, find_file)
from .registry import (Resource, RESOURCES, DATASETS, NOT_IN_ALL, resources_for, file_digest,
                       verify_file)
from .fetch import fetch, download
from .splits import disjoint_split, split_classes, as_generator
from .digits import load_digits
from .mnist import load_mnist, read_idx
from .cifar import load_cifar, CIFAR_SETS
from .episodes import Task, sample_task
from .omniglot import load_omniglot, load_oneshot_runs, OmniglotData, OneShotRun, OMNIGLOT_SETS
from .pde import PDESolution, PDE_SPECS, Observations, load_pde, observation_grid

__all__ = [
    # where data lives, errors
    "ENV_VAR", "DEFAULT_ROOT", "DataNotFoundError", "ChecksumError", "DataCorruptError", "data_root",
    "resolve_root", "find_file",
    # fetching and verifying
    "Resource", "RESOURCES", "DATASETS", "NOT_IN_ALL", "resources_for", "file_digest", "verify_file",
    "fetch", "download",
    # splits and episodes
    "disjoint_split", "split_classes", "as_generator", "Task", "sample_task",
    # data sets
    "load_digits", "load_mnist", "read_idx", "load_cifar", "CIFAR_SETS", "load_omniglot",
    "load_oneshot_runs", "OmniglotData", "OneShotRun", "OMNIGLOT_SETS", "PDESolution", "PDE_SPECS", "Observations", "load_pde",
    "observation_grid",
]
