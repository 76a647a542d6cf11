"""Smoke test of ``scripts/mdm_openwebtext_sampling.py`` (the FHS paper's OWT sampling grid) on tiny models."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hfgen.data.text import char_tokenizer
from hfgen.pipelines.masked_diffusion.modeling_mdlm_dit import MDLMDiTConfig, MDLMDiTForMaskedLM

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "mdm_openwebtext_sampling.py"


def load_script():
    spec = importlib.util.spec_from_file_location("mdm_openwebtext_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sampling_grid_smoke(tmp_path):
    script = load_script()
    tokenizer = char_tokenizer("abcdefgh .")
    torch.manual_seed(0)
    model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, cond_dim=8, mask_token_id=tokenizer.mask_token_id))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=16, n_embd=16, n_layer=1, n_head=2))
    out = tmp_path / "grid.json"
    rows = script.main(model, tokenizer, judge, seq_len=8, num_samples=3, batch_size=2, steps=(4, 16),
                       dtypes=("float64", "float32"), device="cpu", output=out)
    names = [r["sampler"] for r in rows]
    assert names == ["FHS (exact, N=L), float64", "FHS parallel N=4, float64", "ancestral T=4, float64",
                     "ancestral T=16, float64", "FHS (exact, N=L), float32", "FHS parallel N=4, float32",
                     "ancestral T=4, float32", "ancestral T=16, float32"]
    fhs = rows[0]
    assert fhs["nfe"] == 2 * 8  # two batches (2 + 1 samples), L = 8 calls each
    assert rows[1]["nfe"] == 2 * 4  # 4 calls, 2 tokens each
    for r in rows:
        assert math.isfinite(r["gen_ppl"]) and r["gen_ppl"] > 1 and 0 < r["entropy"] <= math.log(8)
    saved = json.loads(out.read_text())
    assert saved["setting"]["seq_len"] == 8 and len(saved["results"]) == 8
    # the same seed gives the same numbers
    again = script.main(model, tokenizer, judge, seq_len=8, num_samples=3, batch_size=2, steps=(4,), dtypes=("float64",),
                        device="cpu")
    assert again[0]["gen_ppl"] == fhs["gen_ppl"] and again[0]["entropy"] == fhs["entropy"]


def test_parallel_solver_choice():
    """``--parallel-solver paper``: extrapolation for N <= 128, predictor-corrector for N >= 256 (Sec. 6.1)."""
    script = load_script()
    assert [script.parallel_solver_for("paper", n) for n in (64, 128, 256, 1024)] == [
        "extrapolation", "extrapolation", "predictor_corrector", "predictor_corrector"]
    assert script.parallel_solver_for("first_order", 512) == "first_order"
    tokenizer = char_tokenizer("abcdefgh .")
    torch.manual_seed(0)
    model = MDLMDiTForMaskedLM(MDLMDiTConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, cond_dim=8, mask_token_id=tokenizer.mask_token_id))
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=16, n_embd=16, n_layer=1, n_head=2))
    rows = script.main(model, tokenizer, judge, seq_len=8, num_samples=2, batch_size=2, steps=(2, 4),
                       dtypes=("float64",), device="cpu", parallel_solver="predictor_corrector")
    assert [r["sampler"] for r in rows[1:3]] == ["FHS parallel N=2 (predictor_corrector), float64",
                                                 "FHS parallel N=4 (predictor_corrector), float64"]
    assert rows[1]["nfe"] == 2 and rows[2]["nfe"] == 4  # the corrector adds no network call
    with pytest.raises(ValueError, match="parallel_solver"):
        script.main(model, tokenizer, judge, seq_len=8, steps=(4,), device="cpu", parallel_solver="heun")
