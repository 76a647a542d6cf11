"""DDBM denoiser training (Zhou et al., arXiv 2309.16948) as a `transformers.Trainer`."""

from __future__ import annotations

import os

import torch
from diffusers import UNet2DModel
from hfgen.pipelines.consistency_bridge import BridgeScheduler, ConsistencyBridgePipeline
from transformers import Trainer

from hfgen.guards import GuardedTrainerMixin

from .bridge_config import BridgeConfig

METHOD_NAME = "consistency_bridge"


class BridgeTrainer(GuardedTrainerMixin, Trainer):
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
    sampler_solver = "dbim"

    def __init__(self, model: UNet2DModel, args: BridgeConfig, train_dataset=None, eval_dataset=None, **kwargs):
        if not isinstance(args, BridgeConfig):
            raise ValueError(f"`args` must be a BridgeConfig, got {type(args).__name__}.")
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

    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        self.pipeline().save_pretrained(output_dir, safe_serialization=True)
        with open(os.path.join(output_dir, "training_config.json"), "w") as f:
            f.write(self.args.to_json_string())
        self.create_model_card(output_dir=output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None):
        from safetensors.torch import load_file

        weights = os.path.join(resume_from_checkpoint, "unet", "diffusion_pytorch_model.safetensors")
        (model or self.model).load_state_dict(load_file(weights))

    def create_model_card(self, output_dir: str | None = None, model_name: str | None = None, **kwargs):
        """Write the hfgen card (``README.md``) of this method into the output directory."""
        from hfgen.hub import save_model_card

        keys = ("noise_schedule", "t_min", "sigma_data", "cov_xy", "learning_rate", "max_steps", "per_device_train_batch_size")
        keys += getattr(self, "_card_keys", ())
        save_model_card(
            output_dir or self.args.output_dir, METHOD_NAME, model_name=model_name,
            training_config={k: getattr(self.args, k) for k in keys}, extra_tags=self._tag_names[2:],
            solver=self.bridge_scheduler.config.solver,
        )
