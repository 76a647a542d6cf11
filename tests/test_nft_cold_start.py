"""NFTTrainer warns when a step's groups are all unmixed (every answer wrong: a cold start) and says how to warm-start."""

import logging

import pytest
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
