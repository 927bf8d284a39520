"""Experiment infrastructure: config schema, task grid, artifact store.

Nothing here knows about LRP, attacks or training: stages are looked up by name and run as
pure functions of their parameters and input artifacts.
"""
from bayeslrp.experiment.config import Config, config_key, dump_config, load_config
from bayeslrp.experiment.grid import STAGES, Grid, Task, expand_grid, topological_order
from bayeslrp.experiment.store import Store, artifact_key

__all__ = [
    "STAGES", "Config", "Grid", "Store", "Task", "artifact_key", "config_key", "dump_config",
    "expand_grid", "load_config", "topological_order",
]
