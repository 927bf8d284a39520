"""Run CLI invocations as the unprivileged ``nobody`` user (root ignores file modes).

The interpreter lives under ``/root`` here, which ``nobody`` cannot enter, so the child starts
as root, imports every module the CLI may need, then drops to ``nobody`` with
``os.setgid``/``os.setuid`` and runs the cases. One child runs a whole batch of invocations
and reports ``[exit code, stdout, stderr]`` per case as JSON on its stdout.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_CHILD = r"""
import contextlib, importlib, io, json, os, pkgutil, sys
sys.path.insert(0, {src!r})
import bayeslrp
for info in pkgutil.walk_packages(bayeslrp.__path__, "bayeslrp."):
    if "ray" in info.name:
        continue
    try:
        importlib.import_module(info.name)
    except Exception:
        pass
import pandas, pyarrow, pyarrow.parquet, safetensors.torch, matplotlib
matplotlib.use("Agg")
import encodings
for info in pkgutil.iter_modules(encodings.__path__, "encodings."):
    try:
        importlib.import_module(info.name)
    except Exception:
        pass
import xml.etree.ElementTree, xml.etree.cElementTree, importlib.readers, importlib.resources, matplotlib.pyplot, json.decoder, uuid, tempfile, shutil, fcntl, socket, platform
from bayeslrp.cli import main
from bayeslrp.cli.app import _register_commands
_register_commands()
import torch._dynamo
for argv in {warmup!r}:  # as root, so that every lazy import is done before the drop
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)
os.setgid({gid}); os.setuid({uid})
os.umask(0o022)
exec({hook!r})
results = []
for argv in {cases!r}:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # reported, never hidden
            import traceback
            traceback.print_exc()
            code = -1
    results.append([code, out.getvalue(), err.getvalue()])
sys.__stdout__.write("\n@@RESULTS@@" + json.dumps(results))
"""


def nobody_ids() -> tuple[int, int] | None:
    """``(uid, gid)`` of ``nobody``, or None when there is no such user or we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def run_as_nobody(cases: list[list[str]], cwd: Path, hook: str = "",
                  warmup: list[list[str]] = (), timeout: float = 300
                  ) -> list[tuple[int, str, str]]:
    """Run each argv of ``cases`` through ``bayeslrp.cli.main`` as ``nobody`` in ``cwd``.

    ``warmup``: invocations run as root first (a tiny run loads every lazily imported
    module); ``hook``: Python code run after the drop, before the cases.
    """
    ids = nobody_ids()
    assert ids is not None, "needs root and a nobody user"
    uid, gid = ids
    script = _CHILD.format(src=str(SRC), uid=uid, gid=gid, hook=hook, cases=cases,
                           warmup=[list(a) for a in warmup])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "MPLCONFIGDIR": str(cwd / ".mpl"),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    marker = done.stdout.rfind("@@RESULTS@@")
    assert marker >= 0, f"child failed ({done.returncode}): {done.stderr[-3000:]}"
    return [tuple(r) for r in json.loads(done.stdout[marker + len("@@RESULTS@@"):])]
