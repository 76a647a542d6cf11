"""Device and dtype hygiene of every pipeline and scheduler, checked without a GPU.

A stray tensor, one created on the default device instead of the input's (``torch.linspace(...)`` without
``device=``), crashes on a GPU as soon as it meets a CUDA tensor. On the CPU it goes unnoticed, because the
default device is the CPU too. Here the default device is ``meta`` while the models and inputs live on the
CPU: every tensor made on the input's device computes as usual, and every stray one is a meta tensor that
raises as soon as it meets a CPU tensor or is read ("Tensor on device meta is not on the expected device
cpu", "Cannot copy out of meta tensor"), the same checks a CUDA run makes.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._python_dispatch import TorchDispatchMode

from hfgen.testing.tiny_pipelines import PIPELINES


class StrayTensorsOnMeta(TorchFunctionMode):
    """Tensors created without a device land on ``meta`` (models and inputs are built outside, on the CPU).

    As ``torch.device("meta")`` used as a context manager, except that ``torch.as_tensor(tensor)`` keeps the
    tensor where it is, as it does without a default device.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        wraps_a_tensor = func in (torch.as_tensor, torch.asarray) and args and isinstance(args[0], torch.Tensor)
        if func in _device_constructors() and kwargs.get("device") is None and not wraps_a_tensor:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def stray_tensors_on_meta():
    return StrayTensorsOnMeta()


# transformers' tokenizers make CPU tensors by design (their pipelines move them), which the meta default catches
HOST_TENSORS_BY_DESIGN = {"popcorn"}


@pytest.mark.parametrize("name", sorted(set(PIPELINES) - HOST_TENSORS_BY_DESIGN))
def test_pipeline_creates_no_tensor_off_the_input_device(name):
    pipe, call = PIPELINES[name]()
    pipe.set_progress_bar_config(disable=True)
    reference = call(pipe, torch.Generator().manual_seed(0))
    with stray_tensors_on_meta():
        out = call(pipe, torch.Generator().manual_seed(0))
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, reference, rtol=0, atol=0)  # the same numbers: the guard changes nothing else


# ------------------------------------------------------------------------------------------ schedulers
#
# A scheduler's `step` on meta inputs: it must keep every tensor on the inputs' device (meta tensors raise when
# mixed with CPU ones) and never read a value back on the host (`.item()`, `bool(...)`, `.tolist()` raise on meta):
# the hot loop of sampling runs without a host sync.


def masked_schedulers():
    from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler

    for scheduler in (AncestralMaskedScheduler(), AncestralMaskedScheduler(sampling_dtype="float32"),
                      FirstHittingScheduler(), FirstHittingScheduler(tokens_per_step=2, parallel_solver="extrapolation"),
                      FirstHittingScheduler(tokens_per_step=2, parallel_solver="predictor_corrector")):
        yield type(scheduler).__name__ + "-" + str(dict(scheduler.config)), scheduler


@pytest.mark.parametrize("index", range(5))
def test_masked_scheduler_steps_on_the_inputs_device_without_host_syncs(index):
    name, scheduler = list(masked_schedulers())[index]
    meta = torch.device("meta")
    sample = torch.full((2, 6), 9, device=meta)
    scheduler.set_timesteps(3, device=meta, num_masked=torch.tensor([6, 6]))  # counts are known on the host
    for t in scheduler.timesteps:
        logits = torch.empty(2, 6, 10, device=meta)
        sample = scheduler.step(logits, t, sample, mask_token_id=9, forbidden_tokens=torch.zeros(10, dtype=torch.bool,
                                                                                                 device=meta)).prev_sample
    assert sample.device == meta and sample.shape == (2, 6), name


@pytest.mark.parametrize("preconditioning", ["euler", "variance", "analytic"])
def test_trajectory_scheduler_steps_on_the_inputs_device_without_host_syncs(preconditioning):
    from hfgen.pipelines import ConsistencyTrajectoryScheduler

    tables = {"statistics_log_t": [-7.0, 0.0, 5.0], "statistics_l": [1.0, 0.5, 0.0]} if preconditioning == "analytic" else {}
    scheduler = ConsistencyTrajectoryScheduler(preconditioning=preconditioning, gamma=0.5, **tables)
    meta = torch.device("meta")
    scheduler.set_timesteps(3, device=meta)
    sample = torch.empty(2, 3, device=meta)
    for t in scheduler.timesteps:
        sample = scheduler.step(torch.empty(2, 3, device=meta), t, scheduler.scale_model_input(sample, t)).prev_sample
    assert sample.device == meta


@pytest.mark.parametrize("solver", ["heun", "dbim", "consistency"])
def test_bridge_scheduler_steps_on_the_inputs_device_without_host_syncs(solver):
    from hfgen.pipelines import BridgeScheduler

    scheduler = BridgeScheduler(solver=solver, clip_denoised=True)
    meta = torch.device("meta")
    scheduler.set_timesteps(3, device=meta)
    source = sample = torch.empty(2, 1, 4, 4, device=meta)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        scheduler.c_noise(t)
        sample = scheduler.step(torch.empty_like(model_input), t, sample, source).prev_sample
    assert sample.device == meta


# ------------------------------------------------------------------------------------------ bf16


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_runs_in_bfloat16(name):
    pipe, call = PIPELINES[name]()
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch.bfloat16)
    out = call(pipe, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.float()).all()


# ------------------------------------------------------------------------------------------ hot loops


class CrossDeviceCopies(TorchDispatchMode):
    """Records every copy between devices (``.cpu()``, ``.to(device)``, ``copy_``) as ``(source, target, shape)``."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            source = args[1] if func is torch.ops.aten.copy_.default else args[0]
            target = args[0] if func is torch.ops.aten.copy_.default else out
            if source.device != target.device:
                self.copies.append((source.device.type, target.device.type, tuple(source.shape)))
        return out


def test_iisan_training_step_on_cached_states_copies_nothing_between_host_and_device():
    """The adapter on ``meta`` (a stand-in for a GPU: a meta tensor cannot be read on the host) with a CPU-built
    hidden-state cache: the cache moves to the device on the first forward, and a training step (forward and
    backward on item ids already on the device) then makes no host<->device copy at all."""
    from transformers import AutoModel

    from hfgen.adapters import IISANConfig, IISANModel
    from hfgen.data.recommendation import make_synthetic_recommendation, synthetic_backbone_configs

    data = make_synthetic_recommendation(num_users=20, seed=0)
    torch.manual_seed(0)
    model = IISANModel(IISANConfig(layers="group:3", pooling="mean"),
                       {m: AutoModel.from_config(c) for m, c in synthetic_backbone_configs().items()})
    model.set_item_inputs(data.item_inputs)
    model.cache_hidden_states(progress_bar=False)
    cache_shapes = {tuple(t.shape[1:]) for t in model.cache.values()}
    model.to("meta").train()
    ids = torch.arange(6, device="meta")
    model(item_ids=ids)  # warm-up: the cache moves to the adapter's device, once
    assert all(t.device.type == "meta" for t in model.cache.values())
    with CrossDeviceCopies() as recorder:
        for _ in range(2):
            model(item_ids=ids).item_embeddings.sum().backward()
    assert recorder.copies == []
    assert cache_shapes  # the states read were the cache's


def test_reference_models_sharded_with_a_device_map_are_not_moved():
    from hfgen.testing.tiny_models import tiny_llama
    from hfgen.trainers.utils import to_training_device

    sharded, plain = tiny_llama(), tiny_llama()
    sharded.hf_device_map = {"": "meta"}  # as from_pretrained(..., device_map=...) records it
    assert to_training_device(sharded, "meta") is sharded and sharded.device.type == "cpu"
    assert to_training_device(plain, "meta").device.type == "meta"
