"""What the CLI failure tests share: a tiny valid grid, an in-process CLI call, and the check
that a failure is exactly one ``error:`` line with exit code 2."""
from __future__ import annotations

import contextlib
import io

from bayeslrp.cli import main

#: A grid that runs in seconds on the digits dataset; tests mutate copies of it.
TINY = {
    "name": "tiny", "seed": 0,
    "data": {"dataset": "digits", "n_points": 10},
    "models": [{"name": "m", "method": "det", "arch": "fc2", "hidden": 4, "epochs": 1}],
    "attacks": [{"method": "fgsm"}],
    "explain": {"n_samples": [1]},
}


def call(argv) -> tuple[int, str, str]:
    """Run the CLI in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code: int, err: str) -> str:
    """The single ``error:`` line of a failed call (exit 2, no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]
