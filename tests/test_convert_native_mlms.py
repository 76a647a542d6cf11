"""Masked LMs used as diffusion LMs today (BERT- and ModernBERT-style checkpoints) work in ``MaskedDiffusionPipeline`` as they are.

No conversion is needed: an ``AutoModelForMaskedLM`` is a time-agnostic MDM denoiser (arXiv 2409.02908,
Prop. 3.2). Tiny random configurations stand in for the Hub checkpoints (offline). The first FHS step
is checked against the model's own conditional (4000 draws, every class within 4.5 binomial standard
deviations). Broken on purpose: the pipeline's ``denoise`` returning ``1.25 * logits`` (temperature 0.8)
fails it (BERT: a class off by 0.12).
"""

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertTokenizer, ModernBertConfig

from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(40)]]


def tiny(kind):
    torch.manual_seed(0)
    common = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, pad_token_id=0, initializer_range=0.5)
    if kind == "bert":
        config = BertConfig(max_position_embeddings=64, **common)
    else:
        config = ModernBertConfig(max_position_embeddings=64, global_attn_every_n_layers=1, local_attention=16,
                                  bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3, **common)
    return AutoModelForMaskedLM.from_config(config).eval()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer(str(path), do_lower_case=False)


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_native_masked_lm_samples_with_fhs_and_ancestral(kind, tokenizer):
    model = tiny(kind)
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt="w1 w2", seq_len=10, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert out.nfe == 8  # one call per generated token (2 prompt tokens kept)
    seqs = out.sequences
    assert (seqs[:, :2] == torch.tensor(tokenizer.convert_tokens_to_ids(["w1", "w2"]))).all()
    assert not torch.isin(seqs, torch.tensor(tokenizer.all_special_ids)).any()  # no mask, no special token
    assert all(t.startswith("w1 w2") for t in out.texts)
    again = pipe(prompt="w1 w2", seq_len=10, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.sequences, seqs)

    pipe.scheduler = AncestralMaskedScheduler.from_config(pipe.scheduler.config)
    anc = pipe(prompt="w1 w2", seq_len=10, num_samples=3, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    assert not (anc.sequences == tokenizer.mask_token_id).any() and anc.nfe <= 50


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_one_fhs_step_draws_from_the_models_conditional(kind, tokenizer):
    """With one masked position, FHS draws that token from softmax(logits) without mask and special tokens."""
    model = tiny(kind)
    template = torch.tensor(tokenizer.convert_tokens_to_ids(["w3", "w4", "[MASK]", "w5"]))
    with torch.no_grad():
        logits = model(input_ids=template[None]).logits[0, 2].double()
    logits[tokenizer.all_special_ids] = -torch.inf
    p = logits.softmax(-1)
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    n = 4000
    out = pipe(input_ids=template, num_samples=n, output_type="pt", generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(out.sequences[:, 2], minlength=len(VOCAB)).double() / n
    # every class within 4.5 binomial standard deviations
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt() + 1e-12).all(), (freq - p).abs().max()
