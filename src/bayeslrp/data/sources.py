"""Find the IDX files of MNIST-like datasets: user dir, then cache, then offline, then download.

Every file is verified by the SHA-256 of its decompressed bytes against the constants
in :mod:`bayeslrp.data.checksums`. Files from offline packages and downloads are
converted once into the cache as uncompressed IDX files, which later loads read directly.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from bayeslrp.data import locations, verify
from bayeslrp.data.download import download_verified
from bayeslrp.data.registry import IdxDataset, known_sha256
from bayeslrp.errors import BayesLRPError
from bayeslrp.fileio import atomic_write_bytes, atomic_write_json


@dataclass(frozen=True)
class Located:
    """Where a dataset's files were found.

    Attributes
    ----------
    source
        ``"user_dir"`` or ``"cache"`` (offline copies and downloads are converted into the cache).
    files
        ``{canonical file name: path}``; paths may end in ``.gz`` for user directories.
    detail
        One line for humans: where the data came from.
    """

    source: str
    files: dict[str, Path]
    detail: str


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def user_dir_candidates(spec: IdxDataset, root: Path, names: tuple[str, ...]) -> list[dict[str, Path]]:
    """Directories under ``root`` (in ``spec.user_subdirs`` order) that hold all ``names``."""
    found = []
    for sub in spec.user_subdirs:
        directory = root / sub if sub else root
        files = {name: _find_file(directory, name) for name in names}
        if all(files.values()):
            found.append(files)  # type: ignore[arg-type]
    return found


def _check(path: Path, expected: str) -> None:
    if not verify.is_verified(path, expected):
        verify.read_verified(path, expected)


def find_in_user_dir(spec: IdxDataset, root: Path, names: tuple[str, ...]) -> Located | None:
    """Verified files ``names`` of ``spec`` in a user directory, or ``None`` when absent.

    A candidate directory whose files are recognisably another dataset's (e.g.
    Fashion-MNIST files at the top level when looking for MNIST) is skipped.

    Raises
    ------
    ChecksumMismatch
        A file is present but corrupt: the user must fix it (it is never silently skipped).
    """
    others = known_sha256()
    for files in user_dir_candidates(spec, root, names):
        try:
            for name, path in files.items():
                _check(path, spec.sha256[name])
        except verify.ChecksumMismatch as exc:
            owner = others.get(exc.got)
            if owner is not None and owner[0] != spec.name:
                continue  # these are another dataset's files (e.g. Fashion-MNIST at the top level)
            raise
        return Located("user_dir", files, f"user directory {next(iter(files.values())).parent}")
    return None


def cache_files(spec: IdxDataset, root: Path) -> dict[str, Path]:
    """Cache paths of all four files of ``spec`` under cache root ``root``."""
    return {name: root / spec.name / name for name in spec.sha256}


def _valid_in_cache(spec: IdxDataset, path: Path, name: str, notes: list[str]) -> bool:
    if not path.is_file():
        return False
    try:
        _check(path, spec.sha256[name])
        return True
    except BayesLRPError as exc:
        verify.forget(path)
        try:
            path.unlink()
        except OSError as unlink_error:
            raise BayesLRPError(f"corrupt cache file {path} cannot be removed ({unlink_error}): delete it") from exc
        message = f"removed corrupt cache file {path} ({exc}); rebuilding it from the next source"
        warnings.warn(message, verify.DataWarning, stacklevel=4)
        notes.append(f"cache file {path.name} was corrupt and removed")
        return False


def store(spec: IdxDataset, path: Path, name: str, blob: bytes, origin: str) -> None:
    """Check ``blob`` against the constant for ``name`` and write it atomically to the cache ``path``."""
    got = verify.digest(blob)
    if got != spec.sha256[name]:
        raise verify.ChecksumMismatch(f"{name} from {origin}", spec.sha256[name], got,
                                      advice="the source is corrupt, reinstall or replace it")
    atomic_write_bytes(path, blob)
    verify.remember(path, got)


def write_manifest(spec: IdxDataset, root: Path, origin: str) -> None:
    """Record where the cached files came from (informative; the constants are what is checked)."""
    present = {name: sha for name, sha in spec.sha256.items() if (root / spec.name / name).is_file()}
    atomic_write_json(root / spec.name / "manifest.json", {"dataset": spec.name, "source": origin, "sha256": present})


def cache_origin(spec_name: str, root: Path) -> str | None:
    """The recorded origin of a cached dataset, if any."""
    path = root / spec_name / "manifest.json"
    try:
        return str(json.loads(path.read_text())["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_offline(spec: IdxDataset, root: Path, cached: dict, names: tuple[str, ...],
                  notes: list[str]) -> Located | None:
    """Convert the first installed offline copy into the cache; None when there is none."""
    for source in spec.offline:
        found = source.locate()
        if found is None:
            notes.append(f"{source.label} not installed")
            continue
        origin = f"{source.label} {found}"
        try:
            blobs = source.extract(found)
            for name in spec.sha256:
                if name not in blobs:
                    raise BayesLRPError(f"{origin} has no {name}: {source.fix}")
                if not verify.is_verified(cached[name], spec.sha256[name]):
                    store(spec, cached[name], name, blobs[name], origin)
        except BayesLRPError as exc:
            warnings.warn(f"skipping {origin}: {exc}", verify.DataWarning, stacklevel=3)
            notes.append(f"{source.label} at {found} refused ({exc})")
            continue
        write_manifest(spec, root, origin)
        return Located("cache", {name: cached[name] for name in names}, f"cache {root / spec.name} (from {origin})")
    return None


def locate_idx(spec: IdxDataset, names: tuple[str, ...], *, data_dir=None, cache_dir=None,
               download: bool = True, mirror: str | None = None) -> Located:
    """Find verified copies of the files ``names`` of ``spec``, filling the cache if needed.

    Sources in order: user directory (``data_dir``/``$BAYESLRP_DATA``), cache, offline
    packages (converted into the cache), download (into the cache).

    Raises
    ------
    BayesLRPError
        A user-directory file fails its checksum, or no source has the data; the message
        names the command that fixes it.
    """
    notes: list[str] = []
    root_user = locations.data_dir(data_dir)
    if root_user is not None:
        located = find_in_user_dir(spec, root_user, names)
        if located is not None:
            return located
        notes.append(f"no {spec.name} files in {root_user}")

    root = locations.cache_dir(cache_dir)
    cached = cache_files(spec, root)
    missing = [name for name in names if not _valid_in_cache(spec, cached[name], name, notes)]
    if not missing:
        origin = cache_origin(spec.name, root)
        detail = f"cache {cached[names[0]].parent}" + (f" (from {origin})" if origin else "")
        return Located("cache", {name: cached[name] for name in names}, detail)
    notes.append(f"not in cache {root / spec.name}")

    located = _from_offline(spec, root, cached, names, notes)
    if located is not None:
        return located

    if download:
        mirror_url = locations.mirror(mirror)
        for name in missing:
            remote = f"{name}.gz"
            part = root / spec.name / ".partial" / f"{remote}.part"
            expected = spec.sha256[name]

            def check(path: Path, expected: str = expected, remote: str = remote) -> None:
                got = verify.file_digest(path, gz=True)
                if got != expected:
                    raise verify.ChecksumMismatch(f"downloaded {remote}", expected, got,
                                                  advice="refusing it")

            try:
                download_verified(locations.candidate_urls(spec.name, remote, spec.mirrors, mirror_url), part,
                                  check, what=remote)
            except BayesLRPError as exc:
                notes.append(str(exc))
                break
            store(spec, cached[name], name, bytes(verify.read_bytes(part, gz=True)), "download")
            part.unlink(missing_ok=True)
        else:
            write_manifest(spec, root, "download")
            return Located("cache", {name: cached[name] for name in names}, f"cache {root / spec.name} (downloaded)")
    else:
        notes.append("download disabled")
    raise BayesLRPError(f"{spec.name} is not available ({'; '.join(notes)}): {spec.fix}")
