"""Consistency diffusion bridge models (He, Zheng et al., arXiv 2410.22637): CBD and CBT."""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel

from ..base import check_args
from ..utils import EMA, StepEndCallback, to_training_device
from .bridge_trainer import BridgeTrainer
from .consistency_bridge_config import ConsistencyBridgeConfig


class ConsistencyBridgeTrainer(BridgeTrainer):
    r"""Learn the consistency function ``h_theta(x_t, t, y)`` of the bridge PF-ODE (CDBM Sec. 3.4).

    ``h_theta = c_skip(t - t_min) x_t + c_out(t - t_min) F([c_in(t) x_t, y], c_noise(t))`` (the DDBM
    preconditioning at shifted time, so ``h_theta(x, t_min, y) = x``). Each step samples
    ``t ~ U[t_min, T - gamma]``, ``r = r(t) < t``, ``x_t = a_t y + b_t x_0 + c_t z`` and minimises::

        lambda(t) d( h_theta(x_t, t, y), h_target(x_r, r, y) )
        CBD (Eq. 17): x_r = first-order ODE step t -> r with the teacher's denoiser D_phi(x_t, t, y)
        CBT (Eq. 20): x_r = a_r y + b_r x_0 + c_r z   (the same step with the oracle x_0)

    The target ``h_target`` is the student under stop-gradient or its EMA.

    Args:
        model ([`UNet2DModel`]): the student, usually initialised from the DDBM teacher's weights.
        args ([`ConsistencyBridgeConfig`]).
        teacher ([`UNet2DModel`], *optional*): the frozen DDBM teacher, required for ``mode="distillation"``.
        train_dataset: as for [`BridgeTrainer`].
    """

    _tag_names = ["hfgen", "hfgen-consistency-bridge", "cdbm"]
    sampler_solver = "consistency"
    card_args = BridgeTrainer.card_args + ("mode", "gamma", "time_schedule", "delta_t", "sigmoid_b",
                                           "target_network", "distance")

    def __init__(self, model: UNet2DModel, args: ConsistencyBridgeConfig, teacher: UNet2DModel | None = None,
                 train_dataset=None, eval_dataset=None, **kwargs):
        args = check_args(args, ConsistencyBridgeConfig)
        if args.mode == "distillation" and teacher is None:
            raise ValueError("`teacher` (a trained DDBM UNet) is required for mode='distillation'.")
        public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
        if teacher is not None and public(teacher.config) != public(model.config):
            raise ValueError("`teacher` and `model` must share one UNet config (the student starts from the teacher).")
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        self.teacher = None
        if args.mode == "distillation":
            self.teacher = to_training_device(teacher, args.device).eval().requires_grad_(False)
        self._target = None if args.target_network != "ema" else EMA(model, args.target_ema_decay)
        self.target_model = None if self._target is None else to_training_device(self._target.model, args.device)
        if self._target is not None:
            self.add_callback(StepEndCallback(self.update_target))

    # ------------------------------------------------------------------------------------ the method

    def consistency_function(self, model, x_t, t, y):
        """``h(x_t, t, y)``: the network's output mixed with the shifted-time DDBM scalings."""
        return self.bridge_scheduler.precondition_outputs(x_t, self.network(model, x_t, t, y), t, consistency=True)

    def denoise(self, model, x_t, t, y):
        """The DDBM denoiser ``D(x_t, t, y)`` (no time shift), e.g. the teacher's."""
        return self.bridge_scheduler.precondition_outputs(x_t, self.network(model, x_t, t, y), t, consistency=False)

    def sample_times(self, batch_size: int):
        """``(t, r, lambda)``, float64 ``(B,)``: ``t ~ U[t_min, T - gamma]`` and the gap of ``args.time_schedule``."""
        args, sched = self.args, self.bridge_scheduler
        t_min, t_max = sched.config.t_min, sched.T - args.gamma
        t = t_min + (t_max - t_min) * torch.rand(batch_size, dtype=torch.float64)
        if args.time_schedule == "constant":
            r, weight = (t - args.delta_t).clamp_min(t_min), torch.ones_like(t)
        else:  # ECT-style: the gap shrinks by q every stage, larger at small t through the sigmoid
            stage = self.state.global_step // args.stage_steps
            gap = t * (1 + args.sigmoid_k * torch.sigmoid(-args.sigmoid_b * t)) / args.sigmoid_q ** (stage + 1)
            r = (t - gap).clamp_min(t_min)
            weight = 1.0 / (t - r)
        return t, r, weight

    def target_input(self, x0, y, z, x_t, t, r):
        """``x_r``: CBT's teacher-free estimate or CBD's first-order ODE step with the teacher."""
        sched = self.bridge_scheduler
        if self.args.mode == "training":
            return sched.add_noise(x0, z, r, y)
        return sched.first_order_step(x_t, self.denoise(self.teacher, x_t, t, y), t, r, y)

    def distance(self, a, b):
        diff = (a - b).flatten(1)
        if self.args.distance == "l2":
            return diff.pow(2).mean(1)
        c = self.args.huber_c if self.args.huber_c is not None else 0.00054 * math.sqrt(diff.shape[1])
        return (diff.pow(2).sum(1) + c**2).sqrt() - c

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        y, x0 = self.sample_batch(inputs)
        t, r, weight = self.sample_times(x0.shape[0])
        z = torch.randn_like(x0)
        x_t = self.bridge_scheduler.add_noise(x0, z, t, y)
        prediction = self.consistency_function(model, x_t, t, y)
        with torch.no_grad():
            x_r = self.target_input(x0, y, z, x_t, t, r)
            target = self.consistency_function(self.target_model or model, x_r, r, y)
        loss = (weight.to(x0) * self.distance(prediction, target)).mean()
        return (loss, None) if return_outputs else loss

    def update_target(self):
        """``θ_target ← d·θ_target + (1 − d)·θ`` after each optimizer step (``d = target_ema_decay``)."""
        self._target.update(self.accelerator.unwrap_model(self.model))

    # ---------------------------------------------------------------------------------- checkpoints

    def checkpointed_modules(self) -> dict[str, torch.nn.Module]:
        """The EMA target is training state, like the optimizer's moments: saved with each checkpoint (not in the
        saved model) as ``ema_target.safetensors`` and restored on resume, so a resumed run equals an unbroken one."""
        return {} if self.target_model is None else {"ema_target": self.target_model}
