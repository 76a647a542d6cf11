"""DDBM teachers: ``hfgen convert ddbm`` maps the official ADM UNet onto a Diffusers ``UNet2DModel`` exactly.

``scripts/golden/record_ddbm.py`` built the official ``UNetModel`` (alexzhou907/DDBM, ``ddbm/unet.py``, run from a
checkout; provenance in ``tests/golden/data/ddbm/unet.provenance.json``) tiny with the released models' options
(scale-shift norm, ResBlock up/down-sampling, fixed channels per head, concatenated source), filled every tensor
with :func:`seeded_weight`, and recorded the tensors' names, shapes and sums with the network's output on fixed
``(x_t, y, c_noise)``. Here the same weights are regenerated (their sums checked), saved as a ``torch.save``
state dict (read back with ``weights_only=True``), converted, and the converted UNet must give the recorded output.

Broken on purpose (then restored): reading the flash-attention ``qkv`` as the legacy ``(h three d)`` layout
(q, k, v interleaved per head) gives a max abs diff of 0.83 (fails; clean: 4.2e-6 on outputs of order 5); swapping ``norm1``/``norm2`` in the
ResBlock mapping is refused before any output (``norm1.weight`` has shape (64,), the model expects (32,)).
"""

from collections import OrderedDict

import pytest
import torch

from hfgen.convert import ConversionError, convert
from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline
from tests.golden.recorded import load_recording

TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="8",
            num_head_channels=32)
# the same network in the official ``UNetModel``'s arguments (``attention_resolutions`` as downsampling rates)
TINY_OFFICIAL = dict(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                     attention_resolutions=[2], channel_mult=(1, 2), num_head_channels=32, use_scale_shift_norm=True,
                     resblock_updown=True, condition_mode="concat")
GRAY = dict(TINY_OFFICIAL, image_size=8, in_channels=1, out_channels=1)


def seeded_weight(name, shape, index):
    """The ``index``-th tensor of a recorded state dict: ``N(0, 0.1^2)`` from seed ``1000 + index``, plus 1 for
    normalisation scales (``*norm.weight``, and the GroupNorms at index 0 of ``in_layers``/``out_layers``/``out``)."""
    g = torch.Generator().manual_seed(1000 + index)
    scale = name.endswith("norm.weight") or ".0.weight" in name and len(shape) == 1
    return torch.randn(tuple(shape), generator=g) * 0.1 + (1.0 if scale else 0.0)


def recorded_state(name="unet"):
    """The official state dict of recording ``ddbm/<name>``, in its order, regenerated from the seeds."""
    recording, _ = load_recording("ddbm", name)
    state = OrderedDict()
    for key in sorted(k for k in recording if k.startswith("shape.")):
        index, tensor_name = key.removeprefix("shape.").split(".", 1)
        state[tensor_name] = seeded_weight(tensor_name, recording[key].tolist(), int(index))
        if f"sum.{index}.{tensor_name}" in recording:
            torch.testing.assert_close(state[tensor_name].double().sum(), recording[f"sum.{index}.{tensor_name}"],
                                       rtol=1e-12, atol=1e-9)
    return state, recording


@pytest.fixture
def checkpoint(tmp_path):
    state, recording = recorded_state()
    path = tmp_path / "ema_0.9999_tiny.pt"
    torch.save(state, path)
    return state, recording, path


def test_parity_and_pipeline(checkpoint, tmp_path):
    _, recording, path = checkpoint
    unet = convert("ddbm", path, tmp_path / "teacher", **TINY)
    assert unet.config.in_channels == 6 and unet.config.down_block_types == ("ResnetDownsampleBlock2D", "AttnDownBlock2D")
    x, y, c_noise, want = recording["x"], recording["xT"], recording["c_noise"], recording["output"]
    with torch.no_grad():
        got = unet(torch.cat([x, y], dim=1), c_noise).sample
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5
    # the converted folder is a teacher for ConsistencyBridgePipeline (and hence the CBD trainer)
    from diffusers import UNet2DModel

    pipe = ConsistencyBridgePipeline(UNet2DModel.from_pretrained(tmp_path / "teacher"), BridgeScheduler(solver="dbim"))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(image=torch.rand(1, 3, 16, 16) * 2 - 1, num_inference_steps=3, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 16, 16) and torch.isfinite(out.images).all()


def test_unmapped_missing_and_unsafe_sources_are_refused(checkpoint, tmp_path):
    state, _, _ = checkpoint
    torch.save({**state, "label_emb.weight": torch.zeros(10, 128)}, tmp_path / "extra.pt")
    with pytest.raises(ConversionError, match=r"unmapped tensors.*label_emb\.weight"):
        convert("ddbm", tmp_path / "extra.pt", **TINY)
    torch.save({k: v for k, v in state.items() if k != "middle_block.1.qkv.bias"}, tmp_path / "missing.pt")
    with pytest.raises(ConversionError, match=r"missing tensors: middle_block\.1\.qkv\.bias"):
        convert("ddbm", tmp_path / "missing.pt", **TINY)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled_module.pt")  # a pickled nn.Module, not tensors
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert("ddbm", tmp_path / "pickled_module.pt", **TINY)
    with pytest.raises(ValueError, match="preset"):
        convert("ddbm", tmp_path / "extra.pt", preset="imagenet")


def test_presets_match_the_released_training_arguments():
    from hfgen.convert.ddbm import PRESETS, unet_config

    e2h = unet_config(**PRESETS["e2h"])
    assert e2h["block_out_channels"] == (192, 384, 576, 768) and e2h["layers_per_block"] == 3
    assert e2h["down_block_types"] == ("ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    diode = unet_config(**PRESETS["diode"])
    assert diode["sample_size"] == 256 and diode["down_block_types"][-3:] == ("AttnDownBlock2D",) * 3
    assert diode["down_block_types"][:3] == ("ResnetDownsampleBlock2D",) * 3


def test_converted_teacher_distils_with_the_cbd_trainer(tmp_path):
    """CDBM's distillation (CBD) starts from the converted teacher: student initialised from it, teacher frozen."""
    import copy

    import numpy as np

    from hfgen.data.paired_digits import paired_digits_dataset
    from hfgen.trainers import ConsistencyBridgeConfig, ConsistencyBridgeTrainer

    torch.save(recorded_state("unet_gray_shapes")[0], tmp_path / "gray.pt")  # the official names and shapes
    teacher = convert("ddbm", tmp_path / "gray.pt", image_size=8, num_channels=32, num_res_blocks=1, channel_mult=(1, 2),
                      attention_resolutions="4", num_head_channels=32, in_channels=1)
    student = copy.deepcopy(teacher).train()
    args = ConsistencyBridgeConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, report_to=[],
                                   save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, dataloader_num_workers=0,
                                   mode="distillation", learning_rate=1e-3)
    data = paired_digits_dataset(size=8, split="test").select(range(8))
    before = [p.clone() for p in teacher.parameters()]
    trainer = ConsistencyBridgeTrainer(student, args, teacher=teacher, train_dataset=data)
    trainer.train()
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
