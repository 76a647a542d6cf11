"""Configuration of [`~hfgen.trainers.SequentialRecTrainer`] (IISAN's training defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS, field_notes

#: Defaults of the fields left unset (None), per recipe.
RECIPES = {
    "iisan": {"lr_scheduler_type": "constant", "max_grad_norm": 0.0, "in_batch_negatives": "slots",
              "early_stopping_patience": 10},
    "hfgen": {"lr_scheduler_type": "linear", "max_grad_norm": 1.0, "in_batch_negatives": "distinct",
              "early_stopping_patience": 0},
}

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
SEQUENTIAL_REC_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(
    refused={
        "remove_unused_columns": "it must stay False: evaluation needs the `history` column",
        **field_notes("the full-ranking evaluation (`evaluate`) scores items in the model's own dtype; cast the "
                      "model to evaluate in half precision", "bf16_full_eval fp16_full_eval"),
    },
    not_applicable=field_notes("evaluation is full-ranking HR@K / NDCG@K (`SequentialRecTrainer.evaluate`), not "
                               "Trainer's prediction loop", "prediction_loss_only include_for_metrics "
                               "eval_do_concat_batches eval_use_gather_object eval_accumulation_steps "
                               "batch_eval_metrics label_names"),
)


@dataclass
class SequentialRecConfig(TrainingArguments):
    """Training arguments for a sequential recommender over side-adapted item embeddings.

    ``recipe="iisan"`` (default) is the official IISAN training recipe (GAIR-Lab/IISAN ``run.py``,
    ``model/model.py``): Adam (``adamw_torch`` with ``weight_decay=0``, the same update) at a
    **constant** learning rate, 2e-4 for the recommender and fusion and 1e-4 for the side adapter,
    **no gradient clipping**, batch 64 users of 11 items, the in-batch softmax with **one candidate
    per batch slot** (an item bought by several users of the batch is several negatives) and the logQ
    correction ``- log p(item)`` with ``p`` the training interaction frequency (each slot is one draw
    from ``p``, so this is the sampling-consistent correction), and **early stopping** after 10
    evaluations without a gain in ``metric_for_best_model`` (default: validation HR@K; acts when
    ``eval_strategy`` is not ``"no"``). HR@K / NDCG@K with full ranking.

    ``recipe="hfgen"`` keeps hfgen's earlier defaults: linear decay, ``max_grad_norm=1.0``, one
    candidate per *distinct* item of the batch, no early stopping. Any field given explicitly wins
    over the recipe.

    Parameters:
        recipe (`str`, *optional*, defaults to `"iisan"`):
            Defaults of the unset fields below: `"iisan"` (official recipe) or `"hfgen"` (hfgen's earlier defaults).
        lr_scheduler_type (`str | None`, *optional*, defaults to `None`):
            None: `"constant"` (iisan) / `"linear"` (hfgen).
        max_grad_norm (`float | None`, *optional*, defaults to `None`):
            None: 0, no clipping (iisan) / 1.0 (hfgen).
        in_batch_negatives (`str | None`, *optional*, defaults to `None`):
            `"slots"`: one candidate per batch slot, duplicates kept (iisan); `"distinct"`: one per distinct item
            (hfgen). None: the recipe's.
        early_stopping_patience (`int | None`, *optional*, defaults to `None`):
            Stop after this many evaluations without a gain in `metric_for_best_model`; 0: never. None: 10 (iisan)
            / 0 (hfgen).
        adapter_learning_rate (`float | None`, *optional*, defaults to `0.0001`):
            Learning rate of the item encoder (side adapter); None: `learning_rate`.
        backbone_learning_rate (`float | None`, *optional*, defaults to `None`):
            Learning rate of trainable backbone weights (full fine-tuning, LoRA); None:
            `adapter_learning_rate`. The official FFT baseline uses 5e-5 (text).
        max_seq_len (`int`, *optional*, defaults to `10`):
            History length; training sequences hold one item more.
        logq_correction (`bool`, *optional*, defaults to `True`):
            Subtract log p(item) (training popularity) from in-batch logits (sampling-bias correction).
        eval_exclude_history (`bool`, *optional*, defaults to `True`):
            Remove every history item from the ranked candidates (official IISAN rule: a target seen before is a
            miss); False: rank all items (only padding removed). The label never changes the candidates.
        eval_top_k (`list[int]`, *optional*, defaults to `[10]`):
            K of HR@K and NDCG@K.
        item_batch_size (`int`, *optional*, defaults to `1024`):
            Items per batch when embedding the whole item table for full-ranking evaluation.
    """

    recipe: str = field(default="iisan", metadata={"help": "Defaults of the unset fields below: 'iisan' (official "
                                                           "recipe) or 'hfgen' (hfgen's earlier defaults)."})
    lr_scheduler_type: str | None = field(default=None, metadata={"help": "None: 'constant' (iisan) / 'linear' (hfgen)."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "None: 0, no clipping (iisan) / 1.0 (hfgen)."})
    in_batch_negatives: str | None = field(default=None, metadata={
        "help": "'slots': one candidate per batch slot, duplicates kept (iisan); 'distinct': one per distinct item "
                "(hfgen). None: the recipe's."})
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without a gain in `metric_for_best_model`; 0: never. "
                "None: 10 (iisan) / 0 (hfgen)."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate of the recommender (SASRec)."})
    adapter_learning_rate: float | None = field(
        default=1e-4, metadata={"help": "Learning rate of the item encoder (side adapter); None: `learning_rate`."})
    backbone_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of trainable backbone weights (full fine-tuning, LoRA); "
                                        "None: `adapter_learning_rate`. The official FFT baseline uses 5e-5 (text)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Users per training batch."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Users per evaluation batch."})
    max_seq_len: int = field(default=10, metadata={"help": "History length; training sequences hold one item more."})
    logq_correction: bool = field(default=True, metadata={"help": "Subtract log p(item) (training popularity) from "
                                                                  "in-batch logits (sampling-bias correction)."})
    eval_exclude_history: bool = field(default=True, metadata={
        "help": "Remove every history item from the ranked candidates (official IISAN rule: a target seen before "
                "is a miss); False: rank all items (only padding removed). The label never changes the candidates."})
    eval_top_k: list[int] = field(default_factory=lambda: [10], metadata={"help": "K of HR@K and NDCG@K."})
    item_batch_size: int = field(default=1024, metadata={"help": "Items per batch when embedding the whole item "
                                                                 "table for full-ranking evaluation."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep `history` for evaluation."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"`recipe` must be one of {sorted(RECIPES)}, got {self.recipe!r}.")
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        SEQUENTIAL_REC_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.in_batch_negatives not in ("slots", "distinct"):
            raise ValueError(f"`in_batch_negatives` must be 'slots' or 'distinct', got {self.in_batch_negatives!r}.")
        if self.early_stopping_patience < 0:
            raise ValueError(f"`early_stopping_patience` must be >= 0, got {self.early_stopping_patience}.")
        if self.max_seq_len < 1:
            raise ValueError(f"`max_seq_len` must be >= 1, got {self.max_seq_len}.")
        if self.adapter_learning_rate is not None and self.adapter_learning_rate <= 0:
            raise ValueError(f"`adapter_learning_rate` must be > 0 or None, got {self.adapter_learning_rate}.")
        if self.backbone_learning_rate is not None and self.backbone_learning_rate <= 0:
            raise ValueError(f"`backbone_learning_rate` must be > 0 or None, got {self.backbone_learning_rate}.")
        if not self.eval_top_k or any(int(k) < 1 for k in self.eval_top_k):
            raise ValueError(f"`eval_top_k` must be a non-empty list of positive integers, got {self.eval_top_k}.")
        if self.item_batch_size < 1:
            raise ValueError(f"`item_batch_size` must be >= 1, got {self.item_batch_size}.")
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            # the best model is the one with the best validation HR@K (TrainingArguments would pick `eval_loss`,
            # which full-ranking evaluation does not report)
            self.metric_for_best_model, self.greater_is_better = f"hr@{self.eval_top_k[0]}", True
        super().__post_init__()
