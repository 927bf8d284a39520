"""``bayeslrp run|demo|reproduce|plot|report``: run experiment grids and report on them."""
from __future__ import annotations

import math
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Optional

import typer

from ..errors import BayesLRPError
from .app import app

PROFILES = ("quick", "quick-original", "quick-fashion", "saliency", "posteriors", "paper")

RunDir = typer.Option(None, "--run-dir", help="Run directory (default: runs/<config name>).")
Device = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps or auto (default: the "
                                             "config's device).")
Quiet = typer.Option(False, "--quiet", help="No progress bars.")
ExecutorOpt = typer.Option("local", "--executor", help="local (this process) or ray (a Ray "
                                                       "cluster; RAY_ADDRESS or a local one).")
Wait = typer.Option(True, "--wait/--no-wait", help="When another run uses the run "
                                                  "directory: wait for it (default) or stop.")
Threads = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's "
                                               "choice). 1 is fastest on a busy shared "
                                               "machine.")


def packaged_config(name: str) -> str:
    """Text of a config shipped with the package (``bayeslrp/configs/<name>.yaml``)."""
    try:
        return resources.files("bayeslrp").joinpath("configs", f"{name}.yaml").read_text("utf-8")
    except (FileNotFoundError, OSError):
        raise BayesLRPError(f"the packaged config {name}.yaml is missing; reinstall "
                            f"bayeslrp") from None


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def _print_table(console, title: str, df, columns: list[str] | None = None) -> None:
    from rich.table import Table

    if df is None or df.empty:
        console.print(f"[bold]{title}[/bold]: nothing to show")
        return
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in cols:
        table.add_column(str(c), justify="right" if df[c].dtype.kind in "fiu" else "left")
    for row in df[cols].itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def print_summary(run_dir: Path) -> None:
    """Accuracies, attack success, median robustness per layer and the Mann-Whitney tests
    of a run (the rows of its ``tests.parquet``, via :func:`bayeslrp.report.summary_tables`)."""
    from rich.console import Console

    from .. import report

    console = Console(width=max(120, Console().width))
    tables = report.summary_tables(run_dir)
    _print_table(console, "Models", tables["accuracy"],
                 ["model", "method", "arch", "dataset", "test accuracy", "posterior samples",
                  "accuracy on attacked points", "diag: acceptance", "diag: divergences",
                  "diag: elbo_per_point"])
    _print_table(console, "Attacks", tables["attack_success"],
                 ["model", "attack", "attack_mode", "n_samples", "clean accuracy",
                  "adversarial accuracy", "success rate", "failed attacks"])
    robust = tables["median_robustness"]
    _print_table(console, "Median LRP robustness (per layer) and softmax robustness", robust,
                 ["attack", "rule", "model", "n_samples", "k"]
                 + [c for c in robust.columns if str(c).startswith("layer ")]
                 + ["softmax robustness"])
    tests = tables["mann_whitney"]  # every row of tests.parquet, nothing recomputed
    varying = [c for c in ("dataset", "arch", "k") if c in tests and tests[c].nunique() > 1]
    _print_table(console, "Mann-Whitney tests (one-sided, tests.parquet)", tests,
                 [c for c in ("dataset", "arch") if c in varying] + ["attack", "rule", "layer"]
                 + (["k"] if "k" in varying else [])
                 + ["comparison", "test", "median difference", "diff 95% CI", "n", "U", "p",
                    "stars"])


def _figures_and_report(run_dir: Path) -> None:
    """Draw the figures and write report.html (inside the run, before it is ``finished``)."""
    from .. import plots, report

    plots.make_all_figures(run_dir)
    report.write_report(run_dir, figures=False)


def _finish(run_dir: Path, started: float, computed: int, reused: int) -> None:
    print_summary(run_dir)
    typer.echo(f"{computed} tasks computed, {reused} reused, {time.perf_counter() - started:.1f} s")
    typer.echo(f"results: {run_dir / 'results.parquet'}")
    typer.echo(f"report:  {run_dir / 'report.html'}")


def _run(config, run_dir: Optional[Path], device: Optional[str], quiet: bool,
         threads: Optional[int], executor: str = "local", default_name: str | None = None,
         skip_unavailable: bool = False, wait: bool = True) -> None:
    from ..experiment.runner import load_configs, run_experiment

    started = time.perf_counter()
    if device is not None and executor == "local":  # one line before any config is read
        from ..devices import resolve_device

        resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise BayesLRPError(f"--threads must be at least 1; got {threads}")
        import torch

        torch.set_num_threads(threads)
    configs = load_configs(config)  # validated before anything else, for the default run dir
    target = run_dir if run_dir is not None else Path("runs") / (default_name or configs[0].name)
    result = run_experiment(configs, target, device=device, executor=executor,
                            progress=not quiet and sys.stderr.isatty(),
                            skip_unavailable=skip_unavailable, lock_wait=None if wait else 0.0,
                            on_finish=_figures_and_report)
    for line in result.plan.skipped:
        typer.echo(f"skipped {line}", err=True)
    _finish(result.run_dir, started, len(result.computed), len(result.reused))


@app.command("run")
def run(config: Path = typer.Argument(..., help="Experiment config (YAML, see docs/config.md)."),
        run_dir: Optional[Path] = RunDir, device: Optional[str] = Device,
        quiet: bool = Quiet, threads: Optional[int] = Threads,
        executor: str = ExecutorOpt, wait: bool = Wait) -> None:
    """Run an experiment grid (resuming from a run directory), then draw figures and report."""
    _run(config, run_dir, device, quiet, threads, executor, wait=wait)


@app.command("demo")
def demo(run_dir: Optional[Path] = RunDir, device: Optional[str] = Device,
         quiet: bool = Quiet,
         threads: Optional[int] = typer.Option(1, "--threads", help="CPU threads for torch. "
                                               "The demo's nets are small; one thread avoids "
                                               "oversubscribing a machine shared with other "
                                               "jobs. Raise it on an idle machine.")) -> None:
    """Run the built-in demo (MNIST, small fc2 nets: det, adv, VI, HMC; about a minute on CPU)."""
    _run(packaged_config("demo"), run_dir, device, quiet, threads, default_name="demo")


@app.command("reproduce")
def reproduce(profile: str = typer.Option(..., "--profile", help="quick, quick-original, quick-fashion, saliency, posteriors or paper."),
              run_dir: Optional[Path] = RunDir, device: Optional[str] = Device,
              quiet: bool = Quiet, threads: Optional[int] = Threads,
              executor: str = ExecutorOpt, wait: bool = Wait) -> None:
    """Run a packaged reproduction profile: quick (hours on CPU) or paper (the full grid)."""
    if profile not in PROFILES:
        raise BayesLRPError(f"--profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    _run(packaged_config(profile), run_dir, device, quiet, threads, executor,
         default_name=profile, skip_unavailable=True, wait=wait)


def _existing_run(run_dir: Path, writes: tuple[str, ...] = ()) -> Path:
    """A finished run directory whose outputs ``writes`` (file or dir names) can be written."""
    from ..fileio import check_writable

    if not (run_dir / "results.parquet").is_file():
        raise BayesLRPError(f"{run_dir} has no results.parquet; run `bayeslrp run CONFIG "
                            f"--run-dir {run_dir}` first")
    for name in writes:
        check_writable(run_dir / name, kind="dir" if "." not in name else "file",
                       what="run directory (or copy it somewhere writable)")
    return run_dir


@app.command("plot")
def plot(run_dir: Path = typer.Argument(..., help="A finished run directory.")) -> None:
    """Draw every figure a run directory supports into RUN_DIR/figures."""
    from .. import plots

    files = plots.make_all_figures(_existing_run(run_dir, ("figures",)))
    typer.echo(f"{len(files)} figure files in {run_dir / 'figures'}")


@app.command("report")
def report_command(run_dir: Path = typer.Argument(..., help="A finished run directory.")
                   ) -> None:
    """Write RUN_DIR/report.html (figures redrawn) and print the summary tables."""
    from .. import report

    path = report.write_report(_existing_run(run_dir, ("figures", "report.html")))
    print_summary(run_dir)
    typer.echo(f"report: {path}")
