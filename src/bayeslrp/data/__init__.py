"""Datasets as tensors: ``x`` float32 ``[N, C, H, W]`` in [0, 1], ``y`` int64 (SPEC §1).

>>> import bayeslrp as bl
>>> x, y = bl.data.load("mnist", split="test")          # doctest: +SKIP
>>> idx = bl.data.balanced_subset(y, n=500, seed=0)      # doctest: +SKIP

Sources, in order: a user directory (``data_dir`` / ``$BAYESLRP_DATA``), the cache
(``cache_dir`` / ``$BAYESLRP_CACHE`` / ``~/.cache/bayeslrp/data``), offline copies
installed by packages, download from the canonical public locations. Everything is
verified by checksum; see ``docs/data.md``. A user's own images: :func:`from_arrays`,
:func:`from_file` (``.npz``, ``.pt``, a folder of IDX files) give a :class:`Dataset` with its
pixel bounds, which the attacks take in place of the images.
"""
from bayeslrp.data.api import fetch, info, load
from bayeslrp.data.locations import ENV_CACHE, ENV_DATA, ENV_MIRROR
from bayeslrp.data.registry import DATASETS
from bayeslrp.data.subsets import balanced_subset, original_subset
from bayeslrp.data.user import Dataset, from_arrays, from_file
from bayeslrp.data.verify import ChecksumMismatch, DataWarning

__all__ = ["DATASETS", "load", "fetch", "info", "balanced_subset", "original_subset", "ChecksumMismatch", "DataWarning",
           "ENV_DATA", "ENV_CACHE", "ENV_MIRROR", "Dataset", "from_arrays", "from_file"]
