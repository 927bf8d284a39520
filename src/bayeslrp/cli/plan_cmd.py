"""``bayeslrp plan CONFIG [--run-dir DIR]``: tasks and estimated time, before running."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from .app import app


@app.command("plan")
def plan(config: Optional[Path] = typer.Argument(None, help="Experiment config (YAML)."),
         profile: Optional[str] = typer.Option(None, "--profile", help="A packaged profile "
                                               "(quick, quick-original, quick-fashion, "
                                               "saliency, posteriors, paper) instead of CONFIG."),
         run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="A run directory: "
                                                "say what is done and what is left."),
         threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads the run "
                                               "will use (the matmul rate is measured with "
                                               "them)."),
         device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or "
                                              "auto: the device the run will use (its type "
                                              "is in the keys; default: the config's).")
         ) -> None:
    """Print the grid's tasks per stage and their estimated time on this machine."""
    from ..experiment.plan_summary import format_plan, plan_summary
    from .run_cmd import PROFILES, packaged_config

    if device is not None:  # only the value: a GPU run may be planned on another machine
        from ..devices import device_type

        device_type(device)
    if (config is None) == (profile is None):
        raise BayesLRPError(f"give either CONFIG or --profile {'|'.join(PROFILES)}")
    if profile is not None and profile not in PROFILES:
        raise BayesLRPError(f"--profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    if threads is not None:
        if threads < 1:
            raise BayesLRPError(f"--threads must be at least 1; got {threads}")
        import torch

        torch.set_num_threads(threads)
    source = packaged_config(profile) if profile is not None else config
    typer.echo(format_plan(plan_summary(source, run_dir, device=device)))
