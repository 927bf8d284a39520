"""The ``paper-cifar10`` document of the paper profile: the original's ResNet-20 recipe,
validated and planned without any CIFAR-10 files, and a one-line message from ``run``."""
from __future__ import annotations

import math

import pytest
import yaml

from bayeslrp.cli import main
from bayeslrp.cli.run_cmd import packaged_config
from bayeslrp.experiment.grid import expand_grid
from bayeslrp.experiment.runner import data_problem, load_configs

RESNET_LAYERS = [1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]


@pytest.fixture(scope="module")
def cifar():
    configs = load_configs(packaged_config("paper"))
    (cfg,) = [c for c in configs if c.name == "paper-cifar10"]
    return cfg


def test_models_follow_the_original_recipe(cifar):
    det, adv, vi = cifar.models
    sgd = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
               lr_milestones=(100, 150), augment="crop_flip", arch="resnet20")
    for model, method, epochs in ((det, "det", 200), (adv, "adv", 150)):
        assert model.method == method and model.epochs == epochs
        assert {k: getattr(model, k) for k in sgd} == sgd
    assert (adv.adv_attack, adv.adv_eps, adv.adv_mix) == ("fgsm", 0.2, False)
    assert vi.method == "vi" and vi.optimizer == "adam" and vi.lr == 1e-3
    assert (vi.prior_std, vi.mu_init_std, vi.num_particles, vi.n_samples) == (1.0, 0.1, 5, 100)
    assert vi.init_std == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-6)  # softplus(-2)
    assert vi.lr_milestones == (100, 150) and vi.augment == "crop_flip"


def test_grid_points_attacks_rules_layers_samples(cifar):
    assert (cifar.data.dataset, cifar.data.n_points, cifar.data.points) == ("cifar10", 500,
                                                                            "first_n")
    assert [a.method for a in cifar.attacks] == ["fgsm", "pgd"]
    assert cifar.explain.rules == ("epsilon", "gamma", "alphabeta")
    assert cifar.explain.n_samples == (10, 50, 100)
    grid = expand_grid(cifar)  # needs no CIFAR-10 files
    layers = {t.coords["layer"] for t in grid.stage("explain")}
    assert sorted(layers) == RESNET_LAYERS


def test_plan_validates_the_paper_profile_without_cifar_files(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYESLRP_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("BAYESLRP_DATA", raising=False)
    assert main(["plan", "--profile", "paper", "--threads", "1"]) == 0
    assert "total" in capsys.readouterr().out


def test_run_says_in_one_line_where_the_files_go(capsys, monkeypatch, tmp_path, cifar):
    monkeypatch.setenv("BAYESLRP_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("BAYESLRP_DATA", raising=False)
    problem = data_problem(cifar)
    assert "cifar-10-python.tar.gz" in problem and "BAYESLRP_DATA" in problem
    path = tmp_path / "cifar.yaml"
    text = packaged_config("paper")
    path.write_text(yaml.safe_dump([d for d in yaml.safe_load_all(text)
                                    if d["name"] == "paper-cifar10"][0]))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cifar10 data not found; put cifar-10-python.tar.gz")
    assert "\n" not in err and not (tmp_path / "run" / "results.parquet").exists()
