"""NFTTrainer warns when a step's groups are all unmixed (every answer wrong: a cold start) and says how to warm-start."""

import logging

import pytest
import torch
from transformers.utils import logging as hf_logging

from hfgen.data.arithmetic import arithmetic_dataset, arithmetic_tokenizer, tiny_causal_lm
from hfgen.trainers import NFTConfig, NFTTrainer


def never_right(completions, **kwargs):
    return [0.0] * len(completions)


def sometimes_right(completions, **kwargs):
    return [float(i % 2) for i in range(len(completions))]


@pytest.mark.parametrize("refill_rounds", [0, 2])
@pytest.mark.parametrize("reward, warns", [(never_right, True), (sometimes_right, False)])
def test_warns_on_a_step_without_mixed_groups(tmp_path, caplog, reward, warns, refill_rounds):
    tokenizer = arithmetic_tokenizer()
    args = NFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                     max_completion_length=2, max_refill_rounds=refill_rounds, use_cpu=True, report_to="none",
                     save_strategy="no", disable_tqdm=True)
    trainer = NFTTrainer(model=tiny_causal_lm(tokenizer), reward_funcs=reward, args=args,
                         train_dataset=arithmetic_dataset(max_operand=5)["train"], processing_class=tokenizer)
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING, logger="hfgen.trainers.nft.nft_trainer"):
            trainer.train()
    finally:
        hf_logging.disable_propagation()
    warned = [r.getMessage() for r in caplog.records if "no prompt had both right and wrong answers" in r.getMessage()]
    assert bool(warned) == warns
    if warns:
        assert "sft_warm_start" in warned[0] and f"after {refill_rounds} refill rounds" in warned[0]


def test_warm_start_helper_has_a_generic_home_and_the_old_import_works():
    from datasets import Dataset

    from hfgen.data import arithmetic
    from hfgen.data.warm_start import sft_warm_start

    assert arithmetic.sft_warm_start is sft_warm_start
    tokenizer = arithmetic_tokenizer()
    data = Dataset.from_list([{"question": f"{a}+{a}=", "target": str(2 * a)} for a in range(10)])
    model = tiny_causal_lm(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sft_warm_start(model, tokenizer, data, steps=2, batch_size=4, prompt_column="question", completion_column="target")
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="completion_column"):
        sft_warm_start(model, tokenizer, data, steps=1, prompt_column="question")  # no "answer" column
