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


def test_posteriors_part_run_shares_the_posteriors_profiles_artifacts():
    part = runner.load_configs(DOCS_RUNS / "posteriors_part.yaml")
    profile = runner.load_configs(packaged_config("posteriors"))
    assert len(part) == len(profile) == 3
    for own, full in zip(part, profile):
        assert own.name == f"{full.name}-part"
        assert own.models == full.models and own.data == full.data and own.seed == full.seed
        assert own.explain.explain_draws == full.explain.explain_draws
        assert set(own.explain.n_samples) <= {1, 10, 50, 100}
        assert list(own.attacks) == [a for a in full.attacks if a.method != "pgd_adaptive"]
        own_grid, full_grid = expand_grid(own), expand_grid(full)
        for stage in ("train", "attack"):
            own_keys = {t.key for t in own_grid.stage(stage)}
            assert own_keys and own_keys <= {t.key for t in full_grid.stage(stage)}


def test_posteriors_adaptive_run_is_the_profiles_first_two_documents():
    """docs/configs/posteriors_adaptive.yaml (the pgd_adaptive and αβ rows of
    docs/results.md) holds the profile's first two documents unchanged."""
    own = runner.load_configs(DOCS_RUNS / "posteriors_adaptive.yaml")
    profile = runner.load_configs(packaged_config("posteriors"))
    assert len(own) == 2
    for mine, full in zip(own, profile[:2]):
        assert mine.model_dump() == full.model_dump()


def test_manifold_posteriors_run_shares_the_posteriors_profiles_artifacts():
    own = runner.load_configs(DOCS_RUNS / "manifold_posteriors.yaml")
    profile = runner.load_configs(packaged_config("posteriors"))
    assert len(own) == 2
    for mine, full in zip(own, profile[:2]):
        assert mine.models == full.models and mine.data == full.data
        assert mine.analysis.manifold is not None
        mine_grid, full_grid = expand_grid(mine), expand_grid(full)
        for stage in ("train", "attack"):
            keys = {t.key for t in mine_grid.stage(stage)}
            assert keys and keys <= {t.key for t in full_grid.stage(stage)}
