"""``bayeslrp attack``: attack a saved model on balanced test points, save points and table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from .app import app
from .devices import DeviceOpt, use_device


@app.command()
def attack(
    model: Path = typer.Option(..., help="Directory of a saved model."),
    method: str = typer.Option("fgsm", help="A registered attack: fgsm, pgd, topk, region, beta."),
    out: Path = typer.Option(..., help="Directory for adversarial.safetensors and attack.parquet."),
    n_points: int = typer.Option(500, help="Balanced test points (n/10 per class)."),
    eps: float = typer.Option(0.2, help="L-infinity radius in pixel units."),
    mode: str = typer.Option("expected_gradient",
                             help="fgsm/pgd against an ensemble: expected_gradient, predictive, "
                                  "per_sample_average."),
    n_samples: Optional[int] = typer.Option(None, help="Posterior samples used (default all)."),
    steps: Optional[int] = typer.Option(None, help="Iterations (default: the attack's)."),
    rule: str = typer.Option("epsilon", help="Saliency attacks: LRP rule explained."),
    seed: int = typer.Option(0, help="Seed of the point subset and of the attack."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the model's)."),
    data_dir: Optional[Path] = typer.Option(None, help="Directory with the dataset files."),
    overwrite: bool = typer.Option(False, help="Replace results already in OUT."),
    device: str = DeviceOpt,
) -> None:
    """Attack a saved model; save the adversarial points (safetensors) and a per-image table."""
    import pandas as pd

    from .. import attacks, data
    from ..ensemble import Ensemble
    from ..compat import check_data
    from ..fileio import check_writable
    from .model_cmd import _bounds, _n_classes
    from .specs import attack_options, data_options

    dev = use_device(device)
    params = attack_options(method, {"eps": eps, "n_samples": n_samples, "steps": steps},
                            where_used={"mode": mode, "rule": rule})
    check_writable(out, kind="dir", what="--out")
    if (out / "attack.parquet").exists() and not overwrite:
        raise BayesLRPError(f"{out} already holds attack results; choose another --out or pass --overwrite")
    ens = Ensemble.load(model, device=dev)
    n = ens.resolve_n(n_samples)
    name = dataset if dataset is not None else ens.meta.get("dataset")
    if not name:
        raise BayesLRPError("the model does not record its dataset; pass --dataset")
    data_options(name, n_points, seed, data_dir)
    x_all, y_all = data.load(name, "test", data_dir=data_dir)
    check_data(ens, x_all, y_all, dataset=name, n_classes=_n_classes(name), bounds=_bounds(name))
    points = data.balanced_subset(y_all, n=n_points, seed=seed)
    x, y = x_all[points], y_all[points]
    params["n_samples"] = n
    x_adv = attacks.run_attack(ens, x.to(dev), y.to(dev), method, seed=seed,
                               **{k: v for k, v in params.items() if k != "method"}).cpu()
    result = attacks.evaluate(ens, x, x_adv, y, n_samples=n)
    table = pd.DataFrame({"point": points.numpy(), "label": y.numpy(),
                          **{k: v.numpy() for k, v in result.items()}})
    _save(out, table, {"x": x.contiguous(), "x_adv": x_adv.detach().contiguous().cpu(),
                       "points": points.contiguous(), "y": y.contiguous()})
    clean = float(result["correct_clean"].float().mean())
    success = float(result["success"].float().sum() / result["correct_clean"].float().sum().clamp(min=1))
    typer.echo(f"{method} on {n_points} {name} points with {n} samples: clean accuracy {clean:.3f}, "
               f"attack success {success:.3f}, median softmax robustness "
               f"{float(result['softmax_robustness'].median()):.3f}; saved to {out}")


def _save(out: Path, table, tensors: dict) -> None:
    """Write the attacked points (safetensors + its sha256) and the per-image table."""
    from safetensors.torch import save as st_save

    from ..fileio import atomic_write_bytes, sha256_bytes

    blob = st_save(tensors)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "adversarial.safetensors", blob)
    atomic_write_bytes(out / "adversarial.safetensors.sha256", sha256_bytes(blob).encode())
    atomic_write_bytes(out / "attack.parquet", table.to_parquet(index=False))
