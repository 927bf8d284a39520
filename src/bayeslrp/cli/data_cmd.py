"""``bayeslrp data fetch|info``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from .app import app

data_app = typer.Typer(no_args_is_help=True, help="Find, verify and cache the datasets.")
app.add_typer(data_app, name="data")

DataDir = typer.Option(None, "--data-dir", help="Directory with the dataset files (torchvision layout).")


@data_app.command("fetch")
def fetch(name: str = typer.Argument(..., help="mnist, fashion_mnist, cifar10, digits"),
          data_dir: Optional[Path] = DataDir) -> None:
    """Make a dataset available in the local cache, verified by checksum."""
    from .. import data

    typer.echo(data.fetch(name, data_dir=data_dir))


@data_app.command("info")
def info(name: str = typer.Argument(..., help="mnist, fashion_mnist, cifar10, digits, synthetic"),
         data_dir: Optional[Path] = DataDir) -> None:
    """Show a dataset's shape, sizes and where it was found."""
    from .. import data

    facts = data.info(name, data_dir=data_dir)
    for key, value in facts.items():
        if value is not None and key != "problem":
            typer.echo(f"{key}: {value}")
    if facts["problem"] is not None:
        raise BayesLRPError(f"{name} files at {facts['path']} fail verification: "
                            f"{facts['problem']}; run `bayeslrp data fetch {name}` again")
    if facts["source"] == "missing":
        raise BayesLRPError(f"{name} data not found; run `bayeslrp data fetch {name}` or pass "
                            f"--data-dir")
