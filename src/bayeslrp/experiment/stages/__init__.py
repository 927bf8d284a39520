"""The pipeline stages, one module each, registered in :data:`STAGES` in pipeline order.

Each stage is a :class:`~bayeslrp.experiment.stages.base.Stage` (name, version, plan, run,
preflight, publish). The runner, the store and the executors look stages up by name and know
nothing else about them. A new stage is one module and one registration.
"""
from bayeslrp.experiment.stages.attack import AttackStage
from bayeslrp.experiment.stages.base import (MODEL_DIR, SYNTHETIC_DATA_SEED, ArtifactRef, Stage,
                                             StageContext, StageOutput, stage_seed)
from bayeslrp.experiment.stages.compare import RESULTS_FILE, TABLE_FILES, CompareStage
from bayeslrp.analysis import RESULT_COLUMNS, RESULT_ORDER
from bayeslrp.experiment.stages.data import DATA_FILE, IMAGES_FILE, DataStage
from bayeslrp.experiment.stages.manifold import ManifoldStage
from bayeslrp.experiment.stages.explain import HEATMAPS_FILE, ExplainStage, explain_cumulative
from bayeslrp.experiment.stages.metrics import TABLE_FILE, MetricsStage
from bayeslrp.experiment.stages.predict import PROBS_FILE, PredictStage, cumulative_probs
from bayeslrp.experiment.stages.select import SelectStage
from bayeslrp.experiment.stages.train import TrainStage
from bayeslrp.plugins.registry import Registry

__all__ = ["STAGES", "ArtifactRef", "Stage", "StageContext", "StageOutput",
           "cumulative_probs", "explain_cumulative", "stage_seed",
           # file names of the artifacts, for code that reads a store directly
           "DATA_FILE", "HEATMAPS_FILE", "IMAGES_FILE", "MODEL_DIR", "PROBS_FILE",
           "RESULTS_FILE", "RESULT_COLUMNS", "RESULT_ORDER", "SYNTHETIC_DATA_SEED",
           "TABLE_FILE", "TABLE_FILES"]

#: Stage name → class, in pipeline order (the planning order and the scheduling priority).
STAGES: Registry[Stage] = Registry("stage")
for _cls in (DataStage, TrainStage, SelectStage, AttackStage, PredictStage, ExplainStage,
             MetricsStage, CompareStage, ManifoldStage):
    STAGES.register(_cls)
