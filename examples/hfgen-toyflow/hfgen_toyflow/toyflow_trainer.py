import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from transformers import Trainer

from hfgen.trainers import HfgenTrainerMixin, check_args
from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline
from hfgen_toyflow.toyflow_config import ToyFlowConfig


class ToyFlowTrainer(HfgenTrainerMixin, Trainer):
    """Rectified flow: regress the velocity ``noise - x_0`` of the straight path ``x_t = (1 - t) x_0 + t noise``.

    Args:
        model ([`ToyFlowModel`]): the velocity model.
        args ([`ToyFlowConfig`], *optional*): training arguments; defaults to ``ToyFlowConfig("toyflow-output")``.
        train_dataset, eval_dataset: data sets with a ``"points"`` column of shape ``(dim,)`` (torch format).
        scheduler ([`~diffusers.FlowMatchEulerDiscreteScheduler`], *optional*): saved with the model as the
            sampling pipeline's scheduler.
    """

    method_name = "toyflow"
    card_args = ("learning_rate", "max_steps", "per_device_train_batch_size", "time_sampling")

    def __init__(self, model, args: ToyFlowConfig | None = None, train_dataset=None, eval_dataset=None,
                 scheduler: FlowMatchEulerDiscreteScheduler | None = None, **kwargs):
        args = check_args(args, ToyFlowConfig, "toyflow-output")
        self.noise_scheduler = scheduler if scheduler is not None else FlowMatchEulerDiscreteScheduler()
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        x0 = inputs["points"]
        noise = torch.randn_like(x0)
        if self.args.time_sampling == "logit_normal":
            t = torch.sigmoid(torch.randn(x0.shape[0], device=x0.device))
        else:
            t = torch.rand(x0.shape[0], device=x0.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * noise
        velocity = model(xt, t)
        loss = torch.nn.functional.mse_loss(velocity, noise - x0)
        self._metrics["train" if model.training else "eval"]["velocity_norm"].append(velocity.norm(dim=-1).mean().item())
        return (loss, velocity) if return_outputs else loss

    def pipeline(self) -> ToyFlowPipeline:
        """The trained model as a sampling pipeline (shares the trainer's model)."""
        return ToyFlowPipeline(model=self.accelerator.unwrap_model(self.model), scheduler=self.noise_scheduler)
