"""GFT's DiT-B/2 / DiT-XL/2: ``hfgen convert gft-dit`` into a Diffusers DiT with a β input, equal to the official network.

The official GFT DiT (thu-ml/GFT ``DiT/models.py``, ``DiT(use_beta_embed=True, beta_in="linear")``), built tiny
with random weights everywhere (the zero-initialised adaLN and β projection included), and its outputs on fixed
latents, timesteps, labels and β, are recorded in ``tests/golden/data/gft/dit_tiny.*`` by
``scripts/golden/record_gft.py``. The recorded weights are saved as DiT saves checkpoints (``{"model", "ema"}``),
converted, and the converted network must reproduce the recorded outputs — one network call gives the
guidance-free prediction.

Clean: max abs diff 0 (bit-identical). Broken on purpose (then restored): embedding ``β`` instead of ``1000 β``
fails both parity tests; against the former transcription, Diffusers' own DiT timestep frequencies
(``downscale_freq_shift=1``) in ``BetaTimestepLabelEmbeddings`` gave a max abs diff of 0.61 (fails).
"""

import pytest
import torch

from hfgen.convert import ConversionError, convert
from hfgen.pipelines.gft.modeling_gft_dit import GFTDiTTransformer2DModel
from tests.golden.recorded import load_recording


def recorded_dit():
    """``(state dicts {"model", "ema"}, inputs (x, t, y, beta), official outputs, provenance)`` of ``dit_tiny``."""
    tensors, provenance = load_recording("gft", "dit_tiny")
    states = {which: {k[len(which) + 1:]: v for k, v in tensors.items() if k.startswith(which + ".")}
              for which in ("model", "ema")}
    return states, tuple(tensors[k] for k in ("x", "t", "y", "beta")), tensors, provenance


@pytest.fixture
def checkpoint(tmp_path):
    states, _, _, _ = recorded_dit()
    path = tmp_path / "0100000.pt"
    torch.save(states, path)
    return states, path


def test_parity_with_beta_and_without(checkpoint, tmp_path):
    _, path = checkpoint
    _, (x, t, y, beta), official, provenance = recorded_dit()
    assert provenance["repository"] == "https://github.com/thu-ml/GFT"
    model = convert("gft-dit", path, tmp_path / "gft-dit", num_heads=2)
    assert model.config.beta_cond_proj_dim == 512 and model.config.out_channels == 8
    with torch.no_grad():
        assert (model(x, t, class_labels=y, beta=beta).sample - official["ema_with_beta"]).abs().max() < 1e-5
        assert (model(x, t, class_labels=y).sample - official["ema_without_beta"]).abs().max() < 1e-5
        raw_model = convert("gft-dit", path, num_heads=2, use_ema=False)
        assert (raw_model(x, t, class_labels=y, beta=0.3).sample - official["raw_beta_0_3"]).abs().max() < 1e-5
    reloaded = GFTDiTTransformer2DModel.from_pretrained(tmp_path / "gft-dit").eval()
    with torch.no_grad():
        assert (reloaded(x, t, class_labels=y, beta=beta).sample - official["ema_with_beta"]).abs().max() < 1e-5
    card = (tmp_path / "gft-dit" / "README.md").read_text()
    assert "hfgen convert gft-dit" in card
    assert "\nlicense: cc-by-nc-4.0\n" in card and "facebookresearch/DiT" in card  # the upstream weights' licence


def test_refusals(checkpoint, tmp_path):
    states, _ = checkpoint
    state = states["ema"]
    torch.save({**state, "beta_embedder.mlp.0.weight": torch.zeros(32, 256)}, tmp_path / "mlp_beta.pt")
    with pytest.raises(ConversionError, match=r"unmapped tensors.*beta_embedder\.mlp\.0\.weight"):
        convert("gft-dit", tmp_path / "mlp_beta.pt", num_heads=2)
    torch.save({k: v for k, v in state.items() if k != "blocks.1.mlp.fc2.bias"}, tmp_path / "missing.pt")
    with pytest.raises(ConversionError, match=r"missing tensors: blocks\.1\.mlp\.fc2\.bias"):
        convert("gft-dit", tmp_path / "missing.pt", num_heads=2)
    with pytest.raises(ConversionError, match="num_heads"):
        convert("gft-dit", tmp_path / "missing.pt")  # width 32 is no DiT family member


def test_card_snippet_samples_through_guidance_free_pipeline_with_one_call_per_step(checkpoint, tmp_path):
    """The converted card's snippet, run as written up to the VAE (not available offline), with this tiny model's
    labels and 4 steps: GuidanceFreePipeline with the transformer, one network call per step."""
    import re

    _, path = checkpoint
    convert("gft-dit", path, tmp_path / "gft-dit", num_heads=2)
    card = (tmp_path / "gft-dit" / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", card, re.S)[-1]  # the converter's snippet closes the card
    assert "GuidanceFreePipeline(transformer=transformer" in code
    code = code[: code.index("vae = ")].replace("[207, 360, 387, 974]", "[1, 2, 3, 9]").replace("=50", "=4")
    calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, *a: calls.append(1) if isinstance(module, GFTDiTTransformer2DModel) else None)
    try:
        namespace = {}
        exec(code, namespace)
    finally:
        hook.remove()
    assert len(calls) == 4 and namespace["latents"].shape == (4, 4, 8, 8) and torch.isfinite(namespace["latents"]).all()


def test_dit_training_checkpoint_with_args_namespace(checkpoint, tmp_path):
    """DiT's / GFT's ``train.py`` saves ``{"model", "ema", "opt", "args"}`` with ``args`` an ``argparse.Namespace``
    (thu-ml/GFT @ 9bf5ee45, ``DiT/train.py`` lines 352-359): it converts (``weights_only=True`` plus that one class),
    while a pickled object of any other class is still refused. Without the allowlist the first convert fails with
    "cannot be read with torch.load(weights_only=True)"."""
    import argparse
    import pathlib

    states, _ = checkpoint
    _, (x, t, y, beta), official, _ = recorded_dit()
    opt = torch.optim.AdamW([torch.nn.Parameter(v.clone()) for v in states["model"].values()])
    args = argparse.Namespace(model="DiT-B/2", image_size=256, beta_in="linear", rm_guidance=True, ckpt=None, lr=1e-4)
    torch.save({**states, "opt": opt.state_dict(), "args": args}, tmp_path / "0400000.pt")
    converted = convert("gft-dit", tmp_path / "0400000.pt", num_heads=2)
    with torch.no_grad():
        assert (converted(x, t, class_labels=y, beta=beta).sample - official["ema_with_beta"]).abs().max() < 1e-5
    args.results_dir = pathlib.PurePosixPath("results")  # any other class stays refused
    torch.save({"ema": states["ema"], "args": args}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert("gft-dit", tmp_path / "other.pt", num_heads=2)
