"""The Typer application and the entry point that turns user errors into one line + exit 2."""
from __future__ import annotations

import sys
from typing import Optional

import typer
from typer.exceptions import Abort, Exit, TyperException

from ..errors import BayesLRPError

# Plain (click) help: typer's rich help shows a ``<bool>`` type next to every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Robustness of LRP explanations of deterministic and Bayesian networks.")

USER_ERROR = 2


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"bayeslrp {__version__}")
        raise Exit(0)


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", is_eager=True,
                                                 callback=_print_version,
                                                 help="Print the version and exit.")) -> None:
    """Robustness of LRP explanations of deterministic and Bayesian networks."""


def _register_commands() -> None:
    # Imported for their side effect of adding commands to ``app``.
    from . import attack_cmd, data_cmd, model_cmd  # noqa: F401
    from . import plan_cmd, run_cmd  # noqa: F401
    from . import score_cmd  # noqa: F401


def fail(message: str) -> None:
    """Print ``error: message`` on stderr as one line."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    from ..fileio import fs_error

    _register_commands()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv if argv is not None else sys.argv[1:],
                              prog_name="bayeslrp", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except BayesLRPError as exc:
        fail(str(exc))
        return USER_ERROR
    except Exit as exc:
        return exc.exit_code
    except Abort:
        fail("aborted")
        return 1
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare ``bayeslrp``: help, no error
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else exc.format_message())
            return 0
        fail(exc.format_message())
        return USER_ERROR
    except OSError as exc:  # a file-system problem no pre-check could foresee
        fail(str(fs_error(exc, "(unknown path)", "cannot be used")))
        return USER_ERROR
    except KeyboardInterrupt:
        fail("interrupted; finished stages are kept and a rerun resumes")
        return 130
