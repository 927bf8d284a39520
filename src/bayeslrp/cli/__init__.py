"""The ``bayeslrp`` command line: one Typer app, sub-commands in their own modules.

User errors (``BayesLRPError``, bad options) print one line and exit with code 2.
"""
from __future__ import annotations

import sys

from .app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
