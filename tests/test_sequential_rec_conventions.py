"""SequentialRecTrainer follows Trainer's conventions: (model, args, train_dataset, eval_dataset) in that order, and
``load_best_model_at_end=True`` picks the best model by validation HR@K (the documented default)."""

import inspect
import warnings

import pytest
import torch

from hfgen.data.recommendation import make_synthetic_recommendation
from hfgen.models import SASRecConfig, SASRecModel
from hfgen.trainers import SequentialRecConfig, SequentialRecTrainer


def small_setup():
    data = make_synthetic_recommendation(num_users=24, modalities=("text",), seed=0)
    splits = data.leave_one_out(5)
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(num_items=data.num_items, max_seq_len=5, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=1))
    return data, splits, model


def test_trainer_order_with_item_encoder_keyword(tmp_path):
    data, splits, model = small_setup()
    args = SequentialRecConfig(output_dir=str(tmp_path), max_seq_len=5, max_steps=1, save_strategy="no")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        trainer = SequentialRecTrainer(model, args, splits["train"], splits["validation"], item_encoder=None,
                                       item_popularity=data.popularity())
    assert trainer.args is args and trainer.train_dataset is splits["train"]
    assert trainer.eval_dataset is splits["validation"]
    trainer.train()
    assert "eval_hr@10" in trainer.evaluate()  # on the eval set given in third place
    assert list(inspect.signature(SequentialRecTrainer).parameters)[:4] == ["model", "args", "train_dataset",
                                                                          "eval_dataset"]


def test_former_order_still_works_with_a_deprecation_warning(tmp_path):
    data, splits, model = small_setup()
    args = SequentialRecConfig(output_dir=str(tmp_path), max_seq_len=5, max_steps=1, save_strategy="no")
    with pytest.warns(FutureWarning, match="Trainer's order"):
        trainer = SequentialRecTrainer(model, None, args, splits["train"], item_popularity=data.popularity())
    assert trainer.args is args and trainer.train_dataset is splits["train"]
    with pytest.warns(FutureWarning):
        trainer = SequentialRecTrainer(model, None, args=args, train_dataset=splits["train"])
    assert trainer.args is args


def test_load_best_model_at_end_uses_validation_hr(tmp_path):
    data, splits, model = small_setup()
    args = SequentialRecConfig(output_dir=str(tmp_path), max_seq_len=5, num_train_epochs=2, eval_strategy="epoch",
                               save_strategy="epoch", load_best_model_at_end=True, early_stopping_patience=0,
                               per_device_train_batch_size=8, eval_top_k=[5])
    assert args.metric_for_best_model == "hr@5" and args.greater_is_better
    trainer = SequentialRecTrainer(model, args, splits["train"], splits["validation"],
                                   item_popularity=data.popularity())
    trainer.train()  # used to fail after epoch 1: metric_for_best_model was `eval_loss`, which is never reported
    assert trainer.state.best_metric is not None
    assert trainer.state.best_metric == max(log["eval_hr@5"] for log in trainer.state.log_history if "eval_hr@5" in log)


def test_named_eval_sets_pick_the_first_for_the_best_model(tmp_path):
    data, splits, model = small_setup()
    args = SequentialRecConfig(output_dir=str(tmp_path), max_seq_len=5, num_train_epochs=1, eval_strategy="epoch",
                               save_strategy="epoch", load_best_model_at_end=True, early_stopping_patience=0)
    trainer = SequentialRecTrainer(model, args, splits["train"],
                                   {"valid": splits["validation"], "test": splits["test"]})
    assert trainer.args.metric_for_best_model == "valid_hr@10"
    trainer.train()
    assert trainer.state.best_metric is not None
