"""The packaged quick-fashion and saliency profiles (issue 21 items 1 and 2)."""
from __future__ import annotations

from bayeslrp.cli.run_cmd import PROFILES, packaged_config
from bayeslrp.experiment import runner
from bayeslrp.experiment.grid import expand_grid


def _models(cfg):
    return {m.name: m for m in cfg.models}


def test_quick_fashion_profile_has_the_issue_settings():
    assert "quick-fashion" in PROFILES
    (cfg,) = runner.load_configs(packaged_config("quick-fashion"))
    assert cfg.data.dataset == "fashion_mnist" and cfg.data.n_points == 500
    m = _models(cfg)
    assert {(n, x.method, x.arch) for n, x in m.items()} == {
        ("fdet_fc2", "det", "fc2"), ("fadv_fc2", "adv", "fc2"), ("fhmc_fc2", "hmc", "fc2"),
        ("fdet_conv", "det", "conv"), ("fadv_conv", "adv", "conv"), ("fvi_conv", "vi", "conv")}
    assert all(x.hidden == 1024 for x in m.values())
    assert {m[n].channels for n in ("fdet_conv", "fadv_conv", "fvi_conv")} == {32}
    assert (m["fhmc_fc2"].mode, m["fhmc_fc2"].subset) == ("subset", 10000)
    assert (m["fadv_conv"].epochs, m["fvi_conv"].epochs, m["fvi_conv"].lr) == (10, 15, 0.001)
    assert [a.method for a in cfg.attacks] == ["fgsm", "pgd"]
    assert set(cfg.explain.rules) == {"epsilon", "gamma", "alphabeta"}
    assert cfg.explain.layers == "all" and cfg.explain.n_samples == (10, 50, 100)
    assert len(expand_grid(cfg)) > 0


def test_saliency_profile_has_the_figure_14_15_attacks():
    assert "saliency" in PROFILES
    mnist, fashion = runner.load_configs(packaged_config("saliency"))
    assert (mnist.data.dataset, fashion.data.dataset) == ("mnist", "fashion_mnist")
    topk, beta = mnist.attacks
    assert (topk.method, topk.k, topk.alpha, topk.steps, topk.rule) == ("topk", 20, 0.5, 10,
                                                                         "epsilon")
    assert (beta.method, beta.gamma, beta.steps, beta.lr) == ("beta", 1.0, 10, 0.01)
    assert 60 in mnist.metrics.k and 20 in mnist.metrics.k
    (region,) = fashion.attacks
    assert (region.method, region.k, region.alpha, region.steps) == ("region", 20, 0.5, 10)
    # main models and the other architecture as the control, in each document
    assert {(x.method, x.arch) for x in mnist.models} == {
        ("det", "fc2"), ("adv", "fc2"), ("hmc", "fc2"), ("det", "conv"), ("adv", "conv"),
        ("vi", "conv")}
    assert {(x.method, x.arch) for x in fashion.models} == {
        ("det", "fc2"), ("adv", "fc2"), ("vi", "fc2"), ("det", "conv"), ("adv", "conv"),
        ("vi", "conv")}
    for cfg in (mnist, fashion):
        assert set(cfg.explain.rules) == {"epsilon", "gamma", "alphabeta"}
        assert cfg.explain.layers == "all"
        assert len(expand_grid(cfg)) > 0
