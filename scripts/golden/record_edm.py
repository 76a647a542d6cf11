"""Record the official EDM pretraining loss (NVlabs/edm ``training/loss.py`` ``EDMLoss`` with ``training/networks.py``
``EDMPrecond``) for ``tests/golden/test_ddo.py``: DDO's diffusion likelihood proxy is minus this per-element loss
summed over the dimensions (the DDO paper's App. D), so hfgen's ``denoising_log_likelihood`` is compared with it.

    python scripts/golden/record_edm.py --checkout /path/to/edm [--commit SHA]

``EDMLoss.__call__`` and ``EDMPrecond.forward`` run unchanged from the checkout; ``EDMPrecond``'s raw network (built
by its constructor from the checkout's own UNets) is set, instead, to an adapter written here around the DDO
test's tiny Diffusers ``UNet2DModel`` (``F(x, c_noise) = unet(x, c_noise).sample``), whose seeded, perturbed weights
are saved in the recording. The loss's two random draws (``rnd_normal``, the unit noise) come from the global RNG
seeded with 11 and are recorded too, with the gradient of the summed loss with respect to every network weight.
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.golden.recorded import write_recording  # noqa: E402
from tests.golden.test_ddo import EDM_P_MEAN, EDM_P_STD, edm_loss_images, edm_loss_network  # noqa: E402


class RawNetwork(torch.nn.Module):
    """``EDMPrecond``'s ``self.model(x, c_noise, class_labels=..., augment_labels=...)`` over a Diffusers UNet."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        return self.unet(x, noise_labels).sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", required=True, help="a checkout of https://github.com/NVlabs/edm")
    parser.add_argument("--commit", help="the checkout's commit (when it is an exported snapshot without .git)")
    args = parser.parse_args()
    checkout = Path(args.checkout).resolve()
    if not (checkout / "training" / "loss.py").is_file():
        raise SystemExit(f"--checkout: {checkout} has no training/loss.py (not an NVlabs/edm checkout)")
    sys.path.insert(0, str(checkout))
    from training.loss import EDMLoss
    from training.networks import EDMPrecond

    unet = edm_loss_network()
    images = edm_loss_images()
    precond = EDMPrecond.__new__(EDMPrecond)
    torch.nn.Module.__init__(precond)
    precond.img_resolution, precond.img_channels, precond.label_dim = images.shape[-1], images.shape[1], 0
    precond.use_fp16, precond.sigma_min, precond.sigma_max, precond.sigma_data = False, 0, float("inf"), 0.5
    precond.model = RawNetwork(unet)
    torch.manual_seed(11)
    loss = EDMLoss(P_mean=EDM_P_MEAN, P_std=EDM_P_STD, sigma_data=0.5)(precond, images)
    params = [(name, p) for name, p in unet.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss.sum(), [p for _, p in params])
    torch.manual_seed(11)  # the loss's draws, in its order
    rnd_normal = torch.randn([images.shape[0], 1, 1, 1])
    unit_noise = torch.randn_like(images)
    write_recording(
        "edm", "edm_loss", dict(images=images, rnd_normal=rnd_normal, unit_noise=unit_noise, loss=loss.detach(),
                                **{f"unet.{k}": v for k, v in unet.state_dict().items()},
                                **{f"grad.{name}": g for (name, _), g in zip(params, grads)}),
        repository="https://github.com/NVlabs/edm", checkout=checkout, commit=args.commit, file="training/loss.py",
        function="EDMLoss.__call__ (per-element loss; grad.*: of its sum) with training/networks.py EDMPrecond.forward",
        seeds={"unet": 0, "perturbation": 1, "images": 0, "loss_draws": 11},
        network="tests.golden.test_ddo.edm_loss_network() behind EDMPrecond.model (adapter in this script)")


if __name__ == "__main__":
    main()
