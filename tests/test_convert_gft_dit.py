"""GFT's DiT-B/2 / DiT-XL/2: ``hfgen convert gft-dit`` into a Diffusers DiT with a β input, equal to the official network.

The official GFT DiT (``tests/golden/_official_gft_dit.py``, thu-ml/GFT @ 9bf5ee45, ``DiT/models.py``,
``beta_in="linear"``), built tiny with random weights everywhere (the zero-initialised adaLN and β projection
included), is saved as DiT saves checkpoints (``{"model", "ema"}``), converted, and both are run on the same
latents, timesteps, labels and β — one network call gives the guidance-free prediction.

Clean: max abs diff 4.8e-7. Broken on purpose (then restored): Diffusers' own DiT timestep frequencies
(``downscale_freq_shift=1``) in ``BetaTimestepLabelEmbeddings`` give a max abs diff of 0.61 (fails); embedding
``β`` instead of ``1000 β`` gives 1.4 (fails).
"""

import pytest
import torch

from hfgen.convert import ConversionError, convert
from hfgen.models.gft_dit import GFTDiTTransformer2DModel
from tests.golden._official_gft_dit import DiT

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)


def official(seed=0):
    torch.manual_seed(seed)
    model = DiT(**TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.normal_(0, 0.1)
    # the beta projection keeps the official width 512 (cond_proj_dim is fixed in DiT/models.py)
    return model.eval()


@pytest.fixture
def checkpoint(tmp_path):
    model, ema = official(0), official(1)
    path = tmp_path / "0100000.pt"
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, path)
    return ema, model, path


def inputs(seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(3, 4, 8, 8, generator=g), torch.tensor([10.0, 500.0, 999.0]), torch.tensor([1, 7, 10]),
            torch.tensor([1.0, 0.5, 0.2]))


def test_parity_with_beta_and_without(checkpoint, tmp_path):
    ema, raw, path = checkpoint
    model = convert("gft-dit", path, tmp_path / "gft-dit", num_heads=2)
    assert model.config.beta_cond_proj_dim == 512 and model.config.out_channels == 8
    x, t, y, beta = inputs()
    with torch.no_grad():
        assert (model(x, t, class_labels=y, beta=beta).sample - ema(x, t, y, beta=beta)).abs().max() < 1e-5
        assert (model(x, t, class_labels=y).sample - ema(x, t, y)).abs().max() < 1e-5
        raw_model = convert("gft-dit", path, num_heads=2, use_ema=False)
        assert (raw_model(x, t, class_labels=y, beta=0.3).sample - raw(x, t, y, beta=torch.full((3,), 0.3))).abs().max() < 1e-5
    reloaded = GFTDiTTransformer2DModel.from_pretrained(tmp_path / "gft-dit").eval()
    with torch.no_grad():
        assert (reloaded(x, t, class_labels=y, beta=beta).sample - ema(x, t, y, beta=beta)).abs().max() < 1e-5
    assert "hfgen convert gft-dit" in (tmp_path / "gft-dit" / "README.md").read_text()


def test_refusals(checkpoint, tmp_path):
    ema, _, _ = checkpoint
    state = ema.state_dict()
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

    _, _, path = checkpoint
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

    ema, model, _ = checkpoint
    opt = torch.optim.AdamW(model.parameters())
    args = argparse.Namespace(model="DiT-B/2", image_size=256, beta_in="linear", rm_guidance=True, ckpt=None, lr=1e-4)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args},
               tmp_path / "0400000.pt")
    converted = convert("gft-dit", tmp_path / "0400000.pt", num_heads=2)
    x, t, y, beta = inputs()
    with torch.no_grad():
        assert (converted(x, t, class_labels=y, beta=beta).sample - ema(x, t, y, beta=beta)).abs().max() < 1e-5
    args.results_dir = pathlib.PurePosixPath("results")  # any other class stays refused
    torch.save({"ema": ema.state_dict(), "args": args}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert("gft-dit", tmp_path / "other.pt", num_heads=2)
