"""The configs behind measured tables in docs/results.md stay runnable and share the quick
profile's artifacts (same model, data and attack slices, so the same store keys)."""
from __future__ import annotations

from pathlib import Path

from bayeslrp.cli.run_cmd import packaged_config
from bayeslrp.experiment import runner
from bayeslrp.experiment.grid import expand_grid

DOCS_RUNS = Path(__file__).resolve().parents[1] / "docs" / "configs"


def test_explainers_fc2_run_uses_the_quick_profiles_fc2_slices():
    (cfg,) = runner.load_configs(DOCS_RUNS / "explainers_fc2.yaml")
    (quick,) = runner.load_configs(packaged_config("quick"))
    quick_models = {m.name: m for m in quick.models}
    assert [m.name for m in cfg.models] == ["det_fc2", "adv_fc2", "hmc_fc2"]
    for model in cfg.models:
        assert model == quick_models[model.name]
    assert cfg.attacks == quick.attacks and cfg.data == quick.data and cfg.seed == quick.seed
    assert set(cfg.explain.rules) >= {"epsilon", "gamma", "alphabeta", "gradient",
                                      "integrated_gradients", "smoothgrad", "noisegrad",
                                      "fusiongrad"}
    quick_grid, own_grid = expand_grid(quick), expand_grid(cfg)
    for stage in ("train", "attack"):
        own_keys = {t.key for t in own_grid.stage(stage)}
        assert own_keys and own_keys <= {t.key for t in quick_grid.stage(stage)}
