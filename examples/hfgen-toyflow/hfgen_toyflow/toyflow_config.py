from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class ToyFlowConfig(TrainingArguments):
    """Arguments of [`ToyFlowTrainer`] (``transformers.TrainingArguments`` plus the method's own).

    Parameters:
        time_sampling (`str`, *optional*, defaults to `"uniform"`):
            How training draws the time ``t`` of the path ``x_t = (1 - t) x_0 + t noise``: ``"uniform"`` on [0, 1],
            or ``"logit_normal"`` (a standard normal through a sigmoid, which favours the middle of the path).
    """

    time_sampling: str = field(default="uniform", metadata={"help": "'uniform' or 'logit_normal'"})
    remove_unused_columns: bool = False  # the loss reads the "points" column itself
    report_to: str | list[str] = "none"

    def __post_init__(self):
        if self.time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"`time_sampling` must be 'uniform' or 'logit_normal', got {self.time_sampling!r}.")
        super().__post_init__()
