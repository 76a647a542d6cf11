"""DDBM teachers (alexzhou907/DDBM, ADM UNets) into a Diffusers [`~diffusers.UNet2DModel`] for the consistency-bridge stack.

The released DDBM checkpoints (edges→handbags 64×64, DIODE 256×256; ``ema_*.pt``) are plain state dicts of
the guided-diffusion-style ``UNetModel`` trained with ``train_ddbm.sh``: scale-shift norm, 64 channels per
attention head, ResBlock up/down-sampling, the source image concatenated on channels. That network is
exactly a ``UNet2DModel`` with ``ResnetDownsampleBlock2D`` / ``AttnDownBlock2D`` (``downsample_type="resnet"``),
``ResnetUpsampleBlock2D`` / ``AttnUpBlock2D`` (``upsample_type="resnet"``), ``resnet_time_scale_shift=
"scale_shift"`` and ``in_channels = 2 * out_channels``: what [`~hfgen.pipelines.ConsistencyBridgePipeline`]
calls as ``unet([c_in x_t, y], c_noise)`` and the CBD/CBT trainers start from.

The architecture is not stored in the checkpoint, so it is given by the training arguments (presets for the
two released models). Only ``torch.load(weights_only=True)`` or safetensors are read, and every tensor must
be mapped.
"""

from __future__ import annotations

import os

import torch

from hfgen.convert._common import ConversionError, KeyMapper, finish_conversion, read_checkpoint

# alexzhou907/DDBM (code and the huggingface.co/alexzhou907/DDBM checkpoints its README links) states no licence:
# no LICENSE file in the repository, none in the README.
LICENSE = dict(license="unknown", license_source="alexzhou907/DDBM states no licence for its code or checkpoints")

# ``train_ddbm.sh`` / ``args.sh`` (DDBM @ 1a928343): e2h: 64 px, 192 channels, 3 res blocks; diode: 256 px, 256, 2
PRESETS = {
    "e2h": dict(image_size=64, num_channels=192, num_res_blocks=3, channel_mult=(1, 2, 3, 4)),
    "diode": dict(image_size=256, num_channels=256, num_res_blocks=2, channel_mult=(1, 1, 2, 2, 4, 4)),
}


def unet_config(image_size: int, num_channels: int, num_res_blocks: int, channel_mult, attention_resolutions="32,16,8",
                num_head_channels: int = 64, in_channels: int = 3) -> dict:
    """The ``UNet2DModel`` config of a DDBM ``UNetModel`` (``condition_mode="concat"``, ``resblock_updown=True``)."""
    channel_mult = tuple(int(m) for m in (channel_mult.split(",") if isinstance(channel_mult, str) else channel_mult))
    if isinstance(attention_resolutions, str):
        attention_resolutions = [int(r) for r in attention_resolutions.split(",")]
    elif isinstance(attention_resolutions, int):
        attention_resolutions = [attention_resolutions]
    attention_ds = {image_size // int(r) for r in attention_resolutions}
    if num_head_channels < 1:
        raise ValueError("`num_head_channels` must be positive (the released DDBM models use 64).")
    with_attention = [2 ** level in attention_ds for level in range(len(channel_mult))]
    return dict(
        sample_size=image_size, in_channels=2 * in_channels, out_channels=in_channels,
        block_out_channels=tuple(int(m * num_channels) for m in channel_mult), layers_per_block=num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in with_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(with_attention)),
        downsample_type="resnet", upsample_type="resnet", resnet_time_scale_shift="scale_shift",
        attention_head_dim=num_head_channels, norm_num_groups=32, attn_norm_num_groups=32, norm_eps=1e-5,
        flip_sin_to_cos=True, freq_shift=0, time_embedding_type="positional", act_fn="silu", dropout=0.0,
    )


def _resnet(mapper, src, dst, out):
    for s, d in (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
                 ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")):
        for p in ("weight", "bias"):
            if f"{dst}.{d}.{p}" in out["__expected__"]:
                out[f"{dst}.{d}.{p}"] = mapper.take(f"{src}.{s}.{p}")


def _attention(mapper, src, dst, out):
    out[f"{dst}.group_norm.weight"] = mapper.take(f"{src}.norm.weight")
    out[f"{dst}.group_norm.bias"] = mapper.take(f"{src}.norm.bias")
    qkv_w, qkv_b = mapper.take(f"{src}.qkv.weight"), mapper.take(f"{src}.qkv.bias")
    if qkv_w is not None and qkv_b is not None:
        # flash attention reads qkv as '(three h d)': q, k, v are the three thirds, heads split inside each
        for name, w, b in zip(("to_q", "to_k", "to_v"), qkv_w.reshape(qkv_w.shape[0], -1).chunk(3), qkv_b.chunk(3)):
            out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = w, b
    w = mapper.take(f"{src}.proj_out.weight")
    out[f"{dst}.to_out.0.weight"] = None if w is None else w.reshape(w.shape[0], -1)
    out[f"{dst}.to_out.0.bias"] = mapper.take(f"{src}.proj_out.bias")


def convert_state_dict(state: dict, config: dict, expected: set[str]) -> dict:
    """Official ``UNetModel`` keys to ``UNet2DModel`` keys; refuses leftovers and absences by name."""
    mapper = KeyMapper(state, "the DDBM checkpoint")
    out = {"__expected__": expected}
    for s, d in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                 ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")):
        out[f"{d}.weight"], out[f"{d}.bias"] = mapper.take(f"{s}.weight"), mapper.take(f"{s}.bias")
    levels, blocks = len(config["block_out_channels"]), config["layers_per_block"]
    attn_down = [t == "AttnDownBlock2D" for t in config["down_block_types"]]
    index = 1
    for level in range(levels):
        for j in range(blocks):
            _resnet(mapper, f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", out)
            if attn_down[level]:
                _attention(mapper, f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}", out)
            index += 1
        if level != levels - 1:
            _resnet(mapper, f"input_blocks.{index}.0", f"down_blocks.{level}.downsamplers.0", out)
            index += 1
    _resnet(mapper, "middle_block.0", "mid_block.resnets.0", out)
    _attention(mapper, "middle_block.1", "mid_block.attentions.0", out)
    _resnet(mapper, "middle_block.2", "mid_block.resnets.1", out)
    index = 0
    for up in range(levels):
        has_attention = attn_down[levels - 1 - up]
        for i in range(blocks + 1):
            _resnet(mapper, f"output_blocks.{index}.0", f"up_blocks.{up}.resnets.{i}", out)
            if has_attention:
                _attention(mapper, f"output_blocks.{index}.1", f"up_blocks.{up}.attentions.{i}", out)
            if up != levels - 1 and i == blocks:
                _resnet(mapper, f"output_blocks.{index}.{2 if has_attention else 1}", f"up_blocks.{up}.upsamplers.0", out)
            index += 1
    mapper.finish()
    del out["__expected__"]
    return out


def convert_ddbm(source: str | os.PathLike, output: str | os.PathLike | None = None, *, preset: str | None = None,
                 image_size: int | None = None, num_channels: int | None = None, num_res_blocks: int | None = None,
                 channel_mult=None, attention_resolutions="32,16,8", num_head_channels: int = 64, in_channels: int = 3,
                 torch_dtype: torch.dtype = torch.float32):
    r"""Convert a DDBM ``UNetModel`` checkpoint into a Diffusers ``UNet2DModel``.

    Args:
        source (`str` or `os.PathLike`): the checkpoint (``ema_0.9999_*.pt``, read with ``weights_only=True``) or a
            safetensors file.
        output (`str` or `os.PathLike`, *optional*): where to save the ``UNet2DModel``.
        preset (`str`, *optional*): ``"e2h"`` (edges→handbags 64×64) or ``"diode"`` (DIODE 256×256): the training
            arguments of the released models; explicit arguments below override it.
        image_size, num_channels, num_res_blocks, channel_mult, attention_resolutions, num_head_channels, in_channels:
            DDBM's training arguments (``--image_size`` ...).
        torch_dtype (`torch.dtype`, defaults to `torch.float32`): dtype of the saved weights.
    """
    from diffusers import UNet2DModel

    if preset is not None and preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset!r}.")
    args = dict(PRESETS.get(preset, {}))
    args.update({k: v for k, v in dict(image_size=image_size, num_channels=num_channels, num_res_blocks=num_res_blocks,
                                       channel_mult=channel_mult).items() if v is not None})
    missing = [k for k in ("image_size", "num_channels", "num_res_blocks", "channel_mult") if k not in args]
    if missing:
        raise ValueError(f"Give a `preset` or the training arguments {missing}.")
    config = unet_config(attention_resolutions=attention_resolutions, num_head_channels=num_head_channels,
                         in_channels=in_channels, **args)
    checkpoint, _ = read_checkpoint(source)
    if "state_dict" in checkpoint or "model" in checkpoint:
        checkpoint = checkpoint.get("state_dict", checkpoint.get("model"))
    unet = UNet2DModel(**config)
    converted = convert_state_dict(dict(checkpoint), config, set(unet.state_dict()))
    if any(v is None for v in converted.values()):
        raise ConversionError("the DDBM checkpoint is missing tensors (see above).")
    usage = f"""
import torch
from diffusers import UNet2DModel
from hfgen.pipelines import BridgeScheduler, ConsistencyBridgePipeline

unet = UNet2DModel.from_pretrained("{output}")
# the teacher sampled with DBIM under the schedule it was trained with (the released models: VP, beta_min=0.1,
# beta_d=2, sigma_data=0.5; args.sh)
scheduler = BridgeScheduler(noise_schedule="vp", beta_min=0.1, beta_d=2.0, sigma_data=0.5, solver="dbim")
pipe = ConsistencyBridgePipeline(unet, scheduler)
images = pipe(image=source_images, num_inference_steps=20).images
"""
    return finish_conversion(unet, converted, torch_dtype=torch_dtype, output=output, kind="ddbm", source=source,
                             usage=usage, method="consistency_bridge", **LICENSE)
