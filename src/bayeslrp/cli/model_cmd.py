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

#: The config name of the ``--init-model`` model (the reference the method's checks judge).
INIT_NAME = "init_model"

@app.command()
def train(
    dataset: str = typer.Option("mnist", help="mnist, fashion_mnist, cifar10, digits, synthetic"),
    arch: Optional[str] = typer.Option(
        None, help="fc2, conv, resnet20 (default: --init-model's, else fc2)."),
    method: str = typer.Option(
        "det", help="A model method: det, adv, vi, hmc, ensemble, mc_dropout, laplace, "
                    "weight_noise, or one registered as a plug-in."),
    out: Path = typer.Option(..., help="Directory to save the model in."),
    hidden: Optional[int] = typer.Option(
        None, help="Hidden size H (default: --init-model's, else the paper's, 512/1024)."),
    channels: Optional[int] = typer.Option(
        None, help="conv: first-layer channels (default: --init-model's, else 32)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: paper's for arch/dataset)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: paper's)."),
    n_samples: Optional[int] = typer.Option(
        None, help="Posterior samples kept (vi, hmc, mc_dropout, laplace, weight_noise; "
                   "default 100). An ensemble's are its members: --set members=M."),
    vi_init_std: float = typer.Option(VI_INIT_STD_DEFAULT,
                                      help="vi: initial posterior σ of every weight."),
    vi_lr_schedule: str = typer.Option("constant", help="vi: constant (paper) or cosine."),
    adv_mode: str = typer.Option("fgsm", help="adv: fgsm, mix or pgd."),
    hmc_mode: str = typer.Option("full", help="hmc: full, blocks or subset."),
    subset: Optional[int] = typer.Option(None, help="hmc --hmc-mode subset: training points used."),
    warmup: int = typer.Option(100, help="hmc: warmup iterations (step size adaptation)."),
    init_model: Optional[Path] = typer.Option(
        None, help="laplace, weight_noise (required), hmc (a MAP start): the directory of a "
                   "saved det (weight_noise: or adv) model to build on."),
    settings: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE, repeatable: any key of the method's YAML model entry "
                          "(value read as YAML), e.g. members=5, p=0.2, kind=diag, sigma=0.1."),
    seed: int = typer.Option(0, help="Seed of initialisation, batch order and sampling."),
    data_dir: Optional[Path] = typer.Option(None, help="Directory with the dataset files."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto."),
    overwrite: bool = typer.Option(False, help="Replace a model already saved in OUT."),
) -> None:
    """Train a model by any registered model method and save it as an Ensemble.

    The options are validated as the YAML model entry they describe, and training calls the
    method's plug-in exactly as ``bayeslrp run`` does.
    """
    from .. import data
    from ..fileio import check_writable
    from .specs import model_config, parse_settings

    dev = use_device(device)
    extra = parse_settings(settings)
    init = _load_init(init_model, dataset) if init_model is not None else None
    reference = _init_reference(init) if init is not None else None
    arch_options = _arch_options(init, arch, hidden, channels)
    cfg = model_config(dataset=dataset, method=method, seed=seed, device=device,
                       data_dir=data_dir, init_reference=reference, settings=extra, options={
                           **arch_options, "epochs": epochs, "lr": lr,
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
    from ..experiment.stages.base import dataset_classes
    from ..experiment.stages.train import build_model_net
    from ..plugins.models import MODEL_METHODS

    x, y = data.load(dataset, "train", data_dir=data_dir)
    plugin = MODEL_METHODS.get(spec.method)()
    params = plugin.key_params(spec)
    # the grid's train stage builds this network (init seed derived from ``seed`` as there)
    net = build_model_net(params, list(x.shape[1:]), dataset_classes(dataset), seed)
    if init is not None:
        _check_init_fits(init, net)
    started = time.perf_counter()
    ens = _fit(plugin, params, spec.sample_count, net, x, y, init=init, seed=seed, device=dev,
               out=out, test_split=lambda: data.load(dataset, "test", data_dir=data_dir))
    ens.meta.update(dataset=dataset, train_seconds=round(time.perf_counter() - started, 2))
    ens.save(out)
    typer.echo(f"saved {ens!r} to {out} ({ens.meta['train_seconds']} s)")


def _load_init(path: Path, dataset: str):
    """The saved model of ``--init-model`` (verified), refused when made on another dataset."""
    from ..ensemble import Ensemble

    if not (path / "ensemble.json").is_file():
        raise BayesLRPError(f"--init-model: {path} holds no saved model (no ensemble.json)")
    init = Ensemble.load(path)
    made_on = init.meta.get("dataset")
    if made_on is not None and made_on != dataset:
        raise BayesLRPError(f"--init-model: {path} was trained on {made_on}, not {dataset}")
    return init


def _init_reference(init) -> dict:
    """The config entry standing for the ``--init-model`` model (its method and architecture),
    so the method's own ``init_model`` checks judge it as they judge a YAML one."""
    if _saved_arch(init) is None or init.meta.get("method") is None:
        raise BayesLRPError("--init-model: only a model of a built-in architecture saved with "
                            "its training method can be built on here; use a YAML config "
                            "with init_model for other models")
    entry = {"name": INIT_NAME, "method": init.meta["method"]}
    entry.update({k: v for k, v in _saved_arch(init).items() if v is not None})
    return entry


def _arch_options(init, arch, hidden, channels) -> dict:
    """``arch``/``hidden``/``channels`` as given, else ``--init-model``'s, else the defaults."""
    given = {"arch": arch, "hidden": hidden, "channels": channels}
    saved = _saved_arch(init) if init is not None else None
    if saved is not None:
        for key, value in given.items():
            if value is not None and saved[key] is not None and value != saved[key]:
                raise BayesLRPError(f"--{key} {value}: --init-model has {key} {saved[key]}")
        given = {k: saved[k] if v is None else v for k, v in given.items()}
    if given["arch"] is None:
        given["arch"] = "fc2"
    return given


def _saved_arch(ens) -> dict | None:
    """``arch``, ``hidden`` and ``channels`` of a saved model of a built-in architecture
    (None for a user architecture, whose spec does not say them)."""
    from .. import nets

    if ens.spec is None or ens.spec.get("arch") not in nets.ARCHITECTURES:
        return None
    kwargs = ens.spec.get("kwargs", {})
    return {"arch": ens.spec["arch"], "hidden": kwargs.get("hidden"),
            "channels": kwargs.get("channels")}


def _check_init_fits(init, net) -> None:
    """``--init-model``'s parameters have the shapes of ``net``, the network to train."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    saved = {k: tuple(v.shape[1:]) for k, v in init.params.items()}
    if expected != saved:
        raise BayesLRPError("--init-model: its network does not have the architecture this "
                            "command builds (arch, hidden, channels, data shape, classes)")


def _fit(method, params, n_samples: int, net, x, y, *, init, seed: int, device, out: Path,
         test_split):
    """Train ``net`` by the model ``method`` with its key ``params`` through its plug-in (as
    the run's train stage does), and check it kept ``n_samples`` samples."""
    extra = {}
    if getattr(method, "uses_test_split", False):
        x_test, y_test = test_split()
        extra = {"test_split": (x_test.to(device), y_test), "init_meta": None}
    ens = method.train(params, net.to(device), x.to(device), y.to(device),
                       init=None if init is None else init.to(device),
                       common={"seed": seed, "progress": True, "device": device},
                       scratch=out / "checkpoint", **extra)
    if ens.n_samples != n_samples:
        raise BayesLRPError(f"{params['method']} training returned {ens.n_samples} samples, "
                            f"not the {n_samples} asked for")
    return ens.to("cpu")


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
