"""Seeds derived from a base seed and a key, so that any stream is reproducible on its own."""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and ``keys`` (SHA-256 of their text), e.g. ``(seed, "draw", j)``.

    Two different key tuples give unrelated streams; the same tuple always gives the same seed.
    """
    text = ":".join(["bayeslrp", str(int(seed)), *map(str, keys)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
