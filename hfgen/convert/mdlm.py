"""MDLM and SEDD-absorb checkpoints (kuleshov-group/mdlm's DiT) into [`~hfgen.pipelines.masked_diffusion.MDLMDiTForMaskedLM`].

Sources understood (all share the official module names of ``models/dit.py``):

- a flat state dict of the ``DIT`` module (``vocab_embed.embedding``, ``sigma_map.mlp.0.weight``,
  ``rotary_emb.inv_freq``, ``blocks.{i}.…``, ``output_layer.…``), with or without a ``backbone.``
  prefix (the Lightning module's and the Hub ``MDLM`` wrapper's attribute), in safetensors;
- a Lightning checkpoint ``{"state_dict": ..., "ema": {"shadow_params": [...]}}`` readable with
  ``torch.load(weights_only=True)``; its EMA weights (what MDLM evaluates and samples with) are used
  unless ``use_ema=False``.

The architecture is read from the tensors' shapes (the head count from the rotary ``inv_freq``);
nothing is guessed. ``sedd-absorb`` differs from ``mdlm`` only in its configuration: SEDD is
time-conditioned (``time_conditioning=True``) and its output is a log score
(``parameterization="sedd"``).
"""

from __future__ import annotations

import os
import re

import torch

from hfgen.convert._common import (
    ConversionError,
    KeyMapper,
    finish_conversion,
    read_checkpoint,
    strip_prefix,
    tensors_only,
)

# kuleshov-group/mdlm-owt's Hub card: license apache-2.0; kuleshov-group/mdlm's LICENSE (which also releases the
# SEDD-absorb baseline checkpoint, README "Checkpoints"): Apache-2.0.
LICENSE = dict(license="apache-2.0", license_source="kuleshov-group/mdlm-owt model card and kuleshov-group/mdlm LICENSE")

# the official ``DDiTBlock`` names -> hfgen's ``MDLMDiTBlock`` names
_BLOCK = {
    "norm1.weight": "norm1.weight",
    "attn_qkv.weight": "qkv.weight",
    "attn_out.weight": "o_proj.weight",
    "norm2.weight": "norm2.weight",
    "mlp.0.weight": "fc1.weight",
    "mlp.0.bias": "fc1.bias",
    "mlp.2.weight": "fc2.weight",
    "mlp.2.bias": "fc2.bias",
    "adaLN_modulation.weight": "ada_ln.weight",
    "adaLN_modulation.bias": "ada_ln.bias",
}
_TOP = {
    "vocab_embed.embedding": "embed_tokens.weight",
    "sigma_map.mlp.0.weight": "sigma_embedding.linear_1.weight",
    "sigma_map.mlp.0.bias": "sigma_embedding.linear_1.bias",
    "sigma_map.mlp.2.weight": "sigma_embedding.linear_2.weight",
    "sigma_map.mlp.2.bias": "sigma_embedding.linear_2.bias",
    "output_layer.norm_final.weight": "norm.weight",
    "output_layer.linear.weight": "lm_head.weight",
    "output_layer.linear.bias": "lm_head.bias",
    "output_layer.adaLN_modulation.weight": "final_ada_ln.weight",
    "output_layer.adaLN_modulation.bias": "final_ada_ln.bias",
}
_BUFFERS = ("rotary_emb.inv_freq",)
KINDS = {"mdlm": {"time_conditioning": False, "parameterization": "subs"},
         "sedd-absorb": {"time_conditioning": True, "parameterization": "sedd"}}


def _dit_state(checkpoint: dict, use_ema: bool) -> dict[str, torch.Tensor]:
    """The ``DIT`` module's state dict: Lightning's ``state_dict`` (EMA weights swapped in) or a flat dict."""
    if "state_dict" in checkpoint:
        state = tensors_only(checkpoint["state_dict"], "the checkpoint's 'state_dict'")
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")} or state
        ema = checkpoint.get("ema")
        if use_ema and ema is not None:
            shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
            # ExponentialMovingAverage keeps one tensor per backbone parameter, in `parameters()` order, which is
            # the state-dict order without the buffers
            names = [k for k in state if k not in _BUFFERS]
            if not isinstance(shadow, list) or len(shadow) != len(names):
                raise ConversionError(f"the checkpoint's EMA holds {len(shadow) if isinstance(shadow, list) else 'no'} "
                                      f"shadow parameters for {len(names)} backbone parameters; pass use_ema=False "
                                      "to convert the raw weights.")
            for name, value in zip(names, shadow):
                if not isinstance(value, torch.Tensor) or value.shape != state[name].shape:
                    raise ConversionError(f"the EMA shadow parameter for {name!r} does not match its shape "
                                          f"{tuple(state[name].shape)}.")
                state[name] = value
        return state
    return strip_prefix(tensors_only(checkpoint, "the checkpoint"), ("backbone.", "model."))


def config_from_state(state: dict[str, torch.Tensor], **overrides):
    """An [`MDLMDiTConfig`] read off the tensor shapes of an official ``DIT`` state dict."""
    from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig

    def need(key):
        if key not in state:
            raise ConversionError(f"the MDLM checkpoint does not match the expected architecture; missing tensors: {key}.")
        return state[key]

    vocab_size, hidden = need("vocab_embed.embedding").shape
    cond_dim, frequency = need("sigma_map.mlp.0.weight").shape
    heads = overrides.pop("num_attention_heads", None)
    if "rotary_emb.inv_freq" in state:  # a persistent buffer of the official Rotary: it gives the head size
        inv_freq = state["rotary_emb.inv_freq"].float()
        head_dim = 2 * inv_freq.numel()
        if hidden % head_dim or (heads is not None and hidden // heads != head_dim):
            raise ConversionError(f"rotary_emb.inv_freq has {inv_freq.numel()} entries, which does not fit the width "
                                  f"{hidden}{'' if heads is None else f' with {heads} heads'}.")
        theta = float(inv_freq[1] ** (-head_dim / 2)) if inv_freq.numel() > 1 else 10000.0
        theta = round(theta) if abs(theta - round(theta)) < 1e-2 * theta else theta
        expected = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        if not torch.allclose(inv_freq, expected, rtol=1e-5):
            raise ConversionError("rotary_emb.inv_freq is not a standard rotary frequency table 1/theta^(2i/d).")
    elif heads is None:
        raise ConversionError("the checkpoint has no rotary_emb.inv_freq, so the head count is unknown: pass "
                              "`num_attention_heads` (12 for MDLM/SEDD small), or convert a folder whose config.json has `n_heads`.")
    else:
        head_dim, theta = hidden // heads, 10000.0
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if blocks != list(range(len(blocks))) or not blocks:
        raise ConversionError(f"the MDLM checkpoint's blocks are not numbered 0..n-1: {blocks}.")
    mlp = need("blocks.0.mlp.0.weight").shape[0]
    kwargs = dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=len(blocks),
                  num_attention_heads=hidden // head_dim, cond_dim=cond_dim, frequency_embedding_size=frequency,
                  mlp_ratio=mlp // hidden, rope_theta=float(theta))
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return MDLMDiTConfig(**kwargs)


def convert_state_dict(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Official ``DIT`` keys to hfgen keys; every source tensor must be used and every expected one present."""
    mapper = KeyMapper(state, "the MDLM checkpoint")
    out = {}
    for src, dst in _TOP.items():
        out[dst] = mapper.take(src)
    for i in range(num_layers):
        for src, dst in _BLOCK.items():
            out[f"layers.{i}.{dst}"] = mapper.take(f"blocks.{i}.{src}")
    for buffer in _BUFFERS:  # recomputed by the model from `rope_theta` (checked in `config_from_state`)
        if buffer in mapper:
            mapper.take(buffer)
    mapper.finish()
    return out


def convert_mdlm(source: str | os.PathLike, output: str | os.PathLike | None = None, *, kind: str = "mdlm",
                 use_ema: bool = True, time_conditioning: bool | None = None, mask_token_id: int | None = None,
                 num_attention_heads: int | None = None, torch_dtype: torch.dtype = torch.float32):
    r"""Convert an MDLM (``kind="mdlm"``) or SEDD-absorb (``kind="sedd-absorb"``) DiT checkpoint.

    Args:
        source (`str` or `os.PathLike`): a safetensors file, a folder holding one (a Hub snapshot), or a Lightning
            ``.ckpt`` readable with ``torch.load(weights_only=True)``.
        output (`str` or `os.PathLike`, *optional*): where to save the converted model (safetensors, config, card).
        kind (`str`, defaults to `"mdlm"`): ``"mdlm"`` or ``"sedd-absorb"`` (sets time conditioning and the
            parameterisation).
        use_ema (`bool`, defaults to `True`): use a Lightning checkpoint's EMA weights (MDLM's evaluation default).
        time_conditioning (`bool`, *optional*): override the kind's default (the FHS paper, App. H.4, also runs MDLM
            with the time condition).
        mask_token_id (`int`, *optional*): defaults to the last id (MDLM appends the mask to GPT-2's vocabulary).
        num_attention_heads (`int`, *optional*): needed only when the checkpoint lacks ``rotary_emb.inv_freq`` and
            its folder's ``config.json`` has no ``n_heads``.
        torch_dtype (`torch.dtype`, defaults to `torch.float32`): dtype of the saved weights.

    Returns:
        [`~hfgen.pipelines.masked_diffusion.MDLMDiTForMaskedLM`] in eval mode.
    """
    from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTForMaskedLM

    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {sorted(KINDS)}, got {kind!r}.")
    checkpoint, folder_config = read_checkpoint(source)
    state = _dit_state(checkpoint, use_ema)
    defaults = dict(KINDS[kind])
    if "time_conditioning" in folder_config:  # the Hub MDLM wrapper's config.json records it
        defaults["time_conditioning"] = bool(folder_config["time_conditioning"])
    if time_conditioning is not None:
        defaults["time_conditioning"] = time_conditioning
    heads = num_attention_heads or folder_config.get("n_heads") or folder_config.get("num_attention_heads")
    config = config_from_state(state, mask_token_id=mask_token_id, num_attention_heads=heads, **defaults)
    converted = convert_state_dict(state, config.num_hidden_layers)
    usage = f"""
import torch, hfgen  # importing hfgen registers model_type "hfgen_mdlm_dit" with the Auto classes
from transformers import AutoModelForMaskedLM, AutoTokenizer
from hfgen.pipelines import FirstHittingScheduler, MaskedDiffusionPipeline

model = AutoModelForMaskedLM.from_pretrained("{output}")
tokenizer = AutoTokenizer.from_pretrained("gpt2")
tokenizer.add_special_tokens({{"mask_token": "<|mask|>"}})  # id {config.mask_token_id}, as in MDLM
pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
out = pipe(seq_len=1024, generator=torch.Generator().manual_seed(0))
"""
    notes = (f"\nKind `{kind}`: time_conditioning={config.time_conditioning}, parameterization="
             f"`{config.parameterization}`, {'EMA' if use_ema and 'ema' in checkpoint else 'raw'} weights.")
    return finish_conversion(MDLMDiTForMaskedLM(config), converted, torch_dtype=torch_dtype, output=output, kind=kind,
                             source=source, usage=usage, method="masked_diffusion", notes=notes, **LICENSE)
