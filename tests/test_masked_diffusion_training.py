"""Masked-diffusion training (Prop. 3.1), the pydoc text data, the sample metrics and save/load round trips."""

import itertools
import math

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

import hfgen
from hfgen.data.text import char_tokenizer, pydoc_dataset, pydoc_documents
from hfgen.metrics.perplexity import generative_perplexity, unigram_entropy
from hfgen.pipelines import AncestralMaskedScheduler, FirstHittingScheduler, MaskedDiffusionPipeline
from hfgen.trainers import MaskedDiffusionConfig, MaskedDiffusionTrainer


def tiny_bert(vocab_size, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(config).eval()


def config(tmp_path, **kwargs):
    return MaskedDiffusionConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **kwargs)


@torch.no_grad()
def exact_nelbo(model, x0, mask_id):
    """Prop. 3.1: sum_n 1/n E_{x_n}[sum_{l masked} -log mu(x0_l | x_n)] with x_n uniform over exactly-n masks, per token."""
    length = len(x0)
    total = 0.0
    for n in range(1, length + 1):
        subsets = list(itertools.combinations(range(length), n))
        for subset in subsets:
            x = x0.clone()
            x[list(subset)] = mask_id
            logits = model(input_ids=x[None]).logits[0].index_fill(-1, torch.tensor([mask_id]), -torch.inf)
            nll = -torch.log_softmax(logits, -1)[list(subset), x0[list(subset)]].sum()
            total += float(nll) / n / len(subsets)
    return total / length


@pytest.mark.parametrize("schedule", ["linear", "cosine", "loglinear"])
def test_nelbo_is_the_schedule_free_sum_over_masked_counts(tmp_path, schedule):
    tokenizer = char_tokenizer("abcdef")
    model = tiny_bert(len(tokenizer))
    x0 = torch.tensor(tokenizer("fadebc", add_special_tokens=False)["input_ids"])
    exact = exact_nelbo(model, x0, tokenizer.mask_token_id)
    trainer = MaskedDiffusionTrainer(model=model, args=config(tmp_path, masking_schedule=schedule, time_epsilon=1e-6,
                                                              schedule_eps=1e-3), processing_class=tokenizer)
    torch.manual_seed(0)
    rows = 40_000
    with torch.no_grad():
        loss = trainer.compute_loss(model, {"input_ids": x0.repeat(rows, 1)})
        iid = MaskedDiffusionTrainer(model=model, processing_class=tokenizer, args=config(
            tmp_path, masking_schedule=schedule, time_epsilon=1e-6, low_discrepancy_sampling=False))
        per_row = torch.stack([iid.compute_loss(model, {"input_ids": x0.repeat(2000, 1)}) for _ in range(20)])
    stderr = float(per_row.std()) / math.sqrt(len(per_row))  # of an iid 40k-row mean; stratified t is tighter
    assert abs(float(loss) - exact) < 4 * stderr
    assert abs(float(per_row.mean()) - exact) < 4 * stderr


def test_low_discrepancy_times_are_stratified(tmp_path):
    tokenizer = char_tokenizer("ab")
    trainer = MaskedDiffusionTrainer(model=tiny_bert(len(tokenizer)), args=config(tmp_path), processing_class=tokenizer)
    t = trainer.sample_times(64, "cpu")
    eps = trainer.args.time_epsilon
    strata = ((t - eps) / (1 - eps) * 64).floor().long()
    assert torch.equal(strata, torch.arange(64))


def test_config_and_trainer_validate_arguments(tmp_path):
    with pytest.raises(ValueError, match="masking_schedule"):
        config(tmp_path, masking_schedule="sqrt")
    with pytest.raises(ValueError, match="time_epsilon"):
        config(tmp_path, time_epsilon=0.0)
    with pytest.raises(ValueError, match="mask token"):
        MaskedDiffusionTrainer(model=tiny_bert(8), args=config(tmp_path))


def test_pydoc_text_tokenises_and_round_trips():
    docs = pydoc_documents()
    assert len(docs) > 50 and sum(map(len, docs)) > 100_000
    tokenizer = char_tokenizer()
    text = docs[0][:200]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and len(ids) == len(text)
    data = pydoc_dataset(tokenizer, seq_len=32)
    assert set(data) == {"train", "test"} and len(data["train"]) > 5 * len(data["test"]) > 0
    assert all(len(row) == 32 for row in data["test"]["input_ids"])


def test_generative_perplexity_and_entropy_closed_forms():
    tokenizer = char_tokenizer("ab")
    judge = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    with torch.no_grad():  # a judge that ignores context: uniform over the vocabulary
        judge.lm_head.weight.zero_()
    assert generative_perplexity(["abba", "ba"], judge, tokenizer) == pytest.approx(len(tokenizer), rel=1e-5)
    assert unigram_entropy([[1, 2, 3, 4], [5, 5, 5, 5]]) == pytest.approx(math.log(4) / 2)


def test_trained_denoiser_samples_and_round_trips(tmp_path):
    tokenizer = char_tokenizer()
    data = pydoc_dataset(tokenizer, seq_len=32)
    model = tiny_bert(len(tokenizer))
    args = config(tmp_path / "mdm", max_steps=25, per_device_train_batch_size=16, logging_steps=5, save_strategy="no",
                  warmup_steps=0, learning_rate=3e-3, seed=0)
    trainer = MaskedDiffusionTrainer(model=model.train(), args=args, train_dataset=data["train"], processing_class=tokenizer)
    result = trainer.train()
    nelbos = [log["nelbo"] for log in trainer.state.log_history if "nelbo" in log]
    assert len(nelbos) == 5 and nelbos[-1] < nelbos[0] and result.training_loss < math.log(len(tokenizer))
    trainer.save_model()
    card = (tmp_path / "mdm" / "README.md").read_text()
    assert "hfgen-masked-diffusion" in card and "2409.02908" in card
    assert (tmp_path / "mdm" / "model.safetensors").is_file()

    pipe = MaskedDiffusionPipeline(denoiser=model.eval(), tokenizer=tokenizer, scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=["The ", "def [MASK]x"], seq_len=16, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert out.nfe == 12 and len(out.texts) == 4
    assert all(t.startswith("The ") for t in out.texts[:2]) and all(t.startswith("def ") for t in out.texts[2:])
    assert all(t[5] == "x" for t in out.texts[2:])
    special = torch.tensor(tokenizer.all_special_ids)
    assert not torch.isin(out.sequences, special).any()

    pipe.save_pretrained(tmp_path / "pipe")
    assert "hfgen-masked-diffusion" in (tmp_path / "pipe" / "README.md").read_text()
    loaded = hfgen.load(str(tmp_path / "pipe"))
    assert type(loaded) is MaskedDiffusionPipeline and type(loaded.scheduler) is FirstHittingScheduler
    loaded.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    again = loaded(seq_len=16, num_samples=3, generator=generators, output_type="pt")
    first = pipe(seq_len=16, num_samples=3, generator=[torch.Generator().manual_seed(i) for i in range(3)],
                 output_type="pt")
    assert torch.equal(again.sequences, first.sequences)
    single = pipe(seq_len=16, generator=torch.Generator().manual_seed(2), output_type="pt")
    assert torch.equal(single.sequences[0], first.sequences[2])  # a list of generators seeds each row alone

    pipe.scheduler = AncestralMaskedScheduler.from_config(pipe.scheduler.config)
    anc = pipe(seq_len=16, num_samples=2, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    assert (anc.sequences != tokenizer.mask_token_id).all() and anc.nfe <= 32


# --------------------------------------------------------------------- MDLM compatibility (issue 19, gap 6)


def gpt2_style_tokenizer(chars="abcdef"):
    """GPT-2's special-token layout (``<|endoftext|>`` is BOS, EOS and UNK; no CLS/SEP) plus MDLM's appended mask."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(chars)}
    vocab["<|endoftext|>"] = len(vocab)
    vocab["[MASK]"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", mask_token="[MASK]")


class EOSLovingDenoiser(torch.nn.Module):
    """Puts almost all mass on one token (the EOS of the test); records the ``timesteps`` it receives."""

    def __init__(self, vocab_size, favourite, timed=False):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(vocab_size))
        self.bias.data[favourite] = 20.0
        self.seen = []
        self.timed = timed

    @property
    def dtype(self):
        return self.bias.dtype

    @property
    def device(self):
        return self.bias.device

    def forward(self, input_ids, attention_mask=None):
        from transformers.modeling_outputs import MaskedLMOutput

        return MaskedLMOutput(logits=self.bias.expand(*input_ids.shape, -1).clone())


class TimedEOSLovingDenoiser(EOSLovingDenoiser):
    def forward(self, input_ids, attention_mask=None, timesteps=None):
        self.seen.append(timesteps.detach().clone())
        return super().forward(input_ids)


def test_gpt2_style_eos_is_generated_and_only_the_mask_is_banned():
    """Old behaviour: every special id was banned, so GPT-2's <|endoftext|> (MDLM's document separator) never appeared."""
    tok = gpt2_style_tokenizer()
    pipe = MaskedDiffusionPipeline(denoiser=EOSLovingDenoiser(len(tok), tok.eos_token_id), tokenizer=tok,
                                   scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    assert pipe.eos_is_a_token()
    banned = pipe.forbidden_tokens(len(tok) + 3, "cpu")
    assert banned.nonzero().flatten().tolist() == [len(tok), len(tok) + 1, len(tok) + 2]  # only padded rows; the
    # mask itself is banned by the scheduler
    out = pipe(seq_len=6, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert (out.sequences == tok.eos_token_id).all()
    tok.pad_token = "a"  # a padding token distinct from EOS is banned
    assert pipe.forbidden_tokens(len(tok), "cpu").nonzero().flatten().tolist() == [tok.pad_token_id]


def test_masked_lm_tokenizer_still_bans_every_special_token():
    tok = char_tokenizer("abcdef")
    pipe = MaskedDiffusionPipeline(denoiser=EOSLovingDenoiser(len(tok), tok.sep_token_id), tokenizer=tok,
                                   scheduler=FirstHittingScheduler())
    pipe.set_progress_bar_config(disable=True)
    assert not pipe.eos_is_a_token()
    out = pipe(seq_len=6, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert not torch.isin(out.sequences, torch.tensor(tok.all_special_ids)).any()


@pytest.mark.parametrize("scheduler_cls", [FirstHittingScheduler, AncestralMaskedScheduler])
def test_time_conditioned_denoiser_receives_sigma(scheduler_cls):
    """``time_input="sigma"``: MDLM's ``noise(t)[0] = -log(1 - (1 - eps) t)`` at the scheduler's times."""
    tok = gpt2_style_tokenizer()
    model = TimedEOSLovingDenoiser(len(tok), 0).double()
    scheduler = scheduler_cls(masking_schedule="loglinear", schedule_eps=1e-3)
    pipe = MaskedDiffusionPipeline(denoiser=model, tokenizer=tok, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe(seq_len=4, num_samples=2, output_type="pt", time_input="sigma", num_inference_steps=4,
         generator=torch.Generator().manual_seed(0))
    times = pipe.scheduler.timesteps
    times = times if times.ndim == 2 else times[:, None].expand(-1, 2)
    expected = -torch.log1p(-(1 - 1e-3) * times[: len(model.seen)])
    torch.testing.assert_close(torch.stack(model.seen), expected, rtol=1e-12, atol=0)
    model.seen.clear()
    pipe(seq_len=4, output_type="pt", num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.seen[0].flatten(), pipe.scheduler.timesteps[0].flatten()[:1])  # default: t itself
    with pytest.raises(ValueError, match="time_input"):
        pipe(seq_len=4, output_type="pt", time_input="alpha")
    pipe.scheduler = scheduler_cls(masking_schedule="linear")
    if scheduler_cls is AncestralMaskedScheduler:  # its first call is at t = 1, where sigma is infinite
        with pytest.raises(ValueError, match="loglinear"):
            pipe(seq_len=4, output_type="pt", time_input="sigma", num_inference_steps=4)


@pytest.mark.parametrize("time_conditioning", ["t", "sigma"])
def test_time_conditioned_training_passes_the_time_and_keeps_the_loss(tmp_path, time_conditioning):
    tok = gpt2_style_tokenizer()
    model = TimedEOSLovingDenoiser(len(tok), 0)
    args = config(tmp_path, masking_schedule="loglinear", time_conditioning=time_conditioning)
    trainer = MaskedDiffusionTrainer(model=model, args=args, processing_class=tok)
    x0 = torch.tensor([tok("abcdef", add_special_tokens=False)["input_ids"]] * 8)
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, {"input_ids": x0})
    torch.manual_seed(0)
    t = trainer.sample_times(8, "cpu")
    expected = -torch.log1p(-(1 - 1e-3) * t) if time_conditioning == "sigma" else t
    torch.testing.assert_close(model.seen[0], expected.float())
    agnostic = MaskedDiffusionTrainer(model=EOSLovingDenoiser(len(tok), 0), args=config(tmp_path / "a", masking_schedule="loglinear"),
                                      processing_class=tok)
    torch.manual_seed(0)
    assert torch.equal(agnostic.compute_loss(agnostic.model, {"input_ids": x0}), loss)  # same draws, same loss
    with pytest.raises(ValueError, match="timesteps"):
        MaskedDiffusionTrainer(model=tiny_bert(len(tok)), args=args, processing_class=tok)
    with pytest.raises(ValueError, match="`time_conditioning`"):
        config(tmp_path, time_conditioning="sigma(t)")
