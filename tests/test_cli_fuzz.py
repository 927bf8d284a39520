"""Every bad input a user can give the CLI: exit 2, exactly one ``error:`` line, no traceback,
nothing written (issue 16).

A table of several hundred invocations over every command and option — bad numbers, names,
files, devices, model/data shapes, broken configs — runs in-process (``main(argv)``); the
ones about file permissions run as ``nobody`` in one subprocess (:mod:`unprivileged`), since
root ignores file modes. Then one named test per case the issue lists.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

import bayeslrp as bl

from cli_cases import TINY, assert_one_line, call
from unprivileged import nobody_ids, run_as_nobody

NO_CUDA = not torch.cuda.is_available()
NEEDS_NOBODY = pytest.mark.skipif(nobody_ids() is None,
                                  reason="needs root (to drop to nobody) and a nobody user")

def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mode (what a command may not change)."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1,
                                       p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def save_model(path: Path, in_shape, dataset: str, n_classes: int = 10) -> Path:
    net = bl.nets.build("fc2", hidden=4, in_shape=in_shape, n_classes=n_classes)
    bl.Ensemble.from_module(net, meta={"method": "det", "dataset": dataset}).save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Models, files and a finished run that the bad invocations point at."""
    root = tmp_path_factory.mktemp("fuzz")
    save_model(root / "digits_model", (1, 8, 8), "digits")
    save_model(root / "mnist_model", (1, 28, 28), "mnist")
    (root / "empty_dir").mkdir()
    (root / "a_file").write_text("not a directory\n")
    broken = root / "broken_model"
    broken.mkdir()
    (broken / "ensemble.json").write_text("{ not json")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (root / "empty.yaml").write_text("")
    (root / "bad.yaml").write_text("name: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    for i, doc in enumerate(BAD_CONFIGS):
        (root / f"bad{i}.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = call(["run", root / "tiny.yaml", "--run-dir", root / "finished", "--quiet"])
    assert code == 0, err
    return root


# --------------------------------------------------------------------------- the table


def _mutate(path: str, value) -> dict:
    doc = copy.deepcopy(TINY)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


_DROP = object()
BAD_CONFIGS = [_mutate(p, v) for p, v in [
    ("models.0.hidden", 0), ("models.0.hidden", -4), ("models.0.hidden", "8"),
    ("models.0.hidden", 100000000000), ("models.0.hidden", 1.5), ("models.0.epochs", 0),
    ("models.0.epochs", -1), ("models.0.arch", "resnet20"), ("models.0.arch", "conv"),
    ("models.0.arch", "vgg"), ("models.0.method", "mcmc"), ("models.0.method", _DROP),
    ("models.0.name", ""), ("models.0.name", "1bad"), ("models.0.lr", 0),
    ("models.0.lr", -0.1), ("models.0.seed", -5), ("models.0.colour", "red"),
    ("models.0.channels", 4), ("attacks.0.eps", 0), ("attacks.0.eps", -0.1),
    ("attacks.0.eps", "big"), ("attacks.0.method", "deepfool"), ("attacks.0.method", _DROP),
    ("attacks.0.n_samples", 0), ("data.dataset", "imagenet"), ("data.n_points", 0),
    ("data.n_points", 15), ("data.n_points", 100000), ("data.n_train", 0),
    ("data.n_train", 10**9), ("data.shape", [1, 8, 8]), ("data.extra", 1), ("seed", -5),
    ("seed", "zero"), ("device", "tpu"), ("device", "cuda:x"), ("name", ""),
    ("explain.rules", ["nope"]), ("explain.n_samples", [0]), ("explain.bayes", "avg_prediction"),
    ("explain.layers", [99]), ("explain.layers", "first"), ("metrics.k", [0]),
    ("metrics.k", [150]), ("compat", "paper"), ("models", []), ("attacks", []),
    ("data", _DROP), ("models", _DROP),
]]

DEVICES = ["tpu", "cuda:x", "gpu", "cpu:0", "cuda:-1", ""] + (["cuda", "cuda:0"] if NO_CUDA else [])


def _train_cases() -> list[list[str]]:
    base = ["train", "--dataset", "digits", "--hidden", "4", "--epochs", "1",
            "--out", "{root}/new_model"]
    cases = []
    bad = {"--hidden": ["0", "-1", "x", "1.5", "100000000000"], "--epochs": ["0", "-1", "x"],
           "--lr": ["0", "-0.001", "x", "nan", "inf"], "--seed": ["-5", "x", "1.5"],
           "--arch": ["resnet20", "conv", "vgg", ""], "--method": ["mcmc", "", "DET"],
           "--dataset": ["imagenet", "", "MNIST"], "--channels": ["4"]}
    for flag, values in bad.items():
        for value in values:
            cases.append(base + [flag, value])
    for method, flag, values in [
            ("vi", "--n-samples", ["0", "-1", "x"]), ("vi", "--vi-init-std", ["0", "-1", "x"]),
            ("vi", "--vi-lr-schedule", ["linear", ""]), ("vi", "--lr", ["0", "-1"]),
            ("adv", "--adv-mode", ["cw", ""]), ("hmc", "--hmc-mode", ["partial", ""]),
            ("hmc", "--warmup", ["-1", "x"]), ("hmc", "--n-samples", ["0"]),
            ("hmc", "--subset", ["0", "-3"])]:
        for value in values:
            extra = ["--lr", "0.01"] if method == "vi" and flag != "--lr" else []
            cases.append(base + ["--method", method, *extra, flag, value])
    cases += [base + ["--device", d] for d in DEVICES]
    cases += [base + ["--data-dir", d] for d in ["{root}/missing", "{root}/a_file"]]
    cases += [base[:-1] + ["{root}/a_file"], base[:-1] + ["{root}/a_file/sub"],
              base[:-1] + ["{root}/digits_model"], base[:-2], base + ["--no-such-flag"],
              ["train", "--dataset", "digits", "--out", "{root}/new_model"],  # hidden required
              base + ["--arch", "conv", "--channels", "0"]]
    return cases


def _model_cases() -> list[list[str]]:
    cases = []
    for model in ["{root}/missing", "{root}/a_file", "{root}/empty_dir", "{root}/broken_model"]:
        cases.append(["evaluate", "--model", model])
        cases.append(["attack", "--model", model, "--out", "{root}/new_attack"])
        cases.append(["score", "--model", model])
    ev = ["evaluate", "--model", "{root}/digits_model"]
    cases += [ev + ["--n-samples", v] for v in ["0", "-1", "2", "x"]]
    cases += [ev + ["--dataset", v] for v in ["imagenet", "", "mnist_"]]
    cases += [ev + ["--device", d] for d in DEVICES]
    cases += [ev + ["--data-dir", d] for d in ["{root}/missing", "{root}/a_file"]]
    cases += [["evaluate", "--model", "{root}/mnist_model", "--dataset", "digits"],
              ev + ["--dataset", "cifar_synthetic"], ev + ["--bogus", "1"], ["evaluate"]]
    at = ["attack", "--model", "{root}/digits_model", "--out", "{root}/new_attack",
          "--n-points", "10"]
    bad = {"--method": ["deepfool", "", "FGSM"], "--eps": ["0", "-0.1", "1.5", "x", "nan"],
           "--n-points": ["0", "-10", "15", "100000", "x"], "--seed": ["-1", "x"],
           "--n-samples": ["0", "2", "-1"], "--mode": ["average", ""],
           "--dataset": ["imagenet", "cifar_synthetic"], "--steps": ["3"]}
    for flag, values in bad.items():
        cases += [at + [flag, v] for v in values]
    cases += [at + ["--method", "pgd", "--steps", v] for v in ["0", "-2", "x"]]
    cases += [at + ["--method", "topk", "--rule", v] for v in ["nope", ""]]
    cases += [at + ["--method", "region", "--eps", "0"]]
    cases += [at + ["--device", d] for d in DEVICES]
    cases += [at + ["--data-dir", d] for d in ["{root}/missing", "{root}/a_file"]]
    cases += [at[:4] + ["{root}/a_file"] + at[5:], at[:4] + ["{root}/a_file/x"] + at[5:],
              ["attack", "--model", "{root}/mnist_model", "--dataset", "digits", "--out",
               "{root}/new_attack", "--n-points", "10"], at[:3]]
    sc = ["score", "--model", "{root}/digits_model", "--n-points", "10"]
    bad = {"--explainer": ["nope", ""], "--attack": ["deepfool", ""], "--k": ["0", "101", "-5",
           "x"], "--n-points": ["15", "0", "100000"], "--layer": ["99", "-1", "x"],
           "--n-samples": ["0", "2"], "--seed": ["-1"],
           "--explainer-options": ["{", "[1]", "\"s\"", "{\"steps\": 0}", "{\"nope\": 1}"],
           "--attack-options": ["{", "[]", "{\"eps\": -1}", "{\"steps\": 0}",
                                "{\"wrong\": 1}"],
           "--dataset": ["imagenet", "cifar_synthetic"]}
    for flag, values in bad.items():
        cases += [sc + [flag, v] for v in values]
    cases += [["score", "--model", "{root}/mnist_model", "--dataset", "digits", "--n-points",
               "10"]]
    return cases


def _run_cases() -> list[list[str]]:
    run = ["run", "{root}/tiny.yaml", "--run-dir", "{root}/new_run", "--quiet"]
    cases = [["run", "{root}/bad%d.yaml" % i, "--run-dir", "{root}/new_run"]
             for i in range(len(BAD_CONFIGS))]
    cases += [["run", "{root}/%s" % f, "--run-dir", "{root}/new_run"]
              for f in ["missing.yaml", "empty.yaml", "bad.yaml", "list.yaml", "latin1.yaml",
                        "empty_dir", "a_file"]]
    cases += [run + ["--threads", v] for v in ["0", "-1", "x"]]
    cases += [run + ["--executor", v] for v in ["dask", ""]]
    cases += [run + ["--device", d] for d in DEVICES]
    cases += [run[:3] + ["{root}/a_file"], run[:3] + ["{root}/a_file/run"], ["run"],
              run + ["--wat"]]
    for command in ("demo", "reproduce --profile quick", "reproduce --profile paper"):
        head = command.split() + ["--run-dir", "{root}/new_run"]
        cases += [head + ["--device", d] for d in DEVICES]
        cases += [head + ["--threads", "0"]]
    cases += [["reproduce", "--profile", v, "--run-dir", "{root}/new_run"]
              for v in ["full", "", "QUICK"]]
    cases += [["reproduce"], ["demo", "--run-dir", "{root}/a_file"]]
    for command in ("plot", "report"):
        cases += [[command, "{root}/%s" % d] for d in ["missing", "empty_dir", "a_file"]]
        cases += [[command]]
    cases += [["plan", "{root}/bad%d.yaml" % i] for i in range(0, len(BAD_CONFIGS), 3)]
    cases += [["plan"], ["plan", "{root}/tiny.yaml", "--profile", "quick"],
              ["plan", "--profile", "full"], ["plan", "{root}/tiny.yaml", "--threads", "0"],
              ["plan", "{root}/tiny.yaml", "--device", "tpu"], ["plan", "{root}/missing.yaml"]]
    cases += [["data", "fetch", v] for v in ["imagenet", ""]]
    cases += [["data", "info", v] for v in ["imagenet", ""]]
    cases += [["data", "nope"], ["no-such-command"], ["--no-such-flag"],
              ["train", "--help-me"]]
    return cases


CASES = _train_cases() + _model_cases() + _run_cases()


def _case_id(argv: list[str]) -> str:
    return " ".join(a.replace("{root}/", "") for a in argv)[:90]


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 300
    commands = {argv[0] for argv in CASES}
    assert {"train", "evaluate", "attack", "score", "run", "demo", "reproduce", "plot",
            "report", "plan", "data"} <= commands


@pytest.mark.parametrize("argv", CASES, ids=[_case_id(a) for a in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)  # a default output path (runs/…) would land here
    before = tree(world)
    code, _, err = call([a.replace("{root}", str(world)) for a in argv])
    assert_one_line(code, err)
    assert tree(world) == before
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- as nobody

def _read_only_cases(world: Path, ro: Path) -> dict[str, list[str]]:
    model = str(world / "digits_model")
    return {
        "train --out in a read-only dir": ["train", "--dataset", "digits", "--hidden", "4",
                                           "--epochs", "1", "--out", f"{ro}/m"],
        "train --out a read-only dir": ["train", "--dataset", "digits", "--hidden", "4",
                                        "--epochs", "1", "--out", str(ro)],
        "run --run-dir in a read-only dir": ["run", str(world / "tiny.yaml"), "--run-dir",
                                             f"{ro}/r"],
        "attack --out in a read-only dir": ["attack", "--model", model, "--out", f"{ro}/a",
                                            "--n-points", "10"],
        "report on a read-only finished run": ["report", str(world / "finished")],
        "plot on a read-only finished run": ["plot", str(world / "finished")],
        "run on a read-only finished run": ["run", str(world / "tiny.yaml"), "--run-dir",
                                            str(world / "finished")],
        "demo --run-dir in a read-only dir": ["demo", "--run-dir", f"{ro}/d"],
        "evaluate an unreadable model": ["evaluate", "--model", str(world / "secret_model")],
        "run an unreadable config": ["run", str(world / "secret.yaml"), "--run-dir",
                                     f"{ro}/r2"],
    }


@pytest.fixture(scope="module")
def nobody_results(world):
    """The permission cases, run as nobody on root's files (mode 644/755: read-only to it).

    pytest's own temporary directories are 0700, so the cases get a directory of their own
    that nobody may enter, removed afterwards.
    """
    if nobody_ids() is None:
        pytest.skip("needs root (to drop to nobody) and a nobody user")
    base = Path(tempfile.mkdtemp(prefix="bayeslrp-nobody-"))
    try:
        os.chmod(base, 0o755)
        shared, ro, home = base / "world", base / "readonly", base / "home"
        shared.mkdir()
        ro.mkdir()
        home.mkdir()
        os.chown(home, *nobody_ids())
        shutil.copytree(world / "digits_model", shared / "digits_model")
        shutil.copytree(world / "finished", shared / "finished")
        shutil.copy(world / "tiny.yaml", shared / "tiny.yaml")
        save_model(shared / "secret_model", (1, 8, 8), "digits")
        os.chmod(shared / "secret_model" / "ensemble.json", 0o600)
        shutil.copy(world / "tiny.yaml", shared / "secret.yaml")
        os.chmod(shared / "secret.yaml", 0o600)
        cases = _read_only_cases(shared, ro)
        before = tree(shared), tree(ro)
        results = run_as_nobody(list(cases.values()), home)
        assert (tree(shared), tree(ro)) == before
        yield dict(zip(cases, results))
    finally:
        shutil.rmtree(base)


@NEEDS_NOBODY
@pytest.mark.parametrize("name", list(_read_only_cases(Path("w"), Path("r"))))
def test_permission_problem_is_one_line_exit_2(nobody_results, name):
    code, _, err = nobody_results[name]
    line = assert_one_line(code, err)
    assert any(words in line for words in ("not writable", "not readable", "cannot read",
                                           "Permission denied")), line


# --------------------------------------------------------------------------- named cases
# One test per case listed in issue 16.

def _train(world, *extra, out="new_model"):
    return call(["train", "--dataset", "digits", "--hidden", "4", "--epochs", "1",
                 "--out", world / out, *extra])


def test_train_out_existing_file_is_refused_before_training(world):
    code, _, err = _train(world, out="a_file")
    assert "a_file exists and is not a directory" in assert_one_line(code, err)


@NEEDS_NOBODY
@pytest.mark.parametrize("name", ["train --out in a read-only dir",
                                  "train --out a read-only dir"])
def test_train_out_read_only_is_refused_before_training(nobody_results, name):
    code, out, err = nobody_results[name]
    assert "not writable" in assert_one_line(code, err)
    assert "saved" not in out  # nothing trained


@NEEDS_NOBODY
def test_run_dir_in_a_read_only_dir_is_one_line(nobody_results):
    code, _, err = nobody_results["run --run-dir in a read-only dir"]
    assert "--run-dir" in assert_one_line(code, err)


@NEEDS_NOBODY
def test_attack_out_in_a_read_only_dir_is_one_line(nobody_results):
    code, _, err = nobody_results["attack --out in a read-only dir"]
    assert "--out" in assert_one_line(code, err)


@NEEDS_NOBODY
@pytest.mark.parametrize("command", ["report", "plot", "run"])
def test_commands_on_a_read_only_finished_run_are_one_line(nobody_results, command):
    code, _, err = nobody_results[f"{command} on a read-only finished run"]
    assert "finished" in assert_one_line(code, err)


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--hidden", "0"), ("--lr", "0"),
                                         ("--seed", "-5")])
def test_train_explicit_values_are_never_replaced_by_defaults(world, flag, value):
    # --epochs 0 is refused (a model trained for no epoch is an untrained network), as are
    # --hidden 0, --lr 0 and a negative seed: the YAML's spec says so, and the CLI uses it.
    code, _, err = _train(world, flag, value)
    assert assert_one_line(code, err).startswith(f"error: {flag}: ")
    assert not (world / "new_model").exists()


def test_train_resnet20_on_mnist_is_refused_by_the_fit_check(world):
    code, _, err = call(["train", "--arch", "resnet20", "--dataset", "mnist",
                         "--out", world / "new_model"])
    assert "does not fit mnist" in assert_one_line(code, err)


def test_train_conv_on_digits_is_refused(world):
    code, _, err = call(["train", "--arch", "conv", "--dataset", "digits",
                         "--out", world / "new_model"])
    assert "conv does not fit digits" in assert_one_line(code, err)


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_train_device_cuda_without_cuda_is_one_line(world):
    code, _, err = _train(world, "--device", "cuda")
    assert "CUDA is not available" in assert_one_line(code, err)


@pytest.mark.parametrize("command", ["evaluate", "attack", "score"])
def test_mnist_model_on_digits_is_refused_before_any_forward_pass(world, command):
    argv = [command, "--model", world / "mnist_model", "--dataset", "digits"]
    if command != "evaluate":
        argv += ["--n-points", "10"]
    if command == "attack":
        argv += ["--out", world / "new_attack"]
    code, _, err = call(argv)
    line = assert_one_line(code, err)
    assert "[1, 28, 28]" in line and "[1, 8, 8]" in line and "image size" in line


def test_evaluate_on_another_dataset_of_the_same_shape_warns(world):
    # Chosen: a model used on another dataset of its shape (MNIST → Fashion-MNIST) is allowed
    # (transfer is a legitimate question) but never silent: one warning line names both.
    code, out, err = call(["evaluate", "--model", world / "digits_model",
                           "--dataset", "synthetic"])
    assert code == 0, err
    assert err.strip() == "warning: the model was trained on digits and is used on synthetic"
    assert "synthetic test accuracy" in out


def test_yaml_hidden_1e11_is_refused_before_allocating(world):
    doc = copy.deepcopy(TINY)
    doc["models"][0]["hidden"] = 100000000000
    path = world / "huge.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = call(["run", path, "--run-dir", world / "huge_run"])
    line = assert_one_line(code, err)
    assert "models[0].hidden" in line and "GiB" in line
    assert not (world / "huge_run").exists()  # no "failed" manifest either


def test_mcmc_sample_with_a_scalar_potential_says_wrap_it():
    with pytest.raises(bl.BayesLRPError, match="with_autograd"):
        bl.mcmc.sample(lambda q: (q ** 2).sum(), torch.zeros(3), 2, 2)
    draws, _ = bl.mcmc.sample(bl.mcmc.with_autograd(lambda q: (q ** 2).sum()), torch.zeros(3),
                              2, 2)
    assert draws.shape == (2, 3)


def test_fgsm_on_a_plain_module_is_one_clear_error():
    net = bl.nets.build("fc2", hidden=4, in_shape=(1, 8, 8))
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(bl.BayesLRPError, match="Ensemble.from_module"):
        bl.attacks.fgsm(net, x, y)
    with pytest.raises(bl.BayesLRPError, match="Ensemble.from_module"):
        bl.attacks.run_attack(net, x, y, "fgsm")


def test_float_labels_are_one_clear_error():
    ens = bl.Ensemble.from_module(bl.nets.build("fc2", hidden=4, in_shape=(1, 8, 8)))
    with pytest.raises(bl.BayesLRPError, match="integer tensor"):
        bl.attacks.fgsm(ens, torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]))


def test_attack_on_images_of_another_shape_is_one_clear_error():
    ens = bl.Ensemble.from_module(bl.nets.build("fc2", hidden=4, in_shape=(1, 8, 8)))
    with pytest.raises(bl.BayesLRPError, match="wrong channel count"):
        bl.attacks.fgsm(ens, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))


@pytest.mark.parametrize("kwargs", [{"hidden": 0}, {"hidden": -1}, {"hidden": 2.5},
                                    {"in_shape": (1, 0, 8)}, {"n_classes": 0}])
def test_nets_build_refuses_impossible_sizes(kwargs):
    with pytest.raises(bl.BayesLRPError, match="must be"):
        bl.nets.build("fc2", **kwargs)


def test_config_errors_have_no_phantom_and_more():
    doc = copy.deepcopy(TINY)
    doc["models"][0]["hidden"] = 0
    with pytest.raises(bl.BayesLRPError) as info:
        bl.experiment.load_config(doc)
    assert "more)" not in str(info.value)
    doc["models"][0]["lr"] = -1.0  # two real errors: the count is right
    with pytest.raises(bl.BayesLRPError, match=r"\(and 1 more\)$"):
        bl.experiment.load_config(doc)


@pytest.mark.parametrize("section, entry, words", [
    ("models", {"name": "m", "method": "mcmc", "arch": "fc2"},
     "models[0].method: unknown method 'mcmc'; must be one of det, adv, vi, hmc, ensemble, "
     "mc_dropout, laplace, weight_noise"),
    ("attacks", {"eps": 0.1}, "attacks[0].method: missing; must be one of fgsm, pgd"),
])
def test_tagged_union_errors_are_plain_words(section, entry, words):
    doc = copy.deepcopy(TINY)
    doc[section] = [entry]
    with pytest.raises(bl.BayesLRPError) as info:
        bl.experiment.load_config(doc)
    assert words in str(info.value)
    assert "tag" not in str(info.value) and "discriminator" not in str(info.value)


def test_bare_command_prints_help_and_no_error():
    code, out, err = call([])
    assert code == 0 and err == "" and "Usage" in out


def test_version_is_printed():
    code, out, _ = call(["--version"])
    assert code == 0 and out.strip() == f"bayeslrp {bl.__version__}"


@pytest.mark.parametrize("command", ["train", "attack", "run", "evaluate", "score"])
def test_help_shows_no_bool_placeholder(command):
    code, out, _ = call([command, "--help"])
    assert code == 0 and "<bool>" not in out and "BOOLEAN" not in out


def test_data_info_of_missing_data_is_not_exit_0(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESLRP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    info = bl.data.info("cifar10", check=False)
    if info["source"] != "missing":
        pytest.skip(f"cifar10 is available here ({info['source']})")
    (tmp_path / "none").mkdir()
    code, out, err = call(["data", "info", "cifar10", "--data-dir", tmp_path / "none"])
    assert "data fetch cifar10" in assert_one_line(code, err)
    assert "None" not in out and "shape: [3, 32, 32]" in out
