"""Issue 7: the Ray executor gives the local executor's results table on the demo grid."""
import pytest
import torch

from bayeslrp.cli.run_cmd import packaged_config
from bayeslrp.experiment import runner
from bayeslrp.fileio import sha256_file

pytestmark = pytest.mark.slow


def test_ray_and_local_give_the_same_table_on_the_demo_grid(tmp_path):
    pytest.importorskip("ray")
    config = packaged_config("demo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray workers run one thread each; match them
    try:
        local = runner.run_experiment(config, tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    ray_run = runner.run_experiment(config, tmp_path / "ray", executor="ray")
    assert sha256_file(ray_run.results) == sha256_file(local.results)
