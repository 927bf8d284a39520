"""Shared fixtures: small, seeded data and networks so the default suite stays fast."""
from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
NO_CUDA_REASON = "needs CUDA; none on this machine (run `make test-gpu` on a GPU machine)"


@pytest.hookimpl(trylast=True)  # after ``-m`` deselection: count only the tests that would run
def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip on a machine without CUDA (one summary line says so)."""
    if CUDA:
        return
    skip = pytest.mark.skip(reason=NO_CUDA_REASON)
    gpu = [item for item in items if "gpu" in item.keywords]
    for item in gpu:
        item.add_marker(skip)
    config.stash[_GPU_SKIPPED] = len(gpu)


_GPU_SKIPPED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = config.stash.get(_GPU_SKIPPED, 0)
    if skipped:
        terminalreporter.write_line(f"{skipped} GPU tests skipped: no CUDA device on this "
                                    f"machine")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """``cpu``, and ``cuda`` (marked ``gpu``) when present, with torch's flags set for it."""
    from bayeslrp.devices import configure_torch

    dev = torch.device(request.param)
    configure_torch(dev)
    return dev


@pytest.fixture
def cuda():
    """The CUDA device, for tests whose reference is the CPU itself (mark them ``gpu``)."""
    if not CUDA:
        pytest.skip(NO_CUDA_REASON)
    from bayeslrp.devices import configure_torch

    dev = torch.device("cuda")
    configure_torch(dev)
    return dev


@pytest.fixture
def tiny_data():
    """A learnable 10-class problem on 1x8x8 images (class-dependent mean images)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(10, 1, 8, 8, generator=gen)
    y = torch.arange(400) % 10
    x = (centres[y] + 0.15 * torch.randn(400, 1, 8, 8, generator=gen)).clamp(0, 1)
    return x, y


@pytest.fixture
def ray_matches_local(tmp_path):
    """Check that a config run on a local Ray cluster gives the local executor's bytes.

    Ray workers run one torch thread each, so the local run uses one thread too.
    """
    def check(config) -> None:
        pytest.importorskip("ray")
        from bayeslrp.experiment import runner
        from bayeslrp.fileio import sha256_file

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            local = runner.run_experiment(config, tmp_path / "local")
        finally:
            torch.set_num_threads(threads)
        ray_run = runner.run_experiment(config, tmp_path / "ray", executor="ray")
        assert sha256_file(ray_run.results) == sha256_file(local.results)

    return check
