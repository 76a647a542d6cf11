"""Config of diffusion-bridge training (DDBM): [`BridgeConfig`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hfgen.pipelines.consistency_bridge.bridges import BRIDGE_SCHEDULES
from hfgen.validation import check_numeric_fields

from ..options import TRAINING_ARGUMENTS_OPTIONS

# Every TrainingArguments field, classified: see hfgen/trainers/options.py.
BRIDGE_OPTIONS = TRAINING_ARGUMENTS_OPTIONS.with_changes(refused={
    "remove_unused_columns": "it must stay False: the bridge trainers read the image columns (the model's signature does not name them)",
})


@dataclass
class BridgeConfig(TrainingArguments):
    r"""Arguments of [`BridgeTrainer`]: DDBM denoiser training on paired images ``(x_0, y)``.

    The loss is DDBM's ``E_t lambda(t) ||D(x_t, t, y) - x_0||^2`` with ``lambda = 1 / c_out^2`` and
    ``t ~ U[t_min, T]``, written as the unit-variance regression of the raw network output.

    Parameters:
        noise_schedule (`str`, *optional*, defaults to `"vp"`):
            Bridge reference SDE: 'vp' or 've'.
        beta_min (`float`, *optional*, defaults to `0.1`):
            VP schedule beta_min.
        beta_d (`float`, *optional*, defaults to `2.0`):
            VP schedule beta_d (beta_max = beta_min + beta_d).
        sigma_max (`float`, *optional*, defaults to `80.0`):
            Terminal time T of the VE schedule.
        t_min (`float`, *optional*, defaults to `0.0001`):
            Smallest training/sampling time (CDBM's epsilon).
        sigma_data (`float`, *optional*, defaults to `0.5`):
            Data std of the DDBM preconditioning.
        cov_xy (`float`, *optional*, defaults to `0.0`):
            Covariance of x_0 and y assumed by the DDBM preconditioning.
        source_column (`str`, *optional*, defaults to `"source"`):
            Data set column of the source image y = x_T.
        target_column (`str`, *optional*, defaults to `"target"`):
            Data set column of the target image x_0.
        save_safetensors (`bool`, *optional*, defaults to `True`):
            Always safetensors.
    """

    noise_schedule: str = field(default="vp", metadata={"help": "Bridge reference SDE: 'vp' or 've'."})
    beta_min: float = field(default=0.1, metadata={"help": "VP schedule beta_min."})
    beta_d: float = field(default=2.0, metadata={"help": "VP schedule beta_d (beta_max = beta_min + beta_d)."})
    sigma_max: float = field(default=80.0, metadata={"help": "Terminal time T of the VE schedule."})
    t_min: float = field(default=1e-4, metadata={"help": "Smallest training/sampling time (CDBM's epsilon)."})
    sigma_data: float = field(default=0.5, metadata={"help": "Data std of the DDBM preconditioning."})
    cov_xy: float = field(default=0.0, metadata={"help": "Covariance of x_0 and y assumed by the DDBM preconditioning."})
    source_column: str = field(default="source", metadata={"help": "Data set column of the source image y = x_T."})
    target_column: str = field(default="target", metadata={"help": "Data set column of the target image x_0."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image columns (no model signature)."})
    save_safetensors: bool = field(default=True, metadata={"help": "Always safetensors."})

    def __post_init__(self):
        check_numeric_fields(self, TrainingArguments)  # wrong types and NaN, naming the field
        BRIDGE_OPTIONS.check(self)  # inherited fields this trainer does not honour, named
        if self.noise_schedule not in BRIDGE_SCHEDULES:
            raise ValueError(f"`noise_schedule` must be one of {BRIDGE_SCHEDULES}, got {self.noise_schedule!r}.")
        if self.t_min <= 0:
            raise ValueError(f"`t_min` must be > 0, got {self.t_min}.")
        if self.sigma_data <= 0 or abs(self.cov_xy) > self.sigma_data**2:
            raise ValueError(f"Need `sigma_data` > 0 and |`cov_xy`| <= sigma_data^2, got {self.sigma_data}, {self.cov_xy}.")
        super().__post_init__()

    def scheduler_kwargs(self, **overrides) -> dict:
        """Arguments of the matching [`BridgeScheduler`]."""
        kwargs = dict(
            noise_schedule=self.noise_schedule, beta_min=self.beta_min, beta_d=self.beta_d, sigma_max=self.sigma_max,
            t_min=self.t_min, sigma_data=self.sigma_data, cov_xy=self.cov_xy,
        )
        return {**kwargs, **overrides}
