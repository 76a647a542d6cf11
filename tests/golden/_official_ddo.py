"""Transcriptions for the DDO golden tests (test fixtures, not library code).

1. ``EDMLoss_DDO``: the paper's own listing (Zheng et al., "Direct Discriminative Optimization", arXiv 2503.01103,
   Appendix D, "Diffusion DDO loss of EDM"). NVlabs/DDO @ d7b366bd18676471b7bc51e26c5eb8dabcad44d0 holds no
   diffusion training code (only ``EDM2_sample.py`` and ``VAR_sample.py``; issue #1), so this is a transcription
   of the paper's listing, taken from the verbatim copy in toonnyy8/WavTTS-uncond @ 24538e349e26647e0d4e4c4c533520c33811fa64
   ``docs/superpowers/specs/2026-09-11-ddo-design.md`` (Appendix A), the paper PDF itself was not readable here.
   One change, for identical inputs: ``rnd_normal`` and the unit noise may be passed in instead of drawn.
2. ``EDMPrecond``: the network wrapper ``net(x, sigma, labels)`` that listing assumes, from NVlabs/edm
   @ 008a4e5316c8e3bfe61a62f874bddba254295afb ``training/networks.py`` (``EDMPrecond.forward``; fp16 branch,
   asserts and the float32 casts left out, so the comparison can run in float64), around a raw network ``F(x, c_noise)`` (here a Diffusers UNet, ``.sample``).
3. ``EDM2Loss``: NVlabs/edm2 @ 4bf8162f601bcc09472ce8a32dd0cbe8889dc8fc ``training/training_loop.py`` (the
   per-element EDM2 loss with the learned uncertainty ``logvar`` = u(σ), Eq. 21 of Karras et al. 2024), with
   ``rnd_normal`` and the unit noise passed in. ``ddo_edm2_loss`` composes it into DDO as the paper does for EDM
   (App. D: log-likelihood proxy = −(pretraining loss) summed over dimensions, shared σ and noise, reference under
   ``no_grad``, Eq. 13); the paper's EDM2 listing itself was not available, so this composition is ours.
4. ``ddo_ar_loss``: the autoregressive DDO loss written directly from the paper's equations, Eq. 1
   (``log p(x) = Σ_n log p(x_n | x_<n)``) and Eq. 13 (``−E_data log σ(β r) − α E_ref log σ(−β r)``,
   ``r = log p_θ − log p_ref``), with an explicit loop over positions.
"""

import torch
import torch.nn.functional as F


class EDMPrecond(torch.nn.Module):
    def __init__(self, model, sigma_data=0.5):
        super().__init__()
        self.model = model
        self.sigma_data = sigma_data

    def forward(self, x, sigma, class_labels=None, return_logvar=False):
        # (official: ``x.to(torch.float32)``, ``sigma.to(torch.float32)``; the golden test runs in float64)
        sigma = sigma.reshape(-1, 1, 1, 1)
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        out = self.model((c_in * x), c_noise.flatten())
        D_x = c_skip * x + c_out * out.sample
        if return_logvar:  # EDM2Precond: logvar = logvar_linear(logvar_fourier(c_noise)), here the model's field
            return D_x, out.logvar.reshape(-1, 1, 1, 1)
        return D_x


# Diffusion DDO loss of EDM
class EDMLoss_DDO:
    def __init__(self, P_mean=-0.4, P_std=1.0, sigma_data=0.5, alpha=1.0, beta=0.02):
        self.P_mean = P_mean
        self.P_std = P_std
        self.sigma_data = sigma_data
        self.alpha = alpha
        self.beta = beta

    def __call__(self, net, ref_net, images, fake_images, labels=None, fake_labels=None, rnd_normal=None,
                 unit_noise=None):
        # Sample diffusion time
        if rnd_normal is None:
            rnd_normal = torch.randn([images.shape[0], 1, 1, 1], device=images.device)
        sigma = (rnd_normal * self.P_std + self.P_mean).exp()
        # Diffusion loss weighting
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        # Sample Gaussian noise
        noise = (torch.randn_like(images) if unit_noise is None else unit_noise) * sigma
        # Denoise by the target model
        D = net(images + noise, sigma, labels)
        net.eval()
        D_fake = net(fake_images + noise, sigma, fake_labels)
        net.train()
        D_logp = -torch.sum(weight * (D - images) ** 2, dim=(1, 2, 3))
        D_fake_logp = -torch.sum(weight * (D_fake - fake_images) ** 2, dim=(1, 2, 3))
        # Denoise by the reference model
        with torch.no_grad():
            ref_D = ref_net(images + noise, sigma, labels)
            ref_D_fake = ref_net(fake_images + noise, sigma, fake_labels)
        ref_D_logp = -torch.sum(weight * (ref_D - images) ** 2, dim=(1, 2, 3))
        ref_D_fake_logp = -torch.sum(weight * (ref_D_fake - fake_images) ** 2, dim=(1, 2, 3))
        # Compute loss
        loss = -F.logsigmoid(self.beta * (D_logp - ref_D_logp)) \
               - self.alpha * F.logsigmoid(-self.beta * (D_fake_logp - ref_D_fake_logp))
        return loss.mean()


class EDM2Loss:
    def __init__(self, P_mean=-0.4, P_std=1.0, sigma_data=0.5):
        self.P_mean = P_mean
        self.P_std = P_std
        self.sigma_data = sigma_data

    def __call__(self, net, images, labels=None, rnd_normal=None, unit_noise=None):
        if rnd_normal is None:
            rnd_normal = torch.randn([images.shape[0], 1, 1, 1], device=images.device)
        sigma = (rnd_normal * self.P_std + self.P_mean).exp()
        weight = (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2
        noise = (torch.randn_like(images) if unit_noise is None else unit_noise) * sigma
        denoised, logvar = net(images + noise, sigma, labels, return_logvar=True)
        loss = (weight / logvar.exp()) * ((denoised - images) ** 2) + logvar
        return loss


def ddo_edm2_loss(net, ref_net, images, fake_images, rnd_normal, unit_noise, alpha, beta, P_mean=-0.4, P_std=1.0):
    edm2 = EDM2Loss(P_mean, P_std)
    logp = -edm2(net, images, rnd_normal=rnd_normal, unit_noise=unit_noise).sum(dim=(1, 2, 3))
    fake_logp = -edm2(net, fake_images, rnd_normal=rnd_normal, unit_noise=unit_noise).sum(dim=(1, 2, 3))
    with torch.no_grad():
        ref_logp = -edm2(ref_net, images, rnd_normal=rnd_normal, unit_noise=unit_noise).sum(dim=(1, 2, 3))
        ref_fake_logp = -edm2(ref_net, fake_images, rnd_normal=rnd_normal, unit_noise=unit_noise).sum(dim=(1, 2, 3))
    loss = -F.logsigmoid(beta * (logp - ref_logp)) - alpha * F.logsigmoid(-beta * (fake_logp - ref_fake_logp))
    return loss.mean()


def sequence_log_likelihood(model, input_ids, labels):
    """Eq. 1, one sequence at a time: Σ over scored positions n of log p(x_n | x_<n)."""
    out = []
    for ids, lab in zip(input_ids, labels):
        logits = model(input_ids=ids[None]).logits[0].double()
        total = logits.new_zeros(())
        for n in range(1, len(ids)):
            if lab[n] != -100:
                total = total + torch.log_softmax(logits[n - 1], -1)[ids[n]]
        out.append(total)
    return torch.stack(out)


def ddo_ar_loss(model, ref_model, real, fake, alpha, beta):
    """Eq. 13 with the exact likelihood of Eq. 1; ``real`` / ``fake``: dicts of ``input_ids`` and ``labels``."""
    r_real = sequence_log_likelihood(model, real["input_ids"], real["labels"])
    r_fake = sequence_log_likelihood(model, fake["input_ids"], fake["labels"])
    with torch.no_grad():
        ref_real = sequence_log_likelihood(ref_model, real["input_ids"], real["labels"])
        ref_fake = sequence_log_likelihood(ref_model, fake["input_ids"], fake["labels"])
    r_real, r_fake = r_real - ref_real, r_fake - ref_fake
    return -torch.log(torch.sigmoid(beta * r_real)).mean() - alpha * torch.log(1 - torch.sigmoid(beta * r_fake)).mean()
