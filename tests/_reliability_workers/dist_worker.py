"""Train a tiny hfgen trainer on one global batch, in one process or as one rank of a ``torchrun`` job (CPU, gloo).

    torchrun --standalone --nproc_per_node 2 dist_worker.py NAME OUT_DIR [--global-batch 8] [--steps 3]
    python dist_worker.py NAME OUT_DIR ...            # the single-process reference

Each process trains with ``per_device_train_batch_size = global_batch / world_size`` and writes
``OUT_DIR/rank<r>.safetensors`` (its final parameters; ``rank<r>_initial.safetensors`` the first ones) and ``OUT_DIR/rank<r>.json`` (its world size, distributed
type, backend and the numbers logged at each step; ``Trainer`` averages the loss over processes).

``masked_diffusion`` runs a subclass that draws the noise (times and masks) of the whole global batch from a seed
per step and keeps this process's rows ([`GlobalBatchNoise`]), so that an example's noise does not depend
on how many processes share the batch. NFT generates greedily (``do_sample=False``) for the same reason.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from builders import build, training_logs  # noqa: E402


def global_batch_noise_trainer():
    from hfgen.pipelines.masked_diffusion.masking import alpha
    from hfgen.trainers import MaskedDiffusionTrainer

    class GlobalBatchNoise(MaskedDiffusionTrainer):
        def _rows(self, draw, salt):
            local = self.args.per_device_train_batch_size
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1000 * self.state.global_step + salt)
                full = draw(local * self.args.world_size)
            start = self.args.process_index * local
            return full[start:start + local]

        def sample_times(self, batch_size, device):
            return self._rows(lambda n: MaskedDiffusionTrainer.sample_times(self, n, device), salt=0)

        def corrupt(self, input_ids, t, maskable):
            keep = alpha(self.args.masking_schedule, t, self.args.schedule_eps)[:, None]
            u = self._rows(lambda n: torch.rand((n, input_ids.shape[1]), dtype=torch.float64), salt=1)
            masked = (u.to(input_ids.device) >= keep) & maskable
            return torch.where(masked, self.mask_token_id, input_ids), masked

    return GlobalBatchNoise


def parity_reward(prompts, completions, **kwargs) -> list[float]:
    """Correct when the answer's first character is a digit of the parity of the question's first operand.

    Greedy answers are equal within a group, so a question's answers are all right or all wrong; the rule makes
    some questions right and some wrong, so both of NFT's terms train.
    """
    return [float(c[:1].isdigit() and int(c[0]) % 2 == int(p[0]) % 2) for p, c in zip(prompts, completions)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=["nft", "masked_diffusion"])
    parser.add_argument("out_dir")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    a = parser.parse_args()
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if a.global_batch % world_size:
        raise ValueError(f"`--global-batch` ({a.global_batch}) must be a multiple of the world size ({world_size}).")
    kwargs = dict(max_steps=a.steps, save_strategy="no", per_device_train_batch_size=a.global_batch // world_size)
    if world_size > 1:  # (accelerate refuses a backend without a process group)
        kwargs["ddp_backend"] = "gloo"
    if a.name == "nft":
        # greedy answers are equal within a group (r_q in {0, 1}): keep those questions (clipped r_q) in the loss
        kwargs.update(generation_kwargs={"do_sample": False}, dynamic_sampling=False, learning_rate=1e-2,
                      reward=parity_reward)
    else:
        kwargs.update(trainer_cls=global_batch_noise_trainer())
    trainer = build(a.name, a.out_dir, **kwargs)
    rank = trainer.args.process_index
    model = trainer.accelerator.unwrap_model(trainer.model)
    initial = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    trainer.train()

    os.makedirs(a.out_dir, exist_ok=True)
    save_file(initial, os.path.join(a.out_dir, f"rank{rank}_initial.safetensors"))
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
              os.path.join(a.out_dir, f"rank{rank}.safetensors"))
    state = trainer.accelerator.state
    info = {"world_size": trainer.args.world_size, "distributed_type": str(state.distributed_type),
            "backend": state.backend, "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
            "logs": training_logs(trainer)}
    with open(os.path.join(a.out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # a rank exiting with live gloo threads can abort ("terminate called ...")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
