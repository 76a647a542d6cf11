"""MDLM / SEDD-absorb DiT: hfgen's converter against recorded outputs of the official network.

``scripts/golden/record_mdlm.py`` built the official ``DIT`` (kuleshov-group/mdlm, ``models/dit.py``, run from a
checkout; provenance in ``tests/golden/data/mdlm/dit.provenance.json``) tiny, with random weights in every tensor
(its zero-initialised adaLN and output layers included, so that every path is exercised), and recorded those
weights with its outputs on fixed tokens and noise levels. Here exactly those weights are converted and hfgen's
native model must give the recorded outputs.

Checked by breaking the library on purpose (then restored):
(clean: max abs diff 1.1e-6 on logits of order 1)
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
from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM
from tests.golden.recorded import load_recording

VOCAB, HIDDEN, COND, BLOCKS, HEADS = 37, 32, 16, 2, 4
RECORDING, PROVENANCE = load_recording("mdlm", "dit")


def recorded_weights():
    """The official ``DIT``'s state dict, in its order (the recording numbers its keys)."""
    numbered = sorted((k.removeprefix("weights."), v) for k, v in RECORDING.items() if k.startswith("weights."))
    return {k.split(".", 1)[1]: v for k, v in numbered}


@pytest.fixture
def official_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(recorded_weights(), str(path))
    return path


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_registry_lists_the_mdlm_kinds():
    assert {"mdlm", "sedd-absorb"} <= set(CONVERTERS)


def test_parity_time_conditioned_sedd_absorb(official_file, tmp_path):
    native = convert("sedd-absorb", official_file, tmp_path / "out")
    assert native.config.time_conditioning and native.config.parameterization == "sedd"
    assert (native.config.num_attention_heads, native.config.num_hidden_layers) == (HEADS, BLOCKS)
    ids, sigma, want = RECORDING["sedd.input_ids"], RECORDING["sedd.sigma"], RECORDING["sedd.logits"]
    with torch.no_grad():
        got = native(input_ids=ids, sigma=sigma).logits
        assert got.shape == (3, 11, VOCAB)
        assert max_diff(got, want) < 1e-5
        # the time argument of the pipeline: timesteps t -> sigma(t) = -log(1 - (1 - eps) t)
        got_t = native(input_ids=ids, timesteps=RECORDING["sedd.timesteps"]).logits
        assert max_diff(got_t, RECORDING["sedd.logits_at_timesteps"]) < 1e-5
    # SEDD's log score (``_sedd_parameterization``) and hfgen's logits give the same denoiser mu on masked positions (App. D.3)
    masked = ids == VOCAB - 1
    mu_sedd = RECORDING["sedd.log_score"][..., :-1].softmax(-1)[masked]
    assert max_diff(got[..., :-1].softmax(-1)[masked], mu_sedd) < 1e-5


def test_parity_time_agnostic_mdlm_ignores_time(official_file):
    native = convert("mdlm", official_file)
    assert not native.config.time_conditioning
    ids, want = RECORDING["mdlm.input_ids"], RECORDING["mdlm.logits"]  # MDLM calls the network with sigma = 0
    with torch.no_grad():
        assert max_diff(native(input_ids=ids).logits, want) < 1e-5
        assert max_diff(native(input_ids=ids, timesteps=torch.rand(3)).logits, want) < 1e-5


def test_lightning_checkpoint_with_ema_and_prefix(tmp_path):
    """The EMA shadow (one tensor per parameter, in ``parameters()`` order) holds the recorded weights; the raw
    ``state_dict`` holds other weights, which ``use_ema=False`` must convert instead."""
    weights = recorded_weights()
    raw = {k: v if k == "rotary_emb.inv_freq" else 0.5 * v + 0.01 for k, v in weights.items()}
    shadow = [v.clone() for k, v in weights.items() if k != "rotary_emb.inv_freq"]
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in raw.items()},
                "ema": {"decay": 0.9999, "num_updates": 7, "shadow_params": shadow, "collected_params": []}}, path)
    save_file(raw, str(tmp_path / "raw.safetensors"))
    ids, sigma = RECORDING["sedd.input_ids"], RECORDING["sedd.sigma"]
    with torch.no_grad():
        ema_native = convert("sedd-absorb", path)
        assert max_diff(ema_native(input_ids=ids, sigma=sigma).logits, RECORDING["sedd.logits"]) < 1e-5
        raw_logits = convert("sedd-absorb", path, use_ema=False)(input_ids=ids, sigma=sigma).logits
        assert max_diff(raw_logits, convert("sedd-absorb", tmp_path / "raw.safetensors")(input_ids=ids, sigma=sigma).logits) == 0
        assert max_diff(raw_logits, RECORDING["sedd.logits"]) > 0.1


def test_unmapped_and_missing_tensors_are_refused_by_name(tmp_path):
    state = recorded_weights()
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
    torch.save({"state_dict": recorded_weights(), "hyper_parameters": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ConversionError, match=r"weights_only=True"):
        convert("mdlm", path)


def test_converted_folder_loads_with_auto_class_and_samples_with_fhs(official_file, tmp_path):
    """After ``import hfgen`` (a fresh interpreter), ``AutoModelForMaskedLM`` loads the folder; FHS samples with it."""
    out = tmp_path / "converted"
    convert("sedd-absorb", official_file, out)
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


def test_checkpoint_without_rotary_buffer_needs_the_head_count(tmp_path):
    state = {k: v for k, v in recorded_weights().items() if k != "rotary_emb.inv_freq"}
    save_file({f"backbone.{k}": v for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConversionError, match="num_attention_heads"):
        convert("mdlm", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text('{"n_heads": 4, "time_conditioning": true}')  # a Hub-style folder
    native = convert("mdlm", tmp_path)
    assert native.config.time_conditioning and native.config.num_attention_heads == HEADS
    with torch.no_grad():
        got = native(input_ids=RECORDING["sedd.input_ids"], sigma=RECORDING["sedd.sigma"]).logits
    assert max_diff(got, RECORDING["sedd.logits"]) < 1e-5
