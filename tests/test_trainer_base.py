"""Every hfgen trainer evaluates through the shared base ([`hfgen.trainers.base.HfgenTrainerMixin`]), and its
evaluation metrics never leak into its training logs.

Each trainer of ``tests/_reliability_workers/builders.py`` (one per trainer of hfgen's manifests, checked by
``test_core_manifests.py``) trains 2 steps with an evaluation after each step, then evaluates once more.
Before the base, ``DDOTrainer.evaluate()`` raised ("You must specify exactly one of input_ids...": no
``prediction_step``) and ``GFTTrainer`` added the method metrics of evaluation batches to its next training log.
Checked on purpose: with GFT's former ``log`` put in the base (one metric store for both modes, averaged only into
logs that hold ``loss``), the ``masked_diffusion`` and ``ddo`` cases fail with "evaluation recorded metrics for the
next training log".
"""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "_reliability_workers"))
from builders import TRAINERS, build  # noqa: E402

TRAINER_KEYS = {"loss", "grad_norm", "learning_rate", "epoch", "step"}


def eval_set(name, trainer):
    """A tiny eval set in the trainer's own format: its training data, or held-out next items for recommendation
    (whose ``evaluate`` ranks every item and reports HR@K / NDCG@K instead of a loss)."""
    if name == "sequential_rec":
        from hfgen.data.recommendation import make_synthetic_recommendation

        return make_synthetic_recommendation(num_users=32, seed=0).leave_one_out(10)["validation"].select(range(8))
    return trainer.train_dataset


@pytest.mark.parametrize("name", TRAINERS)
def test_evaluation_never_leaks_into_training_logs(tmp_path, name):
    from transformers.trainer_utils import IntervalStrategy

    trainer = build(name, tmp_path / name, max_steps=2, save_strategy="no",
                    per_device_eval_batch_size=8 if name == "nft" else 4)
    trainer.eval_dataset = eval_set(name, trainer)
    trainer.args.eval_strategy, trainer.args.eval_steps = IntervalStrategy.STEPS, 1
    trainer.train()
    metrics = trainer.evaluate()
    headline = "eval_hr@10" if name == "sequential_rec" else "eval_loss"
    assert math.isfinite(metrics[headline]), metrics
    assert not any(trainer._metrics["train"].values()), "evaluation recorded metrics for the next training log"

    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    eval_logs = [log for log in trainer.state.log_history if headline in log]
    assert len(train_logs) == 2 and len(eval_logs) == 3, json.dumps(trainer.state.log_history)
    for log in train_logs:
        assert not [k for k in log if k.startswith("eval_")], log
    for log in eval_logs:
        assert not [k for k in log if not k.startswith("eval_") and k not in ("epoch", "step")], log
    if name != "nft":  # GRPO logs different sets in its two modes (e.g. token counts in training only)
        method_metrics = {k for k in train_logs[-1] if k not in TRAINER_KEYS}
        assert {f"eval_{k}" for k in method_metrics} <= set(eval_logs[-1]), (train_logs[-1], eval_logs[-1])


@pytest.mark.parametrize("name", TRAINERS)
def test_saves_arguments_as_json_never_a_pickle(tmp_path, name):
    trainer = build(name, tmp_path / name, max_steps=1, save_strategy="no")
    trainer.train()
    trainer.save_model()
    files = {p.name for p in (tmp_path / name).iterdir()}
    assert "training_args.bin" not in files and "README.md" in files, files
    saved = json.loads((tmp_path / name / "training_args.json").read_text())
    assert saved["max_steps"] == 1 and saved["output_dir"] == str(tmp_path / name)
