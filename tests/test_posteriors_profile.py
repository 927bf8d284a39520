"""The packaged posteriors profile (issue 22 item 5): the issue's models, attacks, rules and
sample counts; the fresh-draw document; artifacts shared with the quick profile."""
from __future__ import annotations

from bayeslrp.cli.run_cmd import PROFILES, packaged_config
from bayeslrp.experiment import runner
from bayeslrp.experiment.grid import expand_grid


def _load():
    return runner.load_configs(packaged_config("posteriors"))


def test_posteriors_profile_has_every_method_and_control():
    assert "posteriors" in PROFILES
    main, ens, fresh = _load()
    methods = [(m.method, getattr(m, "kind", None)) for m in main.models + ens.models]
    for expected in [("det", None), ("adv", None), ("hmc", None), ("vi", None),
                     ("ensemble", None), ("mc_dropout", None), ("laplace", "diag"),
                     ("laplace", "last_layer"), ("weight_noise", None)]:
        assert expected in methods, expected
    for cfg in (main, ens, fresh):
        assert cfg.data.dataset == "mnist" and cfg.data.n_points == 500
        assert {m.arch for m in cfg.models} == {"fc2"} and {m.hidden for m in cfg.models} == {512}
        assert set(cfg.explain.rules) == {"epsilon", "alphabeta"} and cfg.explain.layers == "all"
        assert len(expand_grid(cfg)) > 0
    assert [a.method for a in main.attacks] == ["fgsm", "pgd", "pgd_adaptive", "noise"]
    assert [a.method for a in ens.attacks] == ["fgsm", "pgd", "pgd_adaptive", "noise"]
    assert main.explain.n_samples == (1, 10, 50, 100) and ens.explain.n_samples == (1, 10)
    (members,) = [m for m in ens.models if m.method == "ensemble"]
    assert members.n_samples == 10
    (matched,) = [m for m in main.models if getattr(m, "match_accuracy", None)]
    assert matched.match_accuracy == "hmc_fc2"
    assert fresh.explain.explain_draws == "fresh" and main.explain.explain_draws == "same"


def test_posteriors_profile_shares_the_quick_profiles_fc2_models():
    main, ens, fresh = _load()
    (quick,) = runner.load_configs(packaged_config("quick"))
    quick_train = {t.key for t in expand_grid(quick).stage("train")}
    for cfg in (main, ens, fresh):
        keys = {t.coords.get("model"): t.key for t in expand_grid(cfg).stage("train")}
        shared = [k for name, k in keys.items()
                  if name.removesuffix("_f").removesuffix("_e") in ("det_fc2", "adv_fc2", "hmc_fc2")]
        assert shared and set(shared) <= quick_train
