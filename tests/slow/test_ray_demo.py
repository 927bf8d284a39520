"""Issue 7: the Ray executor gives the local executor's results table on the demo grid."""
import pytest

from bayeslrp.cli.run_cmd import packaged_config

pytestmark = pytest.mark.slow


def test_ray_and_local_give_the_same_table_on_the_demo_grid(ray_matches_local):
    ray_matches_local(packaged_config("demo"))
