"""Variable-length generation in MaskedDiffusionPipeline: an allowed end token (as LLaDA / MDLM samplers end texts)."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from hfgen.data.text import char_tokenizer
from hfgen.pipelines import FirstHittingScheduler, MaskedDiffusionPipeline


def pipeline_that_prefers_the_end_token():
    tokenizer = char_tokenizer("abc ")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)).eval()
    with torch.no_grad():  # what a model trained on end-padded short texts does in the tail: predict the end token
        model.cls.predictions.bias[tokenizer.eos_token_id] = 8.0
    return MaskedDiffusionPipeline(denoiser=model, tokenizer=tokenizer, scheduler=FirstHittingScheduler()), tokenizer


def test_end_token_is_generated_and_ends_the_text():
    pipe, tokenizer = pipeline_that_prefers_the_end_token()
    end = tokenizer.eos_token_id
    out = pipe(prompt="ab", seq_len=10, num_samples=4, end_token_id=end, generator=torch.Generator().manual_seed(0))
    assert (out.sequences[:, 2:] == end).any(dim=1).all()  # allowed and generated
    for row, text in zip(out.sequences.tolist(), out.texts):
        cut = row.index(end)
        assert text == tokenizer.decode(row[:cut], skip_special_tokens=True)  # the text stops at the first end token
        assert text.startswith("ab") and len(text) == cut


def test_without_end_token_every_special_token_stays_banned():
    pipe, tokenizer = pipeline_that_prefers_the_end_token()
    out = pipe(prompt="ab", seq_len=10, num_samples=4, generator=torch.Generator().manual_seed(0))
    assert not torch.isin(out.sequences, torch.tensor(tokenizer.all_special_ids)).any()
    assert all(len(text) == 10 for text in out.texts)  # fixed length: the tail is filled with text


@pytest.mark.parametrize("bad", [4, 99, -1])  # 4 is the mask token of char_tokenizer
def test_end_token_id_is_checked(bad):
    pipe, _ = pipeline_that_prefers_the_end_token()
    with pytest.raises(ValueError, match="end_token_id"):
        pipe(seq_len=4, end_token_id=bad)
