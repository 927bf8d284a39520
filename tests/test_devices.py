"""The device path checked on the CPU: validation, torch's flags, Ray options, device moves."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from bayeslrp import devices, nets
from bayeslrp.ensemble import Ensemble
from bayeslrp.errors import BayesLRPError


@pytest.fixture
def torch_state():
    """Restore torch's determinism state and the cuBLAS variable after a test."""
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
             torch.backends.cudnn.rnn.fp32_precision, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
     torch.backends.cudnn.rnn.fp32_precision, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.benchmark) = saved[:5]
    torch.use_deterministic_algorithms(saved[5])
    if saved[6] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[6]


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _fake_cuda(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


# --------------------------------------------------------------------------- validation
def test_resolve_device_values(monkeypatch):
    _no_cuda(monkeypatch)
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device(" CPU ") == torch.device("cpu")
    _fake_cuda(monkeypatch, 2)
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("spec, fake, match", [
    ("cuda", None, "CUDA is not available"),
    ("cuda:1", None, "CUDA is not available"),
    ("cuda:2", 2, r"only 2 CUDA device\(s\) exist \(cuda:0 .. cuda:1\)"),
    ("gpu", 2, "unknown device 'gpu'"),
    ("cuda:-1", 2, "unknown device"),
    ("mps", None, "mps is not supported"),
])
def test_resolve_device_refuses_with_one_line(monkeypatch, spec, fake, match):
    if fake is None:
        _no_cuda(monkeypatch)
    else:
        _fake_cuda(monkeypatch, fake)
    with pytest.raises(BayesLRPError, match=match) as info:
        devices.resolve_device(spec)
    assert "\n" not in str(info.value)


def test_device_type_of_specs(monkeypatch):
    _no_cuda(monkeypatch)
    assert [devices.device_type(s) for s in ("cpu", "auto", "cuda", "cuda:3")] == \
        ["cpu", "cpu", "cuda", "cuda"]
    with pytest.raises(BayesLRPError, match="mps"):
        devices.device_type("mps")


def test_mps_in_a_config_is_refused_before_anything_is_written(tmp_path):
    from bayeslrp.experiment import runner
    from test_runner import TINY

    with pytest.raises(BayesLRPError, match="mps is not supported"):
        runner.plan_run({**TINY, "device": "mps"}, tmp_path / "r")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- torch's flags
def test_configure_torch_sets_the_flags_in_torch(torch_state, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.use_deterministic_algorithms(False)
    facts = devices.configure_torch(torch.device("cpu"))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert not torch.are_deterministic_algorithms_enabled()  # CPU kernels: left as they were
    assert facts["tf32_matmul"] is False and facts["tf32_cudnn"] is False
    assert facts["cudnn_deterministic"] is True and facts["deterministic_algorithms"] is False
    # CUDA (no GPU needed: nothing is started): deterministic algorithms and cuBLAS's setting
    facts = devices.configure_torch("cuda")
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    assert facts["deterministic_algorithms"] is True and facts["device_type"] == "cuda"
    assert facts["cublas_workspace_config"] == devices.CUBLAS_WORKSPACE


def test_configure_torch_refuses_a_nondeterministic_cublas_setting(torch_state, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with pytest.raises(BayesLRPError, match="CUBLAS_WORKSPACE_CONFIG"):
        devices.configure_torch("cuda")


def test_default_tf32_state_is_read_as_on(torch_state):
    # torch's default ("none" inherited up to the global "none") lets cuDNN convolutions use
    # TF32: the manifest facts must not claim otherwise
    torch.backends.cudnn.conv.fp32_precision = "none"
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    if torch.backends.cudnn.fp32_precision == "none" and torch.backends.fp32_precision == "none":
        assert devices.torch_facts("cpu")["tf32_cudnn"] is True
    assert devices.torch_facts("cpu")["tf32_matmul"] is True


# --------------------------------------------------------------------------- Ray options
def test_ray_task_options_carry_gpus_for_cuda():
    from bayeslrp.experiment.ray_executor import task_options

    cuda = task_options("cuda:1", cpus_per_task=2.0)
    assert cuda["num_gpus"] == 1.0 and cuda["num_cpus"] == 2.0
    assert cuda["runtime_env"]["env_vars"]["CUBLAS_WORKSPACE_CONFIG"] == devices.CUBLAS_WORKSPACE
    assert task_options("cuda", gpus_per_task=0.5)["num_gpus"] == 0.5
    assert task_options("cpu") == {"num_cpus": 1.0}


def test_ray_slots_are_capped_by_gpus():
    from bayeslrp.experiment.ray_executor import slot_count

    resources = {"CPU": 16.0, "GPU": 2.0}
    assert slot_count(resources, "cpu") == 16
    assert slot_count(resources, "cuda") == 2
    assert slot_count(resources, "cuda", gpus_per_task=0.5) == 4
    assert slot_count(resources, "cuda", slots=1) == 1
    with pytest.raises(BayesLRPError, match="has 0 GPU"):
        slot_count({"CPU": 8.0}, "cuda:0")


def test_ray_worker_maps_cuda_to_its_assigned_gpu():
    from bayeslrp.experiment.ray_executor import worker_device

    assert worker_device("cuda:3", [5]) == "cuda:0"
    assert worker_device("cuda", [0]) == "cuda:0"
    assert worker_device("cpu", []) == "cpu"
    with pytest.raises(BayesLRPError, match="no GPU"):
        worker_device("cuda:1", [])


def test_ray_executor_hands_the_options_to_ray(tmp_path, monkeypatch):
    """The executor object asks Ray for GPUs on a CUDA run (a stand-in Ray: no cluster)."""
    from bayeslrp.experiment import ray_executor
    from bayeslrp.experiment.stages import StageContext
    from bayeslrp.experiment.store import Store

    seen = {}

    class FakeRay:
        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def cluster_resources():
            return {"CPU": 8.0, "GPU": 3.0}

        @staticmethod
        def remote(**options):
            seen.update(options)
            return lambda fn: fn

    monkeypatch.setattr(ray_executor, "_import_ray", lambda: FakeRay)
    ex = ray_executor.RayExecutor(Store(tmp_path), StageContext(device="cuda:1"))
    assert seen["num_gpus"] == 1.0 and ex.options["num_gpus"] == 1.0 and ex.slots == 3
    seen.clear()
    ex = ray_executor.RayExecutor(Store(tmp_path), StageContext(device="cpu"))
    assert "num_gpus" not in seen and ex.slots == 8


# --------------------------------------------------------------------------- device moves
def test_logits_moves_x_to_the_ensemble_device(monkeypatch):
    ens = Ensemble.from_module(nets.build("fc2", hidden=8, in_shape=[1, 4, 4])).to("meta")
    devices_seen = []
    forward = Ensemble._forward_params

    def spy(self, params, x):
        devices_seen.append(x.device.type)
        return forward(self, params, x)

    monkeypatch.setattr(Ensemble, "_forward_params", spy)
    out = ens.logits(torch.zeros(3, 1, 4, 4))
    assert devices_seen == ["meta"] and out.device.type == "meta"


def test_execute_task_refuses_a_task_keyed_for_another_device(tmp_path):
    from bayeslrp.experiment import runner
    from bayeslrp.experiment.grid import expand_grid
    from bayeslrp.experiment.stages import StageContext
    from bayeslrp.experiment.store import Store
    from test_runner import TINY

    grid = expand_grid(TINY, device_type="cuda")
    train = next(t for t in grid.tasks if t.stage == "train")
    with pytest.raises(BayesLRPError, match="keyed for device cuda but would run on cpu"):
        runner.execute_task(train, Store(tmp_path), StageContext(device="cpu"))
    data = next(t for t in grid.tasks if t.stage == "data")
    assert "device" not in data.params  # device-independent stages keep their keys


def test_net_seeding_leaves_every_generator_as_it_was():
    state = torch.random.get_rng_state()
    a = nets.build("fc2", seed=3, hidden=8, in_shape=[1, 4, 4])
    assert torch.equal(torch.random.get_rng_state(), state)
    b = nets.build("fc2", seed=3, hidden=8, in_shape=[1, 4, 4])
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


# --------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("out", [(1, 1), (3, 4), (2, 2)])
def test_adaptive_pool_transpose_equals_the_autograd_transpose(out):
    """Oracle: autograd's vector-Jacobian product of the pool (float64; 1 x 1 bit-exact)."""
    from bayeslrp.lrp.pooling import adaptive_avg_pool_transpose

    g = torch.Generator().manual_seed(0)
    ratio = torch.randn(2, 5, *out, generator=g, dtype=torch.float64)
    probe = torch.zeros(2, 5, 7, 9, dtype=torch.float64, requires_grad=True)
    (ref,) = torch.autograd.grad(F.adaptive_avg_pool2d(probe, out), probe, ratio)
    got = adaptive_avg_pool_transpose(ratio, (7, 9))
    if out == (1, 1):
        assert torch.equal(got, ref)
    else:
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


def test_global_pool_is_adaptive_pooling_on_the_cpu():
    x = torch.randn(4, 64, 8, 8, generator=torch.Generator().manual_seed(1))
    pool = nets.GlobalAvgPool2d()
    assert isinstance(pool, torch.nn.AdaptiveAvgPool2d)
    assert torch.equal(pool(x), F.adaptive_avg_pool2d(x, 1))
    assert torch.allclose(pool(x), x.mean((-2, -1), keepdim=True), rtol=1e-6, atol=1e-7)


def test_lrp_chunks_grow_with_device_memory(monkeypatch):
    from bayeslrp.lrp import engine

    assert engine.device_limits(torch.device("cpu"), 1 << 30) == (engine.WORKING_SET, 1 << 30)

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    working, budget = engine.device_limits(torch.device("cuda"), 1 << 30)
    assert working == 80 * 2**30 // 64 and budget == 10 * 2**30
    assert devices.memory_budget("cuda:0", 1 << 20) == 10 * 2**30
    assert devices.memory_budget("cpu", 1 << 20) == 1 << 20
    fp = (2 << 20, 1 << 20)  # 2 MiB per (sample, image) pair, 1 MiB largest activation
    cpu = engine._plan(100, 500, fp, 1 << 30, keep_samples=False)
    gpu = engine._plan(100, 500, fp, budget, keep_samples=False, working=working)
    assert cpu == (1, 4) and gpu == (1, 500)
