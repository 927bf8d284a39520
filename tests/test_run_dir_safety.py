"""A run directory is never corrupted by the user's situation (issue 16).

Two concurrent runs on one directory (the lock), a directory made read-only mid-run (as
``nobody``: root ignores modes), killed runs, corrupt artifacts, and the modes of what is
written (the user's umask).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

import bayeslrp as bl

from cli_cases import TINY, call
from cli_cases import assert_one_line as one_line
from unprivileged import SRC, nobody_ids, run_as_nobody


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.startswith(".tmp-") or
            p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def single_run(config, tmp_path_factory) -> Path:
    """The reference: one uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    code, _, err = call(["run", config, "--run-dir", run_dir, "--quiet"])
    assert code == 0, err
    return run_dir


_SLOW_TASKS = """
import time
from bayeslrp.experiment import manifest as _manifest
_record = _manifest.ManifestMixin.record_stage
def _slow_record(self, *args, **kwargs):
    _record(self, *args, **kwargs)
    time.sleep(0.4)  # keeps the lock long enough for the second run to meet it
_manifest.ManifestMixin.record_stage = _slow_record
"""


def _cli_process(argv, slow: bool = False) -> subprocess.Popen:
    """``bayeslrp ARGV`` in its own process (``slow``: each task takes 0.4 s longer)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    code = ((_SLOW_TASKS if slow else "")
            + "\nimport sys; from bayeslrp.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_running(run_dir: Path, first: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if first.poll() is not None:
            pytest.fail(f"the first run ended before the second started: {first.stderr.read()}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            if manifest(run_dir)["runs"][-1]["status"] == "running":
                return
        time.sleep(0.05)
    pytest.fail("the first run never started")


def test_two_concurrent_runs_one_waits_both_recorded_results_identical(config, single_run,
                                                                       tmp_path):
    run_dir = tmp_path / "run"
    first = _cli_process(["run", config, "--run-dir", run_dir, "--quiet"], slow=True)
    _wait_until_running(run_dir, first)
    # --no-wait: stops at once, in one line naming the holder, and records nothing
    code, _, err = call(["run", config, "--run-dir", run_dir, "--no-wait", "--quiet"])
    line = one_line(code, err)
    assert "in use by another bayeslrp run" in line and f"pid {first.pid}" in line
    # the default: waits for the holder, then reuses everything it computed
    second = _cli_process(["run", config, "--run-dir", run_dir, "--quiet"])
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "waiting for it" in err2 and f"pid {first.pid}" in err2, err2
    runs = manifest(run_dir)["runs"]
    assert [r["pid"] for r in runs] == [first.pid, second.pid]
    assert [r["status"] for r in runs] == ["finished", "finished"]
    assert runs[1]["stages"] and not any(s["computed"] for s in runs[1]["stages"])
    assert "0 tasks computed" in out2
    assert (run_dir / "results.parquet").read_bytes() == \
        (single_run / "results.parquet").read_bytes()


_READ_ONLY_AFTER_FIRST_TASK = """
from bayeslrp.experiment import manifest as _manifest
_record = _manifest.ManifestMixin.record_stage
def _record_then_lock_out(self, *args, **kwargs):
    _record(self, *args, **kwargs)
    if kwargs.get("computed"):
        for path in [self.root, *(p for p in self.root.rglob("*") if p.is_dir())]:
            path.chmod(0o555)
_manifest.ManifestMixin.record_stage = _record_then_lock_out
"""


@pytest.mark.skipif(nobody_ids() is None, reason="needs root (to drop to nobody) and nobody")
def test_run_dir_made_read_only_mid_run(config, single_run):
    base = Path(tempfile.mkdtemp(prefix="bayeslrp-nobody-"))
    try:
        os.chmod(base, 0o755)
        home = base / "home"
        home.mkdir()
        os.chown(home, *nobody_ids())
        shutil.copy(config, home / "tiny.yaml")
        run_dir = home / "run"
        argv = ["run", str(home / "tiny.yaml"), "--run-dir", str(run_dir), "--quiet"]
        [(code, _, err)] = run_as_nobody([argv], home, hook=_READ_ONLY_AFTER_FIRST_TASK,
                                         warmup=[["run", str(config), "--run-dir",
                                                  str(base / "warm"), "--quiet"]])
        line = one_line(code, err)
        assert "not writable" in line or "Permission denied" in line, line
        assert manifest(run_dir)["runs"][-1]["status"] == "interrupted"
        for path in [run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())]:
            path.chmod(0o755)  # the user fixes the permissions and runs again
        code, _, err = call(argv)
        assert code == 0, err
        assert leftovers(run_dir) == []
        assert [r["status"] for r in manifest(run_dir)["runs"]] == ["interrupted", "finished"]
        assert (run_dir / "results.parquet").read_bytes() == \
            (single_run / "results.parquet").read_bytes()
    finally:
        shutil.rmtree(base)


def test_a_killed_run_is_marked_interrupted_at_the_next_start(tmp_path):
    from bayeslrp.experiment.store import Store

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = Store(tmp_path)
    store.begin_run()
    record = manifest(tmp_path)
    record["runs"][0]["pid"] = gone.pid  # as if that process had been killed with -9
    (tmp_path / "manifest.json").write_text(json.dumps(record))
    Store(tmp_path).begin_run()
    assert [r["status"] for r in manifest(tmp_path)["runs"]] == ["interrupted", "running"]


def test_a_kill_during_the_report_is_not_recorded_finished(config, tmp_path):
    from bayeslrp.experiment.runner import run_experiment

    def killed(run_dir):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "run", on_finish=killed)
    assert manifest(tmp_path / "run")["runs"][-1]["status"] == "interrupted"
    assert not (tmp_path / "run" / "report.html").exists()


def test_a_corrupt_artifact_is_recomputed_with_a_warning(config, single_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(single_run, run_dir)
    victim = next(p for p in sorted((run_dir / "artifacts" / "attack").rglob("*"))
                  if p.is_file() and p.suffix == ".safetensors")
    victim.write_bytes(victim.read_bytes()[:-7] + b"garbage")
    code, out, err = call(["run", config, "--run-dir", run_dir, "--quiet"])
    assert code == 0, err
    assert "warning: artifact attack/" in err and "computed again" in err
    assert (run_dir / "results.parquet").read_bytes() == \
        (single_run / "results.parquet").read_bytes()


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o027, 0o640, 0o750)])
def test_outputs_follow_the_umask(config, tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        code, _, err = call(["run", config, "--run-dir", tmp_path / "run", "--quiet"])
        assert code == 0, err
        code, _, err = call(["train", "--dataset", "digits", "--hidden", "4", "--epochs", "1",
                             "--out", tmp_path / "model"])
        assert code == 0, err
    finally:
        os.umask(old)
    modes = {**_modes(tmp_path / "run"), **{f"model/{k}": v
                                           for k, v in _modes(tmp_path / "model").items()}}
    for name in ("results.parquet", "report.html", "manifest.json", "model/ensemble.json",
                 "model/params.safetensors"):
        assert modes[name] == file_mode, (name, oct(modes[name]))
    wrong = {k: oct(v) for k, v in modes.items()
             if v not in (file_mode, dir_mode)}
    assert wrong == {}


def test_the_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from bayeslrp.experiment.lock import LOCK_NAME, RunDirLock, lock_holder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / LOCK_NAME).write_text(f"pid {gone.pid} on some-host\n")
    with RunDirLock(tmp_path, wait=0):  # no waiting: a dead holder holds nothing
        assert f"pid {os.getpid()}" in lock_holder(tmp_path)
