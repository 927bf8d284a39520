"""Experiment infrastructure: config schema, task grid, artifact store.

The runner, store and executors know no stage: stages are objects registered in
:data:`~bayeslrp.experiment.stages.STAGES`, run as pure functions of their parameters and
input artifacts.
"""
from bayeslrp.experiment.config import Config, config_key, dump_config, load_config
from bayeslrp.experiment.grid import Grid, Task, expand_grid, topological_order
from bayeslrp.experiment.stages import STAGES
from bayeslrp.experiment.store import Store, artifact_key

__all__ = [
    "STAGES", "Config", "Grid", "Store", "Task", "artifact_key", "config_key", "dump_config",
    "expand_grid", "load_config", "topological_order",
]
