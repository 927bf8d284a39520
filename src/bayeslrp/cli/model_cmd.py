"""``bayeslrp train`` and ``bayeslrp evaluate``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from ..experiment.config import VI_INIT_STD_DEFAULT
from .app import app
from .devices import DeviceOpt, use_device

def _arch_kwargs(spec, in_shape: tuple[int, ...]) -> dict:
    """Builder options of a validated model spec (hidden and channels resolved)."""
    kwargs: dict = {"in_shape": list(in_shape)}
    for key in ("hidden", "channels"):
        if getattr(spec, key, None) is not None:
            kwargs[key] = getattr(spec, key)
    return kwargs


@app.command()
def train(
    dataset: str = typer.Option("mnist", help="mnist, fashion_mnist, cifar10, digits, synthetic"),
    arch: str = typer.Option("fc2", help="fc2, conv, resnet20"),
    method: str = typer.Option("det", help="det, adv, vi, hmc"),
    out: Path = typer.Option(..., help="Directory to save the model in."),
    hidden: Optional[int] = typer.Option(None, help="Hidden size H (default: paper's, 512/1024)."),
    channels: Optional[int] = typer.Option(None, help="conv: first-layer channels (default 32)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: paper's for arch/dataset)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: paper's)."),
    n_samples: int = typer.Option(100, help="vi/hmc: posterior samples kept."),
    vi_init_std: float = typer.Option(VI_INIT_STD_DEFAULT,
                                      help="vi: initial posterior σ of every weight."),
    vi_lr_schedule: str = typer.Option("constant", help="vi: constant (paper) or cosine."),
    adv_mode: str = typer.Option("fgsm", help="adv: fgsm, mix or pgd."),
    hmc_mode: str = typer.Option("full", help="hmc: full, blocks or subset."),
    subset: Optional[int] = typer.Option(None, help="hmc --hmc-mode subset: training points used."),
    warmup: int = typer.Option(100, help="hmc: warmup iterations (step size adaptation)."),
    seed: int = typer.Option(0, help="Seed of initialisation, batch order and sampling."),
    data_dir: Optional[Path] = typer.Option(None, help="Directory with the dataset files."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
    overwrite: bool = typer.Option(False, help="Replace a model already saved in OUT."),
) -> None:
    """Train a deterministic, adversarial, VI or HMC network and save it as an Ensemble."""
    from .. import data, nets, train as training
    from ..fileio import check_writable
    from .specs import model_config

    dev = use_device(device)
    cfg = model_config(dataset=dataset, arch=arch, method=method, seed=seed, device=device,
                       data_dir=data_dir, options={
                           "hidden": hidden, "channels": channels, "epochs": epochs, "lr": lr,
                           "n_samples": n_samples, "init_std": vi_init_std,
                           "lr_schedule": vi_lr_schedule, "adv_mode": adv_mode,
                           "mode": hmc_mode, "subset": subset, "warmup": warmup})
    spec = cfg.models[0]
    check_writable(out, kind="dir", what="--out")
    if (out / "ensemble.json").exists() and not overwrite:
        raise BayesLRPError(f"{out} already holds a model; choose another --out or pass --overwrite")
    from ..experiment.runner import data_problem

    problem = data_problem(cfg)
    if problem is not None:
        raise BayesLRPError(problem)
    x, y = data.load(dataset, "train", data_dir=data_dir)
    net = nets.build(arch, seed=seed, **_arch_kwargs(spec, x.shape[1:]))
    x, y = x.to(dev), y.to(dev)
    net = net.to(dev)
    started = time.perf_counter()
    ens = _fit(training, spec, net, x, y, seed=seed, adv_mode=adv_mode, out=out)
    ens.meta.update(dataset=dataset, train_seconds=round(time.perf_counter() - started, 2))
    ens.save(out)
    typer.echo(f"saved {ens!r} to {out} ({ens.meta['train_seconds']} s)")


def _fit(training, spec, net, x, y, *, seed: int, adv_mode: str, out: Path):
    """Train ``net`` as the validated model ``spec`` says (:mod:`bayeslrp.train`)."""
    if spec.method in ("det", "adv"):
        common = dict(epochs=spec.epochs, lr=spec.lr, seed=seed)
        if spec.method == "det":
            return training.deterministic(net, x, y, **common)
        return training.adversarial(net, x, y, mode=adv_mode, **common)
    if spec.method == "vi":
        return training.vi(net, x, y, epochs=spec.epochs, lr=spec.lr, n_samples=spec.n_samples,
                           seed=seed, init_std=spec.init_std, lr_schedule=spec.lr_schedule)
    return training.hmc(net, x, y, n_samples=spec.n_samples, warmup=spec.warmup,
                        mode=spec.mode, subset=spec.subset, seed=seed,
                        checkpoint_dir=out / "hmc_checkpoint")


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="Directory of a saved model."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one it was trained on)."),
    n_samples: Optional[int] = typer.Option(None, help="Use the first n posterior samples."),
    data_dir: Optional[Path] = typer.Option(None, help="Directory with the dataset files."),
    device: str = DeviceOpt,
) -> None:
    """Print the test accuracy of a saved model's predictive mean."""
    from .. import data
    from ..compat import check_data
    from ..ensemble import Ensemble
    from .specs import check_data_dir

    dev = use_device(device)
    check_data_dir(data_dir)
    ens = Ensemble.load(model, device=dev)
    name = dataset if dataset is not None else ens.meta.get("dataset")
    if not name:
        raise BayesLRPError("the model does not record its dataset; pass --dataset")
    n = ens.resolve_n(n_samples)
    x, y = data.load(name, "test", data_dir=data_dir)
    check_data(ens, x, y, dataset=name, n_classes=_n_classes(name), bounds=_bounds(name))
    acc = ens.accuracy(x, y, n)
    typer.echo(f"{model}: {name} test accuracy {acc:.4f} ({ens.resolve_n(n_samples)} samples)")


def _n_classes(name: str) -> int | None:
    """Classes of a built-in dataset (None for a name the catalog does not know)."""
    from .. import catalog

    return catalog.DATASETS[name].n_classes if name in catalog.DATASETS else None


def _bounds(name: str) -> tuple[float, float] | None:
    from .. import catalog

    return tuple(catalog.DATASETS[name].bounds) if name in catalog.DATASETS else None
