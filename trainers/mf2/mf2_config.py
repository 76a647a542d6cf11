"""Training configuration of [`~hfgen.trainers.mf2.MF2Trainer`] (MF^2 pretraining, arXiv 2504.10351)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
MF2_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: the collator reads the description columns",
})


@dataclass
class MF2TrainingConfig(TrainingArguments):
    r"""
    Configuration class for [`MF2Trainer`]: every [`transformers.TrainingArguments`] parameter plus the
    weights of MF^2's two alignment levels,

    $$\mathcal{L} = \lambda_g \mathcal{L}_\text{glob} + \lambda_l \mathcal{L}_\text{loc}.$$

    Parameters:
        global_loss_weight (`float`, *optional*, defaults to `1.0`):
            $\lambda_g$, the weight of the global (face image / emotion description) contrastive loss.
        local_loss_weight (`float`, *optional*, defaults to `1.0`):
            $\lambda_l$, the weight of the local (AU feature / AU description) contrastive loss. `0.0` is the
            global-only ablation (a CLIP-style face model).
        max_text_length (`int`, *optional*, defaults to `64`):
            Descriptions are truncated to this many tokens by the collator.

    Defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the collator needs the
    description columns), `learning_rate=1e-4`, `logging_steps=10`, `report_to="none"`.
    """

    global_loss_weight: float = field(default=1.0, metadata={"help": "Weight λ_g of the global contrastive loss."})
    local_loss_weight: float = field(default=1.0, metadata={"help": "Weight λ_l of the local (per-AU) contrastive "
                                                                    "loss; 0 is the global-only ablation."})
    max_text_length: int = field(default=64, metadata={"help": "Maximum description length in tokens."})
    learning_rate: float = field(default=1e-4, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the description columns for the "
                                                                         "collator."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        MF2_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if self.global_loss_weight < 0 or self.local_loss_weight < 0:
            raise ValueError(f"`global_loss_weight` and `local_loss_weight` must be >= 0, got "
                             f"{self.global_loss_weight!r} and {self.local_loss_weight!r}.")
        if self.global_loss_weight == 0 and self.local_loss_weight == 0:
            raise ValueError("`global_loss_weight` and `local_loss_weight` are both 0: nothing would be trained.")
        if self.max_text_length < 3:
            raise ValueError(f"`max_text_length` must be at least 3 tokens, got {self.max_text_length!r}.")
        super().__post_init__()
