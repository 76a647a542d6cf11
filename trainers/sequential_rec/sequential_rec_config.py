"""Configuration of [`~hfgen.trainers.SequentialRecTrainer`] (IISAN's training defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.guards import check_numeric_fields


@dataclass
class SequentialRecConfig(TrainingArguments):
    """Training arguments for a sequential recommender over side-adapted item embeddings.

    Defaults follow the official IISAN scripts: Adam with learning rate 2e-4 for the recommender and
    fusion, 1e-4 for the side adapter, no weight decay, batch 64 users of 11 items, in-batch softmax
    with logQ popularity correction, HR@10 / NDCG@10 with full ranking.

    Parameters:
        adapter_learning_rate (`float | None`, *optional*, defaults to `0.0001`):
            Learning rate of the item encoder (side adapter); None: `learning_rate`.
        backbone_learning_rate (`float | None`, *optional*, defaults to `None`):
            Learning rate of trainable backbone weights (full fine-tuning, LoRA); None:
            `adapter_learning_rate`. The official FFT baseline uses 5e-5 (text).
        max_seq_len (`int`, *optional*, defaults to `10`):
            History length; training sequences hold one item more.
        logq_correction (`bool`, *optional*, defaults to `True`):
            Subtract log p(item) (training popularity) from in-batch logits (sampling-bias correction).
        eval_top_k (`list[int]`, *optional*, defaults to `[10]`):
            K of HR@K and NDCG@K.
        item_batch_size (`int`, *optional*, defaults to `1024`):
            Items per batch when embedding the whole item table for full-ranking evaluation.
    """

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
    eval_top_k: list[int] = field(default_factory=lambda: [10], metadata={"help": "K of HR@K and NDCG@K."})
    item_batch_size: int = field(default=1024, metadata={"help": "Items per batch when embedding the whole item "
                                                                 "table for full-ranking evaluation."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep `history` for evaluation."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
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
        if self.remove_unused_columns:
            raise ValueError("`remove_unused_columns` must be False: evaluation needs the `history` column.")
        super().__post_init__()
