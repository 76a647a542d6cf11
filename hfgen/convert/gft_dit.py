"""GFT's released DiT-B/2 and DiT-XL/2 (thu-ml/GFT, ``DiT/``) into [`~hfgen.pipelines.gft.GFTDiTTransformer2DModel`].

The official checkpoints are DiT's own format (a bare state dict, or ``train.py``'s ``{"model", "ema", "opt",
"args"}``, read with ``torch.load(weights_only=True)`` plus ``argparse.Namespace`` for ``args``). The
architecture is read off the tensor shapes; the head count, which shapes do not carry, follows the DiT family
(S: 384/6, B: 768/12, L: 1024/16, XL: 1152/16) unless given. The fixed sin-cos ``pos_embed`` is checked against
the one Diffusers computes, and the shared timestep / class / β embedders are copied into every block (Diffusers'
DiT keeps one copy per block). Only the ``beta_in="linear"`` form of the released models is known; a checkpoint
with another β embedder is refused by name.
"""

from __future__ import annotations

import argparse
import os
import re

import torch

from hfgen.convert._common import ConversionError, KeyMapper, finish_conversion, read_checkpoint

# The released DiT checkpoints (huggingface.co/aaa-ceku7/GFT, linked from thu-ml/GFT's README) are trained with
# thu-ml/GFT's DiT/ code, which is facebookresearch/DiT's (DiT/models.py keeps Meta's header); DiT-XL-GF-finetune
# fine-tunes Meta's DiT-XL/2 weights. facebookresearch/DiT's code and weights are CC BY-NC 4.0 (its LICENSE.txt);
# thu-ml/GFT's own LICENSE is MIT. The non-commercial licence of the weights it descends from is the one that binds.
LICENSE = dict(license="cc-by-nc-4.0", license_source="weights fine-tuned from facebookresearch/DiT's, CC BY-NC 4.0; "
               "thu-ml/GFT's code is MIT")

DIT_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}


def _state(checkpoint: dict, use_ema: bool) -> dict:
    for key in (("ema", "model") if use_ema else ("model", "ema")):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def convert_gft_dit(source: str | os.PathLike, output: str | os.PathLike | None = None, *, num_heads: int | None = None,
                    use_ema: bool = True, torch_dtype: torch.dtype = torch.float32):
    r"""Convert a GFT (or plain) DiT checkpoint with a linear β embedder.

    Args:
        source (`str` or `os.PathLike`): the ``.pt`` checkpoint (``torch.load(weights_only=True)``) or safetensors.
        output (`str` or `os.PathLike`, *optional*): where to save the model.
        num_heads (`int`, *optional*): attention heads; defaults from the width (DiT-S/B/L/XL).
        use_ema (`bool`, defaults to `True`): take ``checkpoint["ema"]`` when the file holds both.
        torch_dtype (`torch.dtype`, defaults to `torch.float32`): dtype of the saved weights.

    Returns:
        [`GFTDiTTransformer2DModel`] in eval mode.
    """
    from hfgen.pipelines.gft.modeling_gft_dit import GFTDiTTransformer2DModel

    # DiT's (and GFT's) train.py saves {"model", "ema", "opt", "args"} with ``args`` an argparse.Namespace of the
    # command line: that class, and nothing else, joins the weights_only allowlist
    checkpoint, _ = read_checkpoint(source, safe_globals=(argparse.Namespace,))
    state = dict(_state(checkpoint, use_ema))
    for key in ("x_embedder.proj.weight", "pos_embed", "final_layer.linear.weight", "y_embedder.embedding_table.weight"):
        if key not in state:
            raise ConversionError(f"the GFT DiT checkpoint does not match the expected architecture; missing tensors: {key}.")
    hidden, in_channels, patch, _ = state["x_embedder.proj.weight"].shape
    num_patches = state["pos_embed"].shape[1]
    grid = int(round(num_patches ** 0.5))
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    out_channels = state["final_layer.linear.weight"].shape[0] // (patch * patch)
    num_classes = state["y_embedder.embedding_table.weight"].shape[0] - 1
    heads = num_heads or DIT_HEADS.get(hidden)
    if heads is None or hidden % heads:
        raise ConversionError(f"cannot tell the head count of a DiT of width {hidden}; pass `num_heads`.")
    beta_dim = state["t_embedder.cond_proj.weight"].shape[1] if "t_embedder.cond_proj.weight" in state else None
    model = GFTDiTTransformer2DModel(num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=in_channels,
                                     out_channels=out_channels, num_layers=depth, sample_size=grid * patch, patch_size=patch,
                                     num_embeds_ada_norm=num_classes, beta_cond_proj_dim=beta_dim)
    if not torch.allclose(state["pos_embed"].float().reshape(-1), model.pos_embed.pos_embed.float().reshape(-1), atol=1e-5):
        raise ConversionError("the checkpoint's pos_embed is not DiT's fixed 2-D sin-cos table; this converter cannot map it.")

    mapper = KeyMapper(state, "the GFT DiT checkpoint")
    mapper.take("pos_embed")
    out = {}
    for p in ("weight", "bias"):
        out[f"pos_embed.proj.{p}"] = mapper.take(f"x_embedder.proj.{p}")
        out[f"proj_out_1.{p}"] = mapper.take(f"final_layer.adaLN_modulation.1.{p}")
        out[f"proj_out_2.{p}"] = mapper.take(f"final_layer.linear.{p}")
    for i in range(depth):
        b, emb = f"transformer_blocks.{i}", f"transformer_blocks.{i}.norm1.emb"
        for p in ("weight", "bias"):
            out[f"{emb}.timestep_embedder.linear_1.{p}"] = mapper.take(f"t_embedder.mlp.0.{p}")
            out[f"{emb}.timestep_embedder.linear_2.{p}"] = mapper.take(f"t_embedder.mlp.2.{p}")
            out[f"{b}.norm1.linear.{p}"] = mapper.take(f"blocks.{i}.adaLN_modulation.1.{p}")
            qkv = mapper.take(f"blocks.{i}.attn.qkv.{p}")
            if qkv is not None:  # timm's fused qkv: (3, heads, hd) on the output axis
                out[f"{b}.attn1.to_q.{p}"], out[f"{b}.attn1.to_k.{p}"], out[f"{b}.attn1.to_v.{p}"] = qkv.chunk(3)
            out[f"{b}.attn1.to_out.0.{p}"] = mapper.take(f"blocks.{i}.attn.proj.{p}")
            out[f"{b}.ff.net.0.proj.{p}"] = mapper.take(f"blocks.{i}.mlp.fc1.{p}")
            out[f"{b}.ff.net.2.{p}"] = mapper.take(f"blocks.{i}.mlp.fc2.{p}")
        if beta_dim is not None:
            out[f"{emb}.timestep_embedder.cond_proj.weight"] = mapper.take("t_embedder.cond_proj.weight")
        out[f"{emb}.class_embedder.embedding_table.weight"] = mapper.take("y_embedder.embedding_table.weight")
    usage = f"""
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler
from hfgen.models.gft_dit import GFTDiTTransformer2DModel
from hfgen.pipelines import GuidanceFreePipeline

transformer = GFTDiTTransformer2DModel.from_pretrained("{output}")
# the sampler of the paper's evaluation (thu-ml/GFT DiT/eval.sh + dpm_sample.py): DPM-Solver++ 2nd order, 50 steps;
# its defaults are DiT's schedule (linear betas 1e-4 .. 0.02 over 1000 steps, epsilon prediction)
scheduler = DPMSolverMultistepScheduler(solver_order=2)
pipe = GuidanceFreePipeline(transformer=transformer, scheduler=scheduler)
latents = pipe(class_labels=[207, 360, 387, 974], beta=1 / 1.5, num_inference_steps=50,
               generator=torch.Generator().manual_seed(0), output_type="latent").images
# ONE transformer call per step at temperature beta = 1/cfg_scale (the learned-sigma channels are dropped);
# guidance="cfg", guidance_scale=1.5 gives classifier-free guidance (two passes per step) for comparison.
# The official script feeds the network t + 1 for the scheduler's t; the pipeline feeds t, as Diffusers' DiTPipeline.
vae = AutoencoderKL.from_pretrained("stabilityai/sd-vae-ft-ema")  # DiT's VAE
images = vae.decode(latents / 0.18215).sample  # in [-1, 1]
"""
    return finish_conversion(model, out, torch_dtype=torch_dtype, output=output, kind="gft-dit", source=source,
                             usage=usage, method="gft", mapper=mapper, card_vars={"kind": "dit"}, **LICENSE)
