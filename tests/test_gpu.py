"""CPU-vs-CUDA agreement and CUDA determinism (``make test-gpu``).

Tests taking the ``device`` fixture run on ``cpu`` in the default suite and on ``cuda`` (marked
``gpu``) where CUDA exists: float32 on the device against a float64 reference on the CPU, with
the tolerances stated in each test (TF32 is off, so float32 rounding is all that differs).
Tests taking ``cuda`` compare CUDA with the CPU itself or with a second CUDA run; they are marked
``gpu`` and skip, with one summary line, on a machine without CUDA.
"""
from __future__ import annotations

import pytest
import torch

import bayeslrp as bl
from bayeslrp import nets
from bayeslrp.ensemble import Ensemble
from lrp_reference import double_ensemble, randomize_batchnorm


def _ensemble(arch, s, seed=0, **kwargs) -> list:
    gen = torch.Generator().manual_seed(seed)
    modules = [nets.build(arch, seed=seed + j, **kwargs) for j in range(s)]
    if arch == "resnet20":
        for m in modules:
            randomize_batchnorm(m, gen)
    return modules


def _images(n, shape, seed=1):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def _rel_err(got, ref):
    """max |got - ref| / max |ref|, in float64 on the CPU."""
    got, ref = got.detach().cpu().double(), ref.detach().cpu().double()
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


RESNET = dict(in_shape=[3, 16, 16], n_classes=10)
CONV = dict(in_shape=[1, 16, 16], channels=4, hidden=16)


# --------------------------------------------------------------------------- agreement
def test_load_resnet20_on_device_keeps_params_and_bn_buffers(tmp_path, device):
    """Ensemble.load(device=) of a ResNet-20 with non-trivial BN statistics: every tensor
    (running mean/var, num_batches_tracked included) arrives bit-identical; its logits agree
    with the float64 CPU model to 1e-5 of their largest magnitude."""
    modules = _ensemble("resnet20", 2, **RESNET)
    Ensemble.from_modules(modules).save(tmp_path / "m")
    ens = Ensemble.load(tmp_path / "m", device=device)
    saved = Ensemble.load(tmp_path / "m")
    assert ens.device.type == device.type
    assert any("running_var" in k for k in ens.params)
    for k, v in ens.params.items():
        assert v.device.type == device.type and torch.equal(v.cpu(), saved.params[k]), k
    x = _images(4, RESNET["in_shape"])
    ref = double_ensemble(modules).logits(x.double())
    assert _rel_err(ens.logits(x), ref) < 1e-5


@pytest.mark.parametrize("arch, kwargs", [("fc2", dict(in_shape=[1, 8, 8], hidden=32)),
                                          ("conv", CONV)])
def test_logits_and_predictions_agree(device, arch, kwargs):
    """logits of x on the CPU (moved by the ensemble) within 1e-5 (relative to the largest) of
    float64; predict_proba within 1e-6 absolute."""
    modules = _ensemble(arch, 3, **kwargs)
    ens = Ensemble.from_modules(modules).to(device)
    ref = double_ensemble(modules)
    x = _images(6, kwargs["in_shape"])
    assert _rel_err(ens.logits(x), ref.logits(x.double())) < 1e-5
    p, p_ref = ens.predict_proba(x), ref.predict_proba(x.double())
    assert float((p.cpu().double() - p_ref).abs().max()) < 1e-6


@pytest.mark.parametrize("arch, kwargs, rule, tol", [("conv", CONV, "epsilon", 1e-4),
                                                     ("conv", CONV, "alphabeta", 1e-4),
                                                     ("conv", CONV, "gamma", 1e-3),
                                                     ("resnet20", RESNET, "epsilon", 1e-4),
                                                     ("resnet20", RESNET, "alphabeta", 1e-4)])
def test_lrp_agrees_with_float64(device, arch, kwargs, rule, tol):
    """Mean heatmaps over S = 3 samples for given target classes, within ``tol`` of the largest
    float64 relevance (measured on the CPU: ε and αβ ≤ 3e-5, conv γ ≤ 2e-4). The target is
    fixed because an untrained net's near-tied logits may pick another class in float32; γ on
    ResNet-20 (errors up to 3e-2 on the CPU already, its denominators come close to 0) is left
    out."""
    modules = _ensemble(arch, 3, **kwargs)
    ens = Ensemble.from_modules(modules).to(device)
    x = _images(3, kwargs["in_shape"])
    target = torch.arange(3)
    got = bl.lrp.explain(ens, x.to(device), rule=rule, target=target.to(device))
    ref = bl.lrp.explain(double_ensemble(modules), x.double(), rule=rule, target=target)
    assert got.device.type == device.type
    assert _rel_err(got, ref) < tol


@pytest.mark.parametrize("method, options, agree", [("fgsm", {}, 0.99),
                                                    ("pgd", {"steps": 10}, 0.95)])
def test_gradient_attacks_agree(device, method, options, agree):
    """FGSM/PGD on an S = 3 ensemble: sign() turns float32-vs-float64 differences of tiny
    gradients into ±α pixels, so a share ``agree`` of pixels must be equal to within 1e-5 and
    every image stays in the ε-ball and [0, 1]."""
    kwargs = dict(in_shape=[1, 8, 8], hidden=32)
    modules = _ensemble("fc2", 3, **kwargs)
    ens = Ensemble.from_modules(modules).to(device)
    x = _images(20, kwargs["in_shape"])
    y = torch.arange(20) % 10
    eps = 0.1
    got = bl.attacks.run_attack(ens, x.to(device), y.to(device), method, seed=0, eps=eps,
                                **options).cpu().double()
    ref = bl.attacks.run_attack(double_ensemble(modules), x.double(), y, method, seed=0,
                                eps=eps, **options)
    same = ((got - ref).abs() < 1e-5).double().mean()
    assert float(same) >= agree
    assert float((got - x.double()).abs().max()) <= eps + 1e-6
    assert float(got.min()) >= 0 and float(got.max()) <= 1


# --------------------------------------------------------------------------- CUDA only
@pytest.mark.gpu
def test_hmc_steps_on_cuda_match_the_cpu(cuda):
    """A float64 Gaussian target: momenta and uniforms come from the CPU generator, so 60
    iterations on CUDA take the CPU's accept decisions and positions to 1e-9."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    precision = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)

    def potential(q):
        p = precision.to(q.device)
        grad = p @ (q - 1)
        return 0.5 * float((q - 1) @ grad), grad

    args = dict(n_samples=30, warmup=30, steps=4, mass="diag", seed=3)
    init = torch.zeros(6, dtype=torch.float64)
    cpu, cpu_diag = bl.mcmc.sample(potential, init, **args)
    gpu, gpu_diag = bl.mcmc.sample(potential, init.to(cuda), **args)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9)
    assert gpu_diag["divergences"] == cpu_diag["divergences"]


@pytest.mark.gpu
def test_network_hmc_on_cuda_is_deterministic_and_leaves_cuda_rng_alone(cuda, tiny_data):
    x, y = tiny_data
    net = nets.build("fc2", hidden=8, in_shape=[1, 8, 8])
    state = torch.cuda.get_rng_state()
    args = dict(n_samples=3, warmup=3, steps=3, init="random", chains=2, seed=1,
                progress=False, device=cuda)
    a = bl.train.hmc(net, x, y, **args)
    b = bl.train.hmc(net, x, y, **args)
    assert torch.equal(torch.cuda.get_rng_state(), state)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


@pytest.mark.gpu
def test_vi_fit_on_cuda_is_deterministic_and_close_to_the_cpu(cuda, tiny_data):
    """VI noise comes from a device generator: CUDA and CPU fits differ (their keys differ
    too); two CUDA fits are bit-identical and both fits learn (accuracy within 0.1)."""
    x, y = tiny_data
    net = nets.build("fc2", hidden=16, in_shape=[1, 8, 8])
    args = dict(epochs=3, lr=0.01, n_samples=4, seed=2, progress=False)
    a = bl.train.vi(net, x.to(cuda), y.to(cuda), **args)
    b = bl.train.vi(net, x.to(cuda), y.to(cuda), **args)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    cpu = bl.train.vi(net, x, y, **args)
    assert abs(a.accuracy(x, y) - cpu.accuracy(x, y)) <= 0.1


@pytest.mark.gpu
def test_balanced_subset_of_cuda_labels(cuda):
    y = torch.arange(200) % 10
    assert torch.equal(bl.data.balanced_subset(y.to(cuda), n=50, seed=4),
                       bl.data.balanced_subset(y, n=50, seed=4))


def _artifact_bytes(run_dir):
    from bayeslrp.fileio import sha256_file

    root = run_dir / "artifacts"
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".safetensors", ".parquet")}  # meta: timestamps


@pytest.mark.gpu
def test_tiny_grid_twice_on_cuda_gives_identical_bytes(cuda, tmp_path):
    from bayeslrp.experiment import runner
    from bayeslrp.fileio import sha256_file
    from test_runner import TINY

    a = runner.run_experiment(TINY, tmp_path / "a", device="cuda")
    b = runner.run_experiment(TINY, tmp_path / "b", device="cuda")
    assert sha256_file(a.results) == sha256_file(b.results)
    assert _artifact_bytes(tmp_path / "a") == _artifact_bytes(tmp_path / "b")
    cpu = runner.plan_run(TINY, tmp_path / "c", device="cpu")
    cpu_keys = {t.key for t in cpu.parts[0].grid.tasks if t.stage == "train"}
    cuda_keys = {t.key for t in a.plan.parts[0].grid.tasks if t.stage == "train"}
    assert not cpu_keys & cuda_keys


@pytest.mark.gpu
def test_ray_with_gpus_matches_local_cuda(cuda, tmp_path):
    pytest.importorskip("ray")
    from bayeslrp.experiment import runner
    from bayeslrp.fileio import sha256_file
    from test_runner import TINY

    local = runner.run_experiment(TINY, tmp_path / "local", device="cuda")
    ray_run = runner.run_experiment(TINY, tmp_path / "ray", device="cuda", executor="ray")
    assert sha256_file(ray_run.results) == sha256_file(local.results)
