"""MDLM / SEDD-absorb DiT: the official architecture and hfgen's native model agree through the converter.

The official ``DIT`` (transcribed in ``tests/golden/_official_mdlm_dit.py`` from kuleshov-group/mdlm @
c112c526, ``models/dit.py``) is built tiny with random weights in every tensor (its zero-initialised adaLN
and output layers included, so that every path is exercised), its state dict is converted, and both
networks are run on the same tokens and noise levels.

Checked by breaking the library on purpose (then restored):
(clean: max abs diff 8.3e-7 on logits of order 1)
- swapping ``shift`` and ``scale`` in ``MDLMDiTBlock``'s attention modulation: max abs diff 0.93 (parity fails);
- dropping the final ``F.silu`` of ``SigmaEmbedding``: max abs diff 2.6 (parity fails);
- mapping ``blocks.*.mlp.2.weight`` onto ``fc1.weight`` in the converter: refused ("missing
  ['layers.0.fc2.weight', ...]") before any output.
"""

import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from hfgen.convert import CONVERTERS, ConversionError, convert
from hfgen.models.mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
from tests.golden._official_mdlm_dit import DIT, process_sigma, sedd_parameterization

VOCAB, HIDDEN, COND, BLOCKS, HEADS = 37, 32, 16, 2, 4


def official_model(seed=0):
    torch.manual_seed(seed)
    model = DIT(VOCAB, HIDDEN, COND, BLOCKS, HEADS, dropout=0.1)
    with torch.no_grad():
        for name, p in model.named_parameters():  # random everywhere, including the zero-initialised layers
            p.copy_(torch.randn_like(p) * (0.15 if "norm" not in name else 0.2) + (1.0 if "norm" in name else 0.0))
    return model.eval()


def inputs(seed=1, batch=3, length=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, length), generator=g)
    ids[:, ::3] = VOCAB - 1  # some masked positions
    sigma = torch.rand(batch, generator=g) * 3
    return ids, sigma


@pytest.fixture
def official_file(tmp_path):
    model = official_model()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def test_registry_lists_the_mdlm_kinds():
    assert {"mdlm", "sedd-absorb"} <= set(CONVERTERS)


def test_parity_time_conditioned_sedd_absorb(official_file, tmp_path):
    official, path = official_file
    native = convert("sedd-absorb", path, tmp_path / "out")
    assert native.config.time_conditioning and native.config.parameterization == "sedd"
    assert (native.config.num_attention_heads, native.config.num_hidden_layers) == (HEADS, BLOCKS)
    ids, sigma = inputs()
    with torch.no_grad():
        want = official(ids, process_sigma(sigma, True))
        got = native(input_ids=ids, sigma=sigma).logits
    assert got.shape == want.shape == (3, 11, VOCAB)
    assert (got - want).abs().max() < 1e-5
    # the time argument of the pipeline: timesteps t -> sigma(t) = -log(1 - (1 - eps) t)
    t = torch.tensor([0.1, 0.5, 0.999])
    with torch.no_grad():
        want_t = official(ids, -torch.log1p(-(1 - 1e-3) * t))
        assert (native(input_ids=ids, timesteps=t).logits - want_t).abs().max() < 1e-5
        # SEDD's log score and hfgen's logits give the same denoiser mu on masked positions (App. D.3)
        score = sedd_parameterization(want.clone(), ids, sigma)
        masked = ids == VOCAB - 1
        mu_sedd = score[..., :-1].softmax(-1)[masked]
        mu_native = got[..., :-1].softmax(-1)[masked]
        assert (mu_sedd - mu_native).abs().max() < 1e-5


def test_parity_time_agnostic_mdlm_ignores_time(official_file, tmp_path):
    official, path = official_file
    native = convert("mdlm", path)
    assert not native.config.time_conditioning
    ids, sigma = inputs(seed=2)
    with torch.no_grad():
        want = official(ids, process_sigma(sigma, False))  # MDLM calls the network with sigma = 0
        assert (native(input_ids=ids).logits - want).abs().max() < 1e-5
        assert (native(input_ids=ids, timesteps=torch.rand(3)).logits - want).abs().max() < 1e-5


def test_lightning_checkpoint_with_ema_and_prefix(tmp_path):
    official = official_model(seed=3)
    ema_model = official_model(seed=4)
    state = {f"backbone.{k}": v for k, v in official.state_dict().items()}
    shadow = [p.detach().clone() for p in ema_model.parameters()]
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "ema": {"decay": 0.9999, "num_updates": 7, "shadow_params": shadow,
                                            "collected_params": []}}, path)
    ids, sigma = inputs(seed=5)
    with torch.no_grad():
        ema_native = convert("sedd-absorb", path)
        raw_native = convert("sedd-absorb", path, use_ema=False)
        assert (ema_native(input_ids=ids, sigma=sigma).logits - ema_model(ids, sigma)).abs().max() < 1e-5
        assert (raw_native(input_ids=ids, sigma=sigma).logits - official(ids, sigma)).abs().max() < 1e-5


def test_unmapped_and_missing_tensors_are_refused_by_name(official_file, tmp_path):
    official, _ = official_file
    state = {k: v.contiguous() for k, v in official.state_dict().items()}
    extra = dict(state, **{"blocks.0.attn_extra.weight": torch.zeros(2)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ConversionError, match=r"unmapped tensors.*blocks\.0\.attn_extra\.weight"):
        convert("mdlm", tmp_path / "extra.safetensors")
    missing = {k: v for k, v in state.items() if k != "blocks.1.mlp.2.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ConversionError, match=r"missing tensors: blocks\.1\.mlp\.2\.bias"):
        convert("mdlm", tmp_path / "missing.safetensors")
    assert not (tmp_path / "out").exists()


def test_pickles_with_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": official_model().state_dict(), "hyper_parameters": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ConversionError, match=r"weights_only=True"):
        convert("mdlm", path)


def test_converted_folder_loads_with_auto_class_and_samples_with_fhs(official_file, tmp_path):
    """After ``import hfgen`` (a fresh interpreter), ``AutoModelForMaskedLM`` loads the folder; FHS samples with it."""
    _, path = official_file
    out = tmp_path / "converted"
    convert("sedd-absorb", path, out)
    assert (out / "model.safetensors").is_file() and "Converted with `hfgen convert sedd-absorb`" in (out / "README.md").read_text()
    code = f"""
import torch, hfgen
from transformers import AutoModelForMaskedLM
from hfgen.pipelines import FirstHittingScheduler, MaskedDiffusionPipeline
model = AutoModelForMaskedLM.from_pretrained({str(out)!r})
assert type(model).__name__ == "MDLMDiTForMaskedLM", type(model)
mask = model.config.mask_token_id
pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=None, scheduler=FirstHittingScheduler())
pipe.set_progress_bar_config(disable=True)
out = pipe(input_ids=torch.full((12,), mask), num_samples=2, mask_token_id=mask, output_type="pt",
           generator=torch.Generator().manual_seed(0))
assert out.nfe == 12 and not (out.sequences == mask).any(), out
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_native_config_validation():
    with pytest.raises(ValueError, match="parameterization"):
        MDLMDiTConfig(parameterization="d3pm")
    with pytest.raises(ValueError, match="num_attention_heads"):
        MDLMDiTConfig(hidden_size=30, num_attention_heads=4)
    model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=11, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, cond_dim=8, time_conditioning=True))
    with pytest.raises(ValueError, match="timesteps"):
        model(input_ids=torch.zeros(1, 4, dtype=torch.long))
    # adaLN-Zero: the freshly initialised model ignores sigma and predicts the zero bias
    assert math.isclose(float(model(input_ids=torch.zeros(1, 4, dtype=torch.long), sigma=1.0).logits.abs().max()), 0.0)


def test_checkpoint_without_rotary_buffer_needs_the_head_count(official_file, tmp_path):
    official, _ = official_file
    state = {k: v.contiguous() for k, v in official.state_dict().items() if k != "rotary_emb.inv_freq"}
    save_file({f"backbone.{k}": v for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConversionError, match="num_attention_heads"):
        convert("mdlm", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"n_heads": 4, "time_conditioning": true}')  # a Hub-style folder
    native = convert("mdlm", tmp_path)
    assert native.config.time_conditioning and native.config.num_attention_heads == HEADS
    ids, sigma = inputs()
    with torch.no_grad():
        assert (native(input_ids=ids, sigma=sigma).logits - official(ids, sigma)).abs().max() < 1e-5
