"""Where data lives: the user's directory, the cache, and the download mirror."""
from __future__ import annotations

import os
from pathlib import Path

from bayeslrp.errors import BayesLRPError

ENV_DATA = "BAYESLRP_DATA"
ENV_CACHE = "BAYESLRP_CACHE"
ENV_MIRROR = "BAYESLRP_MIRROR"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data directory: ``explicit``, else ``$BAYESLRP_DATA``, else ``None``.

    Raises
    ------
    BayesLRPError
        The directory is named but does not exist.
    """
    value = explicit if explicit is not None else os.environ.get(ENV_DATA) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        origin = "--data-dir" if explicit is not None else f"${ENV_DATA}"
        raise BayesLRPError(f"data directory {path} (from {origin}) does not exist: fix the path or leave it unset")
    return path


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache root: ``explicit``, else ``$BAYESLRP_CACHE``, else ``~/.cache/bayeslrp/data``.

    (``$XDG_CACHE_HOME`` replaces ``~/.cache`` when set.) The directory is not created here.
    """
    value = explicit if explicit is not None else os.environ.get(ENV_CACHE) or None
    if value is not None:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayeslrp" / "data"


def mirror(explicit: str | None = None) -> str | None:
    """A download base URL replacing the canonical ones: ``explicit``, else ``$BAYESLRP_MIRROR``.

    Files are then fetched from ``<mirror>/<dataset>/<remote file name>``.
    """
    value = explicit if explicit is not None else os.environ.get(ENV_MIRROR) or None
    return value.rstrip("/") if value else None


def candidate_urls(dataset: str, remote_name: str, canonical_bases: tuple[str, ...],
                   mirror_url: str | None) -> list[str]:
    """URLs to try for one remote file, in order."""
    if mirror_url:
        return [f"{mirror_url}/{dataset}/{remote_name}"]
    return [base + remote_name for base in canonical_bases]
