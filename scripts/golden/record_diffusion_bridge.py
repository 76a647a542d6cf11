"""Record thu-ml/DiffusionBridge (DBIM / DDBM) for hfgen's golden tests (``tests/golden/data/diffusion_bridge/``).

    git clone https://github.com/thu-ml/DiffusionBridge /tmp/DiffusionBridge   # or any snapshot of it
    OMP_NUM_THREADS=1 python scripts/golden/record_diffusion_bridge.py --checkout /tmp/DiffusionBridge [--commit SHA]

What runs from the checkout, unchanged (``ddbm/karras_diffusion.py``):
- ``VPNoiseSchedule(beta_d=2, beta_min=0.1)`` and ``VENoiseSchedule(sigma_max=80)``: ``get_alpha_rho``, ``get_abc``,
  ``get_f_g2`` on 258 times;
- ``DDBMPreCond._get_scalings_and_weightings`` for three ``(sigma_data, cov_xy)``;
- ``karras_sample`` with ``sampler="dbim"`` (``eta`` 0, 0.5, 1; 1 and 4 steps) and ``sampler="heun"``
  (``churn_step_ratio`` 0 and 0.33; 5 steps): its time grid (``get_sigmas_uniform`` / ``get_sigmas_karras``), its
  ``denoiser`` closure (``KarrasDenoiser.denoise``, clipping to [-1, 1]), ``sample_dbim`` / ``sample_heun`` with
  ``ddbm_simulate`` and ``get_d``. The samplers' own output is kept (before ``karras_sample``'s final clamp) by
  wrapping them; their Gaussian draws are the real ones (``BatchedSeedGenerator`` for DBIM, ``torch.randn_like``
  for Heun), seeded, and recorded as drawn;
- ``KarrasDenoiser.training_bridge_losses`` (with ``bridge_sample``, ``denoise``) on a tiny Diffusers
  ``UNet2DModel`` whose weights are recorded, and its gradient.

Everything runs in float64 (``torch.set_default_dtype(torch.float64)``), so that the grids ``karras_sample``
builds with ``torch.linspace`` are float64 like hfgen's (the official float32 grid differs by ~1e-8 relative;
that rounding is the one difference left out). The network is the toy of ``tests/golden/test_bridge.py``
(``ToyNet``, seed 0), which embeds its time input in float32 as the official UNet does.

Stand-ins (written here): ``piq`` (``LPIPS``, only for the ``lpips`` training loss; ``loss_norm="l2"`` here).
``torch.distributed`` is the real one, a one-process ``gloo`` group (the samplers ask for the rank), with the
environment ``torchrun`` would set (``ddbm/dist_util.py`` reads ``LOCAL_RANK``, ``WORLD_SIZE``, ``RANK`` on import).
"""

import functools
import os
import tempfile

import torch
import torch.distributed as dist
from _common import arguments, stand_in, write

args = arguments(__doc__.splitlines()[0], "thu-ml/DiffusionBridge")
from tests.golden.test_bridge import SCHEDULES, ToyNet, data, grid  # noqa: E402

stand_in("piq", LPIPS=None)
for variable, value in (("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("RANK", "0")):  # what torchrun would set
    os.environ.setdefault(variable, value)
from ddbm import karras_diffusion as kd  # noqa: E402
from ddbm import random_util  # noqa: E402

torch.set_default_dtype(torch.float64)
FILE = "ddbm/karras_diffusion.py"


def schedule(name):
    return kd.VPNoiseSchedule(beta_d=2.0, beta_min=0.1) if name == "vp" else kd.VENoiseSchedule(sigma_max=80.0)


def diffusion(name):
    T = SCHEDULES[name]["T"]
    return kd.KarrasDenoiser(schedule(name), kd.DDBMPreCond(schedule(name), 0.5, 0.0), t_max=T, t_min=1e-4, loss_norm="l2")


class Kept:
    """Wraps ``owner.name`` so that every value it returns is kept (the first item, for tuples)."""

    def __init__(self, owner, name, first=False):
        self.owner, self.name, self.original, self.first, self.values = owner, name, getattr(owner, name), first, []

    def __call__(self, *a, **k):
        out = self.original(*a, **k)
        self.values.append(out[0] if self.first else out)
        return out

    def __get__(self, instance, owner=None):  # wrapping a method: bind it like a function would be
        return self if instance is None else functools.partial(self, instance)

    def __enter__(self):
        setattr(self.owner, self.name, self)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def record_schedules():
    tensors = {}
    for name in ("vp", "ve"):
        ns, t = schedule(name), grid(name)
        tensors[f"{name}.t"] = t
        tensors[f"{name}.alpha_rho"] = torch.stack([v.to(torch.float64) for v in ns.get_alpha_rho(t)])
        tensors[f"{name}.abc"] = torch.stack([v.to(torch.float64) for v in ns.get_abc(t)])
        tensors[f"{name}.f_g2"] = torch.stack(ns.get_f_g2(t))
        for sigma_data, cov_xy in [(0.5, 0.0), (0.5, 0.125), (0.3, -0.05)]:
            key = f"{name}.precond.{sigma_data}.{cov_xy}"
            out = kd.DDBMPreCond(ns, sigma_data=sigma_data, cov_xy=cov_xy)._get_scalings_and_weightings(t)
            for part, value in zip(("c_skip", "c_in", "c_out", "c_noise", "weightings"), out):
                tensors[f"{key}.{part}"] = value
    write(args, "diffusion_bridge", "schedules", tensors, file=FILE,
          function="VPNoiseSchedule / VENoiseSchedule (get_alpha_rho, get_abc, get_f_g2), DDBMPreCond._get_scalings_and_weightings",
          seeds={"times (no random draws)": "tests/golden/test_bridge.py grid(): linspace(1e-4, T - 1e-3, 257) and T - 1e-6"})


def record_samplers():
    net, (y, _) = ToyNet(), data()
    tensors = {"source": y, **{f"net.{k}": v for k, v in net.state_dict().items()}}
    for name in ("vp", "ve"):
        for eta in (0.0, 0.5, 1.0):
            for steps in (1, 4):
                with (Kept(kd, "sample_dbim", first=True) as out,
                      Kept(random_util.BatchedSeedGenerator, "randn_like") as draws):
                    _, _, nfe, *_ = kd.karras_sample(diffusion(name), net, y, None, steps, model_kwargs={"xT": y},
                                                     device="cpu", sampler="dbim", eta=eta, seed=[10, 11, 12])
                key = f"{name}.dbim.eta{eta}.steps{steps}"
                tensors.update({f"{key}.sample": out.values[0], f"{key}.noise": torch.stack(draws.values),
                                f"{key}.nfe": torch.tensor(nfe)})
        for churn in (0.0, 0.33):
            torch.manual_seed(2)
            with Kept(kd, "sample_heun", first=True) as out, Kept(torch, "randn_like") as draws:
                _, _, nfe, *_ = kd.karras_sample(diffusion(name), net, y, None, 5, model_kwargs={"xT": y}, device="cpu",
                                                 sampler="heun", churn_step_ratio=churn)
            key = f"{name}.heun.churn{churn}"
            tensors.update({f"{key}.sample": out.values[0], f"{key}.nfe": torch.tensor(nfe)})
            if churn > 0:  # without churn every draw is multiplied by 0
                tensors[f"{key}.noise"] = torch.stack(draws.values)
    write(args, "diffusion_bridge", "samplers", tensors, file=FILE,
          function="karras_sample (sampler='dbim': sample_dbim; sampler='heun': sample_heun, ddbm_simulate, get_d)",
          seeds={"BatchedSeedGenerator seeds (DBIM)": [10, 11, 12], "torch.manual_seed before each Heun run": 2,
                 "toy network (tests/golden/test_bridge.py ToyNet)": 0, "source image (test_bridge.data)": 0})


def record_loss():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=4, in_channels=4, out_channels=2, block_out_channels=(8,),
                       down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), layers_per_block=1,
                       norm_num_groups=4).double()
    y, x0 = data(3)
    tensors = {"source": y, "target": x0, **{f"unet.{k}": v for k, v in unet.state_dict().items()}}

    def model(x_in, c_noise, xT):
        return unet(torch.cat([x_in, xT], dim=1), c_noise.float()).sample

    for name in ("vp", "ve"):
        T = SCHEDULES[name]["T"]
        torch.manual_seed(5)  # the draws of hfgen's BridgeTrainer.compute_loss, in its order: times, then noise
        t = 1e-4 + (T - 1e-4) * torch.rand(x0.shape[0], dtype=torch.float64)
        noise = torch.randn_like(x0)
        loss = diffusion(name).training_bridge_losses(model, x0, t, model_kwargs={"xT": y}, noise=noise)["loss"].mean()
        grad = torch.autograd.grad(loss, list(unet.parameters()))
        tensors.update({f"{name}.t": t, f"{name}.noise": noise, f"{name}.loss": loss.detach(),
                        f"{name}.grad": torch.cat([g.flatten() for g in grad])})
    import diffusers

    write(args, "diffusion_bridge", "training_loss", tensors, file=FILE,
          function="KarrasDenoiser.training_bridge_losses (loss_norm='l2', mean over the batch as TrainLoop.forward_backward)",
          seeds={"torch.manual_seed before UNet2DModel()": 0, "data (test_bridge.data)": 3,
                 "torch.manual_seed before the times and noise": 5, "diffusers": diffusers.__version__},
          extra_versions=("diffusers",))


with tempfile.TemporaryDirectory() as folder:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=0, world_size=1)
    record_schedules()
    record_samplers()
    record_loss()
    dist.destroy_process_group()
