"""The ``quick-original`` profile: the quick profile with the original code's semantics."""
from __future__ import annotations

import yaml

from bayeslrp.cli.run_cmd import PROFILES, packaged_config
from bayeslrp.experiment.config import load_config
from bayeslrp.experiment.grid import expand_grid


def test_quick_original_has_hmc_blocks_and_16_channels():
    assert "quick-original" in PROFILES
    cfg = load_config(packaged_config("quick-original"))
    assert cfg.compat == "original"
    hmc = cfg.model("hmc_fc2")
    assert (hmc.mode, hmc.block_size) == ("blocks", 4000)
    assert {cfg.model(m).channels for m in ("det_conv", "adv_conv", "vi_conv")} == {16}
    assert cfg.explain.inner_seed == "original" and cfg.explain.output_seed == "one"
    grid = expand_grid(cfg)
    assert any(t.label.startswith("train[hmc_fc2") for t in grid.tasks)


def test_compat_alone_keeps_the_quick_profiles_explicit_values():
    """Why the profile exists: quick.yaml writes its structure out, and explicit values win."""
    raw = yaml.safe_load(packaged_config("quick"))
    cfg = load_config({**raw, "compat": "original"})
    assert cfg.model("hmc_fc2").mode == "subset" and cfg.model("det_conv").channels == 32


def test_quick_original_differs_from_quick_only_where_documented():
    quick = yaml.safe_load(packaged_config("quick"))
    orig = yaml.safe_load(packaged_config("quick-original"))
    assert orig.pop("compat") == "original" and orig.pop("name") == "quick-original"
    quick.pop("name")
    for q, o in zip(quick["models"], orig["models"]):
        if q["method"] == "hmc":
            assert (q.pop("mode"), q.pop("subset"), o.pop("mode")) == ("subset", 10000, "blocks")
        if q.get("arch") == "conv":
            assert (q.pop("channels"), o.pop("channels")) == (32, 16)
    assert orig == quick
