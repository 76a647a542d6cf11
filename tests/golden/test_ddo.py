"""Golden tests for ``DDOTrainer.compute_loss``: an **independent derivation** from the papers' equations, written
here (not parity with official code). NVlabs/DDO releases no training code (its repository holds only sampling
scripts for the released checkpoints), so there is no official DDO loss to record; see docs/results/fidelity.md,
"DDO". The references:

- DDO objective, Zheng et al. 2025 (arXiv 2503.01103), Eq. 13: ``−E_data log σ(β r(x)) − α E_ref log σ(−β r(x̃))``,
  ``r = log p_θ − log p_ref``, the reference model without gradient;
- diffusion likelihood proxy (the paper's App. D for EDM): ``log p(x) ≈ −Σ λ(σ) ‖D(x + σ n; σ) − x‖²`` over the
  dimensions, one σ and one noise shared by θ and θ_ref, with ``ln σ ~ N(P_mean, P_std²)`` and
  ``λ(σ) = (σ² + σ_d²) / (σ σ_d)²``; the denoiser is EDM's preconditioning (Karras et al. 2022, Table 1):
  ``D = c_skip x + c_out F(c_in x; c_noise)``, ``c_skip = σ_d²/(σ² + σ_d²)``, ``c_out = σ σ_d / √(σ² + σ_d²)``,
  ``c_in = 1/√(σ² + σ_d²)``, ``c_noise = ln(σ)/4``; generated samples go through the model in eval mode;
- EDM2's learned-uncertainty loss (Karras et al. 2024, Eq. 21): per element ``λ(σ)/e^{u(σ)} ‖D − x‖² + u(σ)``, its
  negative sum as the likelihood proxy (the paper's EDM2 composition was not available: this one is ours);
- autoregressive: Eq. 1, ``log p(x) = Σ_n log p(x_n | x_<n)``, one sequence and one position at a time.

One piece does have official code, EDM's pretraining loss, whose negative sum is App. D's likelihood proxy:
``test_edm_likelihood_proxy_is_minus_the_recorded_official_edm_loss`` compares hfgen's proxy with the recorded
official ``EDMLoss`` + ``EDMPrecond`` (NVlabs/edm; ``tests/golden/data/edm/``, ``scripts/golden/record_edm.py``).

θ ≠ θ_ref throughout (the trained model's weights are perturbed, so Δ ≠ 0 and the loss is not at its
(1 + α) log 2 starting value). Loss and gradient (with respect to every parameter of θ) must agree to 1e-10
relative (both sides run in float64).

Measured: max relative difference 3.4e-16 (loss) and 2.4e-15 (gradient, max-abs normalised) over the five cases.
Broken on purpose once (then restored):
- the EDM weight λ(σ) in ``denoising_log_likelihood`` replaced by 1: both EDM cases fail (loss rel. diff 4e-3
  and 0.33, gradient 0.91 and 0.98);
- in ``ddo_loss``, ``logsigmoid(-β r_fake)`` replaced by ``logsigmoid(β r_fake)`` (the sign of the fake term):
  all four cases fail (loss rel. diff 0.03 to 0.91, gradient 1.6 to 3.4);
- gap 7, the ``+ u`` term of the EDM2 loss dropped in ``denoising_log_likelihood``: the EDM2 case fails (loss rel.
  diff 0.05, gradient 4.6).
"""

import pytest
import torch
import torch.nn.functional as F

from hfgen.trainers import DDOConfig, DDOTrainer

SIGMA_DATA = 0.5


def ddo_objective(logp_real, ref_real, logp_fake, ref_fake, alpha, beta):
    """Eq. 13, averaged over the batch."""
    return (-F.logsigmoid(beta * (logp_real - ref_real)) - alpha * F.logsigmoid(-beta * (logp_fake - ref_fake))).mean()


def edm_denoise(network, noisy, sigma):
    """EDM's preconditioned denoiser ``D(noisy; σ)`` around a raw network ``F(x, c_noise)``; returns
    ``(D, the network's output)`` (the output carries EDM2's ``logvar`` when the network has one)."""
    sigma = sigma.view(-1, 1, 1, 1)
    total = sigma**2 + SIGMA_DATA**2
    out = network(noisy / total.sqrt(), (sigma.log() / 4).flatten())
    return SIGMA_DATA**2 / total * noisy + sigma * SIGMA_DATA / total.sqrt() * out.sample, out


def diffusion_log_likelihood(network, clean, sigma, unit_noise, uncertainty=False, eval_mode=False):
    """The likelihood proxy of App. D (``uncertainty=False``) or of EDM2's loss (``uncertainty=True``)."""
    was_training = network.training
    network.train(not eval_mode and was_training)
    denoised, out = edm_denoise(network, clean + sigma.view(-1, 1, 1, 1) * unit_noise, sigma)
    network.train(was_training)
    weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    error = weight.view(-1, 1, 1, 1) * (denoised - clean) ** 2
    if uncertainty:
        u = out.logvar.view(-1, 1, 1, 1)
        error = error / u.exp() + u
    return -error.sum(dim=(1, 2, 3))


def diffusion_ddo_reference(model, ref_model, real, fake, sigma, unit_noise, alpha, beta, uncertainty=False):
    logp_real = diffusion_log_likelihood(model, real, sigma, unit_noise, uncertainty)
    logp_fake = diffusion_log_likelihood(model, fake, sigma, unit_noise, uncertainty, eval_mode=True)
    with torch.no_grad():
        ref_real = diffusion_log_likelihood(ref_model, real, sigma, unit_noise, uncertainty)
        ref_fake = diffusion_log_likelihood(ref_model, fake, sigma, unit_noise, uncertainty)
    return ddo_objective(logp_real, ref_real, logp_fake, ref_fake, alpha, beta)


def sequence_log_likelihood(model, sequences, labels):
    """Eq. 1, one unpadded sequence at a time: the sum over scored positions n of log p(x_n | x_<n)."""
    totals = []
    for ids, scored in zip(sequences, labels):
        log_probs = torch.log_softmax(model(input_ids=ids[None]).logits[0].double(), -1)
        totals.append(sum(log_probs[n - 1, ids[n]] for n in range(1, len(ids)) if scored[n] != -100))
    return torch.stack(totals)


def autoregressive_ddo_reference(model, ref_model, real, fake, alpha, beta):
    logp_real = sequence_log_likelihood(model, real["input_ids"], real["labels"])
    logp_fake = sequence_log_likelihood(model, fake["input_ids"], fake["labels"])
    with torch.no_grad():
        ref_real = sequence_log_likelihood(ref_model, real["input_ids"], real["labels"])
        ref_fake = sequence_log_likelihood(ref_model, fake["input_ids"], fake["labels"])
    return ddo_objective(logp_real, ref_real, logp_fake, ref_fake, alpha, beta)


def _args(tmp_path, **kwargs):
    return DDOConfig(output_dir=str(tmp_path), use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
                     per_device_train_batch_size=4, max_steps=1, **kwargs)


def _perturb(model, seed=1, scale=0.3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * (p.std() if p.numel() > 1 else p.abs()).nan_to_num() * torch.randn(p.shape, generator=generator))


def _grad(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _unet(seed):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))


EDM_P_MEAN, EDM_P_STD = -0.4, 1.0


def edm_loss_network():
    """The float32 tiny UNet of ``tests/golden/data/edm/edm_loss`` (its weights are in the recording)."""
    unet = _unet(0)
    _perturb(unet)
    return unet.eval()


def edm_loss_images():
    return torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_edm_likelihood_proxy_is_minus_the_recorded_official_edm_loss():
    """Recorded official outputs (not a derivation): DDO's diffusion likelihood proxy (App. D) is minus EDM's
    pretraining loss summed over the dimensions. ``denoising_log_likelihood`` must give minus the per-sample sum of
    the official ``EDMLoss`` (NVlabs/edm ``training/loss.py``, with ``EDMPrecond``; ``tests/golden/data/edm/
    edm_loss.*``, written by ``scripts/golden/record_edm.py``), and its gradient minus the official one, for the
    same network, σ and noise, in float32 (tolerance 1e-5). Measured: 0 (bit-identical) for both. Broken on purpose:
    λ(σ) set to 1 in ``denoising_log_likelihood`` fails (loss 0.97, gradient 0.87), and so does a 1% error in
    c_noise (loss 1.9e-5, gradient 2.2e-4)."""
    from diffusers import EDMEulerScheduler

    from hfgen.trainers.ddo.ddo_trainer import denoising_log_likelihood

    from .recorded import load_recording

    recorded, _ = load_recording("edm", "edm_loss")
    unet = _unet(0)
    unet.load_state_dict({k[len("unet."):]: v for k, v in recorded.items() if k.startswith("unet.")})
    images = edm_loss_images()
    assert torch.equal(images, recorded["images"])
    sigma = (recorded["rnd_normal"].flatten() * EDM_P_STD + EDM_P_MEAN).exp()
    ours = denoising_log_likelihood(unet.eval(), EDMEulerScheduler(sigma_data=0.5), images, recorded["unit_noise"],
                                    sigma)
    official = -recorded["loss"].sum(dim=(1, 2, 3))
    grad = -_grad(ours.sum(), unet)  # the official gradient is the one of the summed loss
    official_grad = torch.cat([recorded[f"grad.{name}"].flatten() for name, p in unet.named_parameters()
                               if p.requires_grad])
    loss_rel = ((ours.detach() - official).abs() / official.abs()).max().item()
    print(f"GOLDEN ddo edm-loss recorded: loss {loss_rel:.2e} grad {_rel(grad, official_grad):.2e}")
    assert loss_rel < 1e-5
    assert _rel(grad, official_grad) < 1e-5


@pytest.mark.parametrize("alpha, beta, p_mean, p_std", [(1.0, 0.02, -0.4, 1.0), (4.0, 0.1, -1.2, 1.6)])
def test_edm_ddo_loss_matches_the_derivation(tmp_path, alpha, beta, p_mean, p_std):
    from diffusers import EDMEulerScheduler

    g = torch.Generator().manual_seed(0)
    real = [{"pixel_values": x} for x in torch.rand((4, 1, 8, 8), generator=g, dtype=torch.float64) * 2 - 1]
    fake = [{"pixel_values": x} for x in torch.rand((4, 1, 8, 8), generator=g, dtype=torch.float64) * 2 - 1]
    model, ref = _unet(0).double(), _unet(0).double()
    _perturb(model)
    trainer = DDOTrainer(model, ref_model=ref, args=_args(tmp_path, alpha=alpha, beta=beta, p_mean=p_mean, p_std=p_std),
                         train_dataset=real, fake_dataset=fake, noise_scheduler=EDMEulerScheduler(sigma_data=0.5))
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    rnd_normal = torch.randn(4, generator=g, dtype=torch.float64)
    unit_noise = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64)
    trainer.sample_noise = lambda x0: ((rnd_normal * p_std + p_mean).exp(), unit_noise)  # identical draws

    model.train()
    loss = trainer.compute_loss(model, batch)
    grad = _grad(loss, model)
    reference = diffusion_ddo_reference(model, trainer.ref_model, batch["real"]["pixel_values"],
                                       batch["fake"]["pixel_values"], (rnd_normal * p_std + p_mean).exp(), unit_noise,
                                       alpha, beta)
    ref_grad = _grad(reference, model)
    r_real, r_fake = trainer.compute_log_ratio(model, batch)
    assert r_real.abs().min() > 0 and r_fake.abs().min() > 0  # θ ≠ θ_ref
    print(f"GOLDEN ddo edm loss {abs(loss.item() - reference.item()) / abs(reference.item()):.2e} grad {_rel(grad, ref_grad):.2e}")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    assert _rel(grad, ref_grad) < 1e-10


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.5), (3.0, 2.0)])
def test_autoregressive_ddo_loss_matches_the_derivation(tmp_path, alpha, beta):
    from transformers import LlamaConfig, LlamaForCausalLM

    def llama():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                                            pad_token_id=0))

    def examples(seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(4):
            ids = torch.randint(1, 16, (int(torch.randint(4, 8, (1,), generator=g)),), generator=g)
            labels = ids.clone()
            labels[:2] = -100  # a 2-token prompt, not scored
            out.append({"input_ids": ids, "labels": labels})
        return out

    model, ref = llama().double(), llama().double()
    _perturb(model, scale=1.0)
    real, fake = examples(1), examples(2)
    trainer = DDOTrainer(model, ref_model=ref, args=_args(tmp_path, alpha=alpha, beta=beta), train_dataset=real,
                         fake_dataset=fake)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    assert batch["real"]["input_ids"].size(1) > min(len(ex["input_ids"]) for ex in real)  # padding is exercised
    loss = trainer.compute_loss(model, batch)
    grad = _grad(loss, model)

    def stack(exs):  # unpadded, one sequence at a time in the derivation
        return {"input_ids": [ex["input_ids"] for ex in exs], "labels": [ex["labels"] for ex in exs]}

    reference = autoregressive_ddo_reference(model, trainer.ref_model, stack(real), stack(fake), alpha, beta)
    ref_grad = _grad(reference, model)
    r_real, r_fake = trainer.compute_log_ratio(model, batch)
    assert r_real.abs().min() > 1e-3 and r_fake.abs().min() > 1e-3  # θ ≠ θ_ref
    print(f"GOLDEN ddo ar loss {abs(loss.item() - reference.item()) / abs(reference.item()):.2e} grad {_rel(grad, ref_grad):.2e}")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    assert _rel(grad, ref_grad) < 1e-10


class UNetWithLogvar(torch.nn.Module):
    """A Diffusers UNet plus an EDM2-style uncertainty head u(c_noise) (Fourier features -> linear), returning
    an output with ``sample`` and ``logvar`` as EDM2's network does with ``return_logvar=True``."""

    def __init__(self, seed):
        super().__init__()
        self.unet = _unet(seed)
        torch.manual_seed(seed + 100)
        self.freqs = torch.nn.Parameter(torch.randn(8), requires_grad=False)
        self.phases = torch.nn.Parameter(torch.rand(8), requires_grad=False)
        self.logvar_linear = torch.nn.Linear(8, 1)

    def forward(self, x, c_noise, **cond):
        from types import SimpleNamespace

        fourier = torch.cos(2 * torch.pi * (c_noise[:, None] * self.freqs + self.phases)) * 2**0.5
        return SimpleNamespace(sample=self.unet(x, c_noise, **cond).sample, logvar=self.logvar_linear(fourier)[:, 0])


def test_edm2_learned_uncertainty_weighting_matches_the_derivation(tmp_path):
    """Gap 7: ``uncertainty_weighting=True`` uses each model's EDM2 loss (Karras et al. 2024, Eq. 21) as its
    likelihood proxy. Measured: loss and gradient agree to 1e-15 (float64). Without the option the same models
    give a different loss (the check at the end), so the test fails on the old behaviour (no such option)."""
    from diffusers import EDMEulerScheduler

    g = torch.Generator().manual_seed(0)
    real = [{"pixel_values": x} for x in torch.rand((4, 1, 8, 8), generator=g, dtype=torch.float64) * 2 - 1]
    fake = [{"pixel_values": x} for x in torch.rand((4, 1, 8, 8), generator=g, dtype=torch.float64) * 2 - 1]
    model, ref = UNetWithLogvar(0).double(), UNetWithLogvar(0).double()
    _perturb(model)
    args = _args(tmp_path, alpha=2.0, beta=0.05, uncertainty_weighting=True)
    trainer = DDOTrainer(model, ref_model=ref, args=args, train_dataset=real, fake_dataset=fake,
                         noise_scheduler=EDMEulerScheduler(sigma_data=0.5))
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    rnd_normal = torch.randn(4, generator=g, dtype=torch.float64)
    unit_noise = torch.randn((4, 1, 8, 8), generator=g, dtype=torch.float64)
    trainer.sample_noise = lambda x0: ((rnd_normal * 1.0 - 0.4).exp(), unit_noise)
    model.train()
    loss = trainer.compute_loss(model, batch)
    grad = _grad(loss, model)
    reference = diffusion_ddo_reference(model, trainer.ref_model, batch["real"]["pixel_values"],
                                       batch["fake"]["pixel_values"], (rnd_normal * 1.0 - 0.4).exp(), unit_noise,
                                       alpha=2.0, beta=0.05, uncertainty=True)
    ref_grad = _grad(reference, model)
    print(f"GOLDEN ddo edm2 loss {abs(loss.item() - reference.item()) / abs(reference.item()):.2e} grad {_rel(grad, ref_grad):.2e}")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    assert _rel(grad, ref_grad) < 1e-10
    assert ref_grad.abs().max() > 0
    trainer.args.uncertainty_weighting = False  # the EDM (App. D) weighting ignores u: another loss
    assert abs(trainer.compute_loss(model, batch).item() - reference.item()) > 1e-3 * abs(reference.item())
    with pytest.raises(ValueError, match="uncertainty_weighting"):
        DDOTrainer(_unet(0), args=_args(tmp_path, uncertainty_weighting=True), train_dataset=real, fake_dataset=fake,
                   noise_scheduler=__import__("diffusers").DDPMScheduler(num_train_timesteps=10))
