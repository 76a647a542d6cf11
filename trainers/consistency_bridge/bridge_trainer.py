"""DDBM denoiser training (Zhou et al., arXiv 2309.16948) as a `transformers.Trainer`."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from transformers import Trainer

from hfgen.pipelines.consistency_bridge import BridgeScheduler, ConsistencyBridgePipeline

from ..base import HfgenTrainerMixin, check_args
from .bridge_config import BridgeConfig


class BridgeTrainer(HfgenTrainerMixin, Trainer):
    r"""Train the denoiser ``D(x_t, t, y) = c_skip x_t + c_out F([c_in x_t, y], c_noise)`` of a diffusion bridge.

    Args:
        model ([`UNet2DModel`]): the network ``F`` with ``in_channels = 2 * out_channels`` (``y`` concatenated).
        args ([`BridgeConfig`]): schedule, preconditioning and the usual training arguments.
        train_dataset: rows with ``args.source_column`` (``y``) and ``args.target_column`` (``x_0``),
            ``(C, H, W)`` tensors in [-1, 1] (e.g. `hfgen.data.paired_digits.paired_digits_dataset`).

    The output directory holds a [`ConsistencyBridgePipeline`] (the UNet in safetensors, a DBIM
    [`BridgeScheduler`]) and an hfgen model card.
    """

    _tag_names = ["hfgen", "hfgen-consistency-bridge", "ddbm"]
    method_name = "consistency_bridge"
    card_args = ("noise_schedule", "t_min", "sigma_data", "cov_xy", "learning_rate", "max_steps",
                 "per_device_train_batch_size")
    sampler_solver = "dbim"

    def __init__(self, model: UNet2DModel, args: BridgeConfig, train_dataset=None, eval_dataset=None, **kwargs):
        args = check_args(args, BridgeConfig)
        if model.config.in_channels != 2 * model.config.out_channels:
            raise ValueError(
                f"`model` must take [x_t, y] on channels: in_channels ({model.config.in_channels}) "
                f"must be 2 * out_channels ({model.config.out_channels})."
            )
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        self.bridge_scheduler = BridgeScheduler(**args.scheduler_kwargs(solver=self.sampler_solver))

    # --------------------------------------------------------------------------------------- network

    def network(self, model, x_t, t, y):
        """Raw network output ``F([c_in(t) x_t, y], c_noise(t))``; ``t`` is ``(B,)`` float64."""
        sched = self.bridge_scheduler
        model_input = torch.cat([sched.scale_model_input(x_t, t), y], dim=1)
        return model(model_input, sched.c_noise(t).to(x_t.device)).sample

    def sample_batch(self, inputs):
        y, x0 = inputs[self.args.source_column], inputs[self.args.target_column]
        if y.shape != x0.shape:
            raise ValueError(f"source and target images differ in shape: {tuple(y.shape)} vs {tuple(x0.shape)}.")
        return y, x0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """DDBM loss ``lambda(t) ||D - x_0||^2`` with ``lambda = 1/c_out^2``, i.e. ``||F - (x_0 - c_skip x_t)/c_out||^2``."""
        y, x0 = self.sample_batch(inputs)
        sched = self.bridge_scheduler
        t = sched.config.t_min + (sched.T - sched.config.t_min) * torch.rand(x0.shape[0], dtype=torch.float64)
        x_t = sched.add_noise(x0, torch.randn_like(x0), t, y)
        c_skip, c_out, _ = (v.reshape(-1, 1, 1, 1).to(x0) for v in sched.scalings(t, consistency=False))
        target = (x0 - c_skip * x_t) / c_out
        loss = torch.nn.functional.mse_loss(self.network(model, x_t, t, y), target)
        return (loss, None) if return_outputs else loss

    # ---------------------------------------------------------------------------------------- saving

    def pipeline(self) -> ConsistencyBridgePipeline:
        """The trained model as a sampling pipeline (shares the trainer's UNet)."""
        return ConsistencyBridgePipeline(unet=self.accelerator.unwrap_model(self.model), scheduler=self.bridge_scheduler)

    def card_tags(self) -> list[str]:
        return self._tag_names[2:]

    def card_vars(self) -> dict:
        return {"solver": self.bridge_scheduler.config.solver}
