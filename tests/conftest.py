"""Shared fixtures: small, seeded data and networks so the default suite stays fast."""
from __future__ import annotations

import pytest
import torch


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
