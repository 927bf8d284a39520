"""The Typer application and the entry point that turns user errors into one line + exit 2."""
from __future__ import annotations

import sys

import typer
from typer.exceptions import Abort, Exit, TyperException

from ..errors import BayesLRPError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Robustness of LRP explanations of deterministic and Bayesian networks.")

USER_ERROR = 2


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
        fail(exc.format_message())
        return USER_ERROR
    except KeyboardInterrupt:
        fail("interrupted; finished stages are kept and a rerun resumes")
        return 130
