"""Public entry points: ``load``, ``fetch``, ``info``."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from bayeslrp.data import builtin, cifar, cifar_synthetic, locations, sources, verify
from bayeslrp.data.idx import decode_idx
from bayeslrp.data.registry import (IDX_FILES, BuiltinDataset, CifarDataset, IdxDataset, check_split, get_spec,
                                    known_sha256)
from bayeslrp.errors import BayesLRPError

PathLike = str | os.PathLike | None


def _to_tensors(images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...], n: int, n_classes: int,
                what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if images.dtype != np.uint8 or labels.dtype != np.uint8 or images.shape[0] != n or labels.shape != (n,) \
            or int(np.prod(images.shape[1:])) != int(np.prod(shape)):
        raise BayesLRPError(f"{what} holds arrays {images.shape}/{labels.shape}, expected {n} images of {shape}: "
                            "replace the files")
    if n and int(labels.max()) >= n_classes:
        raise BayesLRPError(f"{what} has labels >= {n_classes}: replace the files")
    x = torch.from_numpy(images).reshape(n, *shape).to(torch.float32).div_(255)
    y = torch.from_numpy(labels).to(torch.int64)
    return x, y


def load(name: str, split: str = "test", *, data_dir: PathLike = None, cache_dir: PathLike = None,
         download: bool = True, mirror: str | None = None, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as tensors.

    Parameters
    ----------
    name
        One of :data:`DATASETS`: ``mnist``, ``fashion_mnist``, ``cifar10``, ``digits``,
        ``synthetic``, ``cifar_synthetic``.
    split
        ``"train"`` or ``"test"``.
    data_dir
        A directory with the original files (torchvision layout); default ``$BAYESLRP_DATA``.
    cache_dir
        Cache root; default ``$BAYESLRP_CACHE``, else ``~/.cache/bayeslrp/data``.
    download
        Allow downloading from the canonical public locations as the last resort.
    mirror
        Base URL replacing the canonical locations (``<mirror>/<dataset>/<file>``); default
        ``$BAYESLRP_MIRROR``.
    **options
        Only for ``synthetic``: ``n``, ``shape=(C, H, W)``, ``n_classes``, ``seed``, ``noise``;
        for ``cifar_synthetic``: ``n``, ``seed``, ``noise``.

    Returns
    -------
    x : torch.Tensor
        float32 ``[N, C, H, W]`` with pixel values in [0, 1] (uint8 / 255; digits: value / 16).
    y : torch.Tensor
        int64 ``[N]``.

    Raises
    ------
    BayesLRPError
        Unknown name or split, data not available anywhere (the message names the fix), or a
        file that fails its checksum.
    """
    spec = get_spec(name)
    check_split(split)
    if isinstance(spec, BuiltinDataset):
        if spec.name == "synthetic":
            try:
                return builtin.synthetic(split, **options)
            except TypeError as exc:
                raise BayesLRPError(f"synthetic data: {exc}; allowed options: n, shape, n_classes, seed, noise") from exc
        if spec.name == "cifar_synthetic":
            try:
                return cifar_synthetic.cifar_synthetic(split, **options)
            except TypeError as exc:
                raise BayesLRPError(f"cifar_synthetic data: {exc}; allowed options: n, seed, "
                                    "noise") from exc
        if options:
            raise BayesLRPError(f"options {sorted(options)} only apply to the 'synthetic' dataset")
        return builtin.digits(split)
    if options:
        raise BayesLRPError(f"options {sorted(options)} only apply to the 'synthetic' dataset")
    if isinstance(spec, IdxDataset):
        names = IDX_FILES[split]
        located = sources.locate_idx(spec, names, data_dir=data_dir, cache_dir=cache_dir, download=download,
                                     mirror=mirror)
        images_path, labels_path = (located.files[name] for name in names)
        images = decode_idx(verify.read_verified(images_path, spec.sha256[names[0]]), what=str(images_path))
        labels = decode_idx(verify.read_verified(labels_path, spec.sha256[names[1]]), what=str(labels_path))
        return _to_tensors(images, labels, spec.shape, spec.n(split), spec.n_classes, located.detail)
    images, labels, detail = cifar.load_cifar(spec, split, data_dir=data_dir, cache_dir=cache_dir,
                                              download=download, mirror=mirror)
    return _to_tensors(images, labels, spec.shape, spec.n(split), spec.n_classes, detail)


def fetch(name: str, data_dir: PathLike = None, cache_dir: PathLike = None, *, download: bool = True,
          mirror: str | None = None) -> str:
    """Make a dataset available in the cache, from the first source that has it.

    Returns
    -------
    str
        One line: the source used and the cache path.
    """
    spec = get_spec(name)
    if isinstance(spec, BuiltinDataset):
        return f"{spec.name}: {spec.note}; nothing to fetch"
    if isinstance(spec, CifarDataset):
        return cifar.fetch_cifar(spec, data_dir=data_dir, cache_dir=cache_dir, download=download, mirror=mirror)
    names = tuple(spec.sha256)
    located = sources.locate_idx(spec, names, data_dir=data_dir, cache_dir=cache_dir, download=download,
                                 mirror=mirror)
    if located.source == "cache":
        return f"{spec.name}: {located.detail}"
    root = locations.cache_dir(cache_dir)
    cached = sources.cache_files(spec, root)
    for name in names:
        if not verify.is_verified(cached[name], spec.sha256[name]):
            sources.store(spec, cached[name], name, bytes(verify.read_bytes(located.files[name])), located.detail)
    sources.write_manifest(spec, root, located.detail)
    return f"{spec.name}: {located.detail} -> cache {root / spec.name}"


def _verify_files(files: dict, expected: dict, algorithm: str = "sha256", gz: bool | None = None) -> str | None:
    for key, path in files.items():
        try:
            if not verify.is_verified(path, expected[key], algorithm=algorithm, gz=gz):
                verify.read_verified(path, expected[key], algorithm=algorithm, gz=gz)
        except BayesLRPError as exc:
            return str(exc)
    return None


def info(name: str, data_dir: PathLike = None, cache_dir: PathLike = None, *, check: bool = True) -> dict:
    """Describe a dataset and where it would be loaded from, without converting or downloading.

    Parameters
    ----------
    check
        Verify the checksums of files found in the user directory or cache (offline
        copies are verified when converted).

    Returns
    -------
    dict
        ``name, shape, n_train, n_test, n_classes`` and ``source`` (``user_dir``, ``cache``,
        ``offline``, ``builtin`` or ``missing``), ``path``, ``verified`` (True/False/None
        for not checked), ``problem`` (a checksum failure, else None), ``download_from``.
    """
    spec = get_spec(name)
    out: dict[str, Any] = {
        "name": spec.name, "shape": list(spec.shape) if spec.shape else None, "n_train": spec.n_train,
        "n_test": spec.n_test, "n_classes": spec.n_classes, "source": "missing", "path": None,
        "verified": None, "problem": None, "download_from": [],
    }
    if isinstance(spec, BuiltinDataset):
        out.update(source="builtin", path=spec.note)
        return out
    mirror_url = locations.mirror()
    if isinstance(spec, CifarDataset):
        out["download_from"] = locations.candidate_urls(spec.name, spec.archive, spec.mirrors, mirror_url)
        source, path = cifar.where_cifar(spec, data_dir=data_dir, cache_dir=cache_dir)
        out.update(source=source, path=str(path) if path else None)
        if check and source == "user_dir" and path.is_dir():
            files = {b: path / b for b in spec.batch_md5}
            out["problem"] = _verify_files(files, spec.batch_md5, "md5", gz=False)
            out["verified"] = out["problem"] is None
        elif check and source == "user_dir":
            out["problem"] = _verify_files({"archive": path}, {"archive": spec.archive_sha256}, gz=False)
            out["verified"] = out["problem"] is None
        elif check and source == "cache":
            manifest = cifar.read_manifest(path).get("sha256", {})
            files = {f: path / f for names in cifar.CACHE_FILES.values() for f in names}
            expected = {f: manifest.get(f, "<missing from manifest.json>") for f in files}
            out["problem"] = _verify_files(files, expected, gz=False)
            out["verified"] = out["problem"] is None
        return out

    names = tuple(spec.sha256)
    out["download_from"] = [f"{mirror_url}/{spec.name}/"] if mirror_url else list(spec.mirrors)
    root_user = locations.data_dir(data_dir)
    if root_user is not None:
        others = known_sha256()
        for files in sources.user_dir_candidates(spec, root_user, names):
            problem = _verify_files(files, spec.sha256) if check else None
            if problem is not None:
                got = {verify.file_digest(p) for p in files.values()}
                if any(others.get(g, (spec.name,))[0] != spec.name for g in got):
                    continue  # another dataset's files
            out.update(source="user_dir", path=str(next(iter(files.values())).parent), problem=problem,
                       verified=(problem is None) if check else None)
            return out
    root = locations.cache_dir(cache_dir)
    cached = sources.cache_files(spec, root)
    if all(path.is_file() for path in cached.values()):
        problem = _verify_files(cached, spec.sha256) if check else None
        out.update(source="cache", path=str(root / spec.name), problem=problem,
                   verified=(problem is None) if check else None)
        return out
    for source in spec.offline:
        found = source.locate()
        if found is not None:
            out.update(source="offline", path=f"{source.label}: {found}")
            return out
    return out
